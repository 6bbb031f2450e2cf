#!/usr/bin/env bash
# IPv6 for the gateway's LAN (docs/gateway.md §3, docs/vpn.md §8).
#
#   L (LAN host, SLAAC) ── G (gateway: vpn-client --lan skwygl) ──10.91.0.0/24, fd00:91::/64──▶ X (exit)
#   X ──2001:db8:e::/64, 203.0.113.0/24──▶ N ("internet": 2001:db8:f::80)
#
# L gets an IPv6 address from the gateway's router advertisements (the gateway's ULA /64) and
# fetches from N over IPv6 through the tunnel; N sees the exit's 2001:db8:e::1. The exit dies: L's
# IPv6 goes nowhere, although G could reach N through X directly. An exit without an IPv6
# uplink: no router advertisements, L's IPv6 stays fenced.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v dnsmasq >/dev/null || die "dnsmasq missing (scripts/install-deps.sh installs dnsmasq-base)"

L=skwt6gL$$ G=skwt6gG$$ X=skwt6gX$$ N=skwt6gN$$
gw6_cleanup() {
    local rc=$? pids
    set +e
    pids=$(ip netns pids $G 2>/dev/null)
    rm -rf "/etc/netns/$G"
    (exit $rc)
    cleanup
    for p in $pids; do [ "$(cat /proc/$p/comm 2>/dev/null)" = dnsmasq ] && kill "$p"; done
}
trap gw6_cleanup EXIT

for ns in $L $G $X $N; do netns_add "$ns"; done
ip link add skwygl netns $G type veth peer name skwyl0 netns $L
ip -n $G link set skwygl up
veth_pair $G skwyg1 10.91.0.1/24 $X skwyx0 10.91.0.2/24
veth_pair $X skwyx1 203.0.113.1/24 $N skwyn0 203.0.113.2/24
ip -n $G addr add fd00:91::1/64 dev skwyg1 nodad
ip -n $X addr add fd00:91::2/64 dev skwyx0 nodad
ip -n $X addr add 2001:db8:e::1/64 dev skwyx1 nodad
ip -n $N addr add 2001:db8:e::2/64 dev skwyn0 nodad
ip -n $N addr add 2001:db8:f::80/128 dev lo
ip -n $G route add default via 10.91.0.2
ip -n $G -6 route add default via fd00:91::2
ip -n $X route add default via 203.0.113.2
ip -n $X -6 route add default via 2001:db8:e::2
ip -n $N -6 route add fd00:91::/64 via 2001:db8:e::1
# X routes between G and N by itself (so that only the gateway's fence stops a leak).
ip netns exec $X sysctl -qw net.ipv6.conf.all.forwarding=1
# X counts IPv6 arriving from G's uplink with a source outside that link (fd00:91::/64) and not
# link-local (nor DAD's unspecified source): LAN packets forwarded by G around the tunnel.
ip netns exec $X nft -f - <<'EOF'
table inet skwt_leak {
  counter lan6 {}
  set seen { typeof ip6 saddr . ip6 daddr . meta l4proto; flags dynamic; size 64; }
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    iifname "skwyx0" ip6 saddr != { fd00:91::/64, fe80::/10, ::/128 } counter name "lan6" add @seen { ip6 saddr . ip6 daddr . meta l4proto }
  }
}
EOF
leaked() { ip netns exec $X nft list counter inet skwt_leak lan6 | awk '/packets/ { print $2 }'; }
seen() { ip netns exec $X nft list set inet skwt_leak seen | tr -s ' \n' ' '; }
mkdir -p "/etc/netns/$G"
printf 'nameserver 192.0.2.1\n' >"/etc/netns/$G/resolv.conf"

mkdir -p "$T_WORK/www"
echo hello >"$T_WORK/www/small.txt"
ip netns exec $N python3 -m http.server 8080 --bind :: --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $G curl -fsS -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null && break
    [ "$i" = 100 ] && die "the test HTTP server did not start"
    sleep 0.1
done
grep -q '^fd00:91::1 ' "$T_WORK/http.log" && pass "without the VPN, G reaches N over IPv6 through X directly" \
    || fail "direct path: $(cat "$T_WORK/http.log")"

PKG=$(visor_config g)
PKX=$(visor_config x)
jq --arg wl "$PKG" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$wl])' \
    "$T_WORK/x.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/x.json"
jq --arg x "$PKX" '.transport.peers[$x] = {"sudph":"10.91.0.2:7778"}' "$T_WORK/g.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/g.json"
server_up() {
    for _ in $(seq 1 50); do
        [ "$(cli x vpn server status --json 2>/dev/null | jq -r .status)" = running ] && return 0
        sleep 0.1
    done
    return 1
}
# slaac_address: L's global (non-link-local) IPv6 address from the router advertisements, or empty.
slaac_address() { ip -n $L -6 -o addr show dev skwyl0 scope global | awk '{ print $4 }' | head -n1; }
rs() { ip -n $L link set skwyl0 down; ip -n $L link set skwyl0 up; }  # link up sends a router solicitation

visor_start x $X
server_up && pass "exit: vpn-server running" || fail "exit: vpn-server not running"
visor_start g $G
expect_ok "gateway: vpn start --lan" cli g vpn start -k "$PKX" --lan skwygl --dns 192.0.2.53
lan6=$(cat "$T_WORK/g-state/vpn-gateway.ula" 2>/dev/null || true)
[[ "$lan6" == fd* ]] && pass "gateway: LAN ULA prefix $lan6 stored" || fail "gateway: no LAN ULA: '$lan6'"
rs
for _ in $(seq 1 100); do
    a=$(slaac_address)
    [ -n "$a" ] && ip -n $L -6 route | grep -q '^default' && break
    sleep 0.1
done
[[ "$a" == "${lan6%%::/64}:"* ]] && pass "L got $a by router advertisement" || fail "L's IPv6: '$a' $(ip -n $L -6 addr)"
for _ in $(seq 1 50); do [ -z "$(ip -n $L -6 addr show tentative)" ] && break; sleep 0.1; done
lines=$(wc -l <"$T_WORK/http.log")
got=$(ip netns exec $L curl -fsS --max-time 10 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null || true)
[ "$got" = hello ] && pass "L fetches over IPv6 through the tunnel" || fail "L's IPv6 fetch: '$got'"
tail -n +$((lines + 1)) "$T_WORK/http.log" | grep '"GET /small.txt' | grep -q '^2001:db8:e::1 ' \
    && pass "N saw the exit's IPv6 address" || fail "http log: $(tail -3 "$T_WORK/http.log")"

# The exit dies: L's IPv6 does not leave through G's uplink (X would still route it).
kill -9 "$PID_x"
sleep 1
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $L curl -fsS --max-time 3 -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null \
    && fail "LAN kill switch: L's IPv6 got through with the exit dead" || pass "LAN kill switch: L's IPv6 dropped with the exit dead"
[ "$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -c GET || true)" = 0 ] && [ "$(leaked)" = 0 ] \
    && pass "nothing from the LAN reached N or G's uplink while the exit was down" \
    || fail "leak: $(leaked) packets on X ($(seen)); $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
expect_ok "gateway: vpn stop" cli g vpn stop
[ "$(ip netns exec $G cat /proc/sys/net/ipv6/conf/all/forwarding)" = 0 ] && pass "gateway: IPv6 forwarding restored" \
    || fail "gateway: IPv6 forwarding left on"
visor_stop g

# An exit without an IPv6 uplink: the gateway sends no router advertisements, L's IPv6 is fenced.
ip -n $X -6 route del default
# G forwards IPv6 already (a host set up so): only the fences stop the LAN's IPv6.
ip netns exec $G sysctl -qw net.ipv6.conf.all.forwarding=1
visor_start x $X
server_up || fail "exit: vpn-server did not come back"
visor_start g $G
expect_ok "gateway: vpn start --lan (exit without IPv6)" cli g vpn start -k "$PKX" --lan skwygl --dns 192.0.2.53
st=$(cli g vpn status --json)
[[ "$(jq -r .info.ipv6_blocked <<<"$st")" == *"no IPv6 uplink"* ]] && pass "gateway status: IPv6 blocked, the exit has no IPv6 uplink" \
    || fail "gateway status: $(jq -c .info <<<"$st")"
grep -q -- '--enable-ra' "/proc/$(cat "$T_WORK/g-state/gateway-dnsmasq.pid")/cmdline" 2>/dev/null \
    && fail "dnsmasq sends router advertisements without IPv6 in the tunnel" || pass "dnsmasq sends no router advertisements"
lines=$(wc -l <"$T_WORK/http.log")
ip -n $X -6 route add default via 2001:db8:e::2   # X could carry it now: only the fence stops it
ip netns exec $L curl -fsS --max-time 3 -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null \
    && fail "L's IPv6 left without IPv6 in the tunnel" || pass "L's IPv6 stays fenced"
[ "$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -c GET || true)" = 0 ] && [ "$(leaked)" = 0 ] \
    && pass "no IPv6 from the LAN on G's uplink" || fail "leak: $(leaked) packets on X ($(seen)); $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
expect_ok "gateway: vpn stop" cli g vpn stop

finish
