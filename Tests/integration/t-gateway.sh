#!/usr/bin/env bash
# LAN-wide VPN gateway (docs/gateway.md).
#
#   L (LAN host, DHCP) ─┐
#                       ├─ skwt-gwbr 192.168.50.1/24 ─ G (gateway: vpn-client --lan) ─ 198.51.100.1 ─┐
#   B (bypass, DHCP)  ──┘                                                                            R (router)
#                                X (exit: vpn-server, 192.0.2.1) ─────────────────────────────────────┤
#                                N ("internet": HTTP 203.0.113.10, DNS 203.0.113.53) ──────────────────┘
#
# L gets an address by DHCP from the gateway, resolves files.example.test (served by N's DNS, which
# answers only the exit's address: so only through the tunnel) and fetches a file; N sees the exit's
# address. B is on the bypass list by MAC and goes out directly. The exit dies: L's traffic is
# dropped although G's uplink reaches N directly; the exit comes back: L works again by itself.
# The gateway visor dies (SIGKILL) or stops (SIGTERM): the LAN stays fenced. `vpn stop` restores G.
# G's dnsmasq killed by PID is restarted (leases kept); the exit's new DNS server after a reconnect
# reaches dnsmasq, the DNS fence and G's resolver.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v dnsmasq >/dev/null || die "dnsmasq missing (scripts/install-deps.sh installs dnsmasq-base)"
command -v udhcpc >/dev/null || die "udhcpc missing (scripts/install-deps.sh installs udhcpc)"

L=skwt-gw-lan$$ B=skwt-gw-byp$$ G=skwt-gw-gw$$ R=skwt-gw-rt$$ X=skwt-gw-exit$$ N=skwt-gw-inet$$
BYPASS_MAC=02:00:00:00:50:02
gw_cleanup() {
    local rc=$? pids
    set +e
    # The gateway's dnsmasq outlives a SIGKILLed visor: collect G's processes first.
    pids=$(ip netns pids $G 2>/dev/null)
    rm -rf "/etc/netns/$L" "/etc/netns/$B" "/etc/netns/$G"
    (exit $rc)
    cleanup
    for p in $pids; do [ "$(cat /proc/$p/comm 2>/dev/null)" = dnsmasq ] && kill "$p"; done
}
trap gw_cleanup EXIT

for ns in $L $B $G $R $X $N; do netns_add "$ns"; done
# The LAN: a bridge in G with one port per LAN host; no address on it (the gateway adds it).
ip -n $G link add skwt-gwbr type bridge
ip -n $G link set skwt-gwbr up
ip link add skwt-gwl0 netns $L type veth peer name skwt-gwgl netns $G
ip link add skwt-gwb0 netns $B type veth peer name skwt-gwgb netns $G
ip -n $B link set skwt-gwb0 address $BYPASS_MAC
for p in skwt-gwgl skwt-gwgb; do ip -n $G link set $p master skwt-gwbr; ip -n $G link set $p up; done
ip -n $L link set skwt-gwl0 up
ip -n $B link set skwt-gwb0 up
# The uplink side: R routes between G, the exit and N.
veth_pair $G skwt-gwg1 198.51.100.1/24 $R skwt-gwr0 198.51.100.254/24
veth_pair $X skwt-gwx0 192.0.2.1/24 $R skwt-gwr1 192.0.2.254/24
veth_pair $N skwt-gwn0 203.0.113.10/24 $R skwt-gwr2 203.0.113.1/24
ip -n $N addr add 203.0.113.53/24 dev skwt-gwn0
ip -n $N addr add 203.0.113.54/24 dev skwt-gwn0
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip -n $G route add default via 198.51.100.254
ip -n $X route add default via 192.0.2.254
ip -n $N route add default via 203.0.113.1
# The LAN hosts' resolvers (`ip netns exec` bind-mounts these over /etc/resolv.conf).
for ns in $L $B; do mkdir -p "/etc/netns/$ns"; echo "# before DHCP" >"/etc/netns/$ns/resolv.conf"; done
# G's own resolver (the client points it at the tunnel's DNS), kept off the host's /etc/resolv.conf.
mkdir -p "/etc/netns/$G"
printf '# the gateway namespace resolver\nnameserver 198.51.100.254\n' >"/etc/netns/$G/resolv.conf"
g_resolv_before=$(cat "/etc/netns/$G/resolv.conf")

# N: HTTP on 203.0.113.10:8080; DNS on 203.0.113.53 and (announced by the exit after its restart
# in step 4) 203.0.113.54, each answering only the exit (192.0.2.1).
mkdir -p "$T_WORK/www"
head -c 5000000 /dev/urandom >"$T_WORK/www/big.bin"
echo hello >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
ip netns exec $N python3 -m http.server 8080 --bind 203.0.113.10 --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $N nft -f - <<'EOF'
table inet skwt_gw_dns {
  counter from_others {}
  chain input {
    type filter hook input priority filter; policy accept;
    ip daddr { 203.0.113.53, 203.0.113.54 } meta l4proto { tcp, udp } th dport 53 ip saddr != 192.0.2.1 counter name "from_others" drop
  }
}
EOF
ip netns exec $N dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
    --listen-address=203.0.113.53 --except-interface=lo --pid-file="$T_WORK/ndns.pid" --log-queries --log-facility=- \
    --address=/files.example.test/203.0.113.10 --address=/again.example.test/203.0.113.10 >"$T_WORK/ndns.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $N dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
    --listen-address=203.0.113.54 --except-interface=lo --pid-file="$T_WORK/ndns2.pid" --log-queries --log-facility=- \
    --address=/files.example.test/203.0.113.10 --address=/again.example.test/203.0.113.10 >"$T_WORK/ndns2.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $G curl -fsS -o /dev/null http://203.0.113.10:8080/small.txt 2>/dev/null && break
    [ "$i" = 100 ] && die "the test HTTP server did not start"
    sleep 0.1
done
grep -q '^198.51.100.1 .*"GET /small.txt' "$T_WORK/http.log" && pass "without the VPN, G reaches N directly from 198.51.100.1" \
    || fail "direct path: $(cat "$T_WORK/http.log")"

# The udhcpc script: address, default route and resolver from the lease; the lease in a file.
cat >"$T_WORK/udhcpc.sh" <<EOF
#!/bin/sh
case "\$1" in
    deconfig) ip -4 addr flush dev "\$interface" ;;
    bound|renew)
        ip -4 addr flush dev "\$interface"
        ip addr add "\$ip/\$mask" dev "\$interface"
        [ -n "\$router" ] && ip route replace default via "\${router%% *}" dev "\$interface"
        : >/etc/resolv.conf
        for d in \$dns; do echo "nameserver \$d" >>/etc/resolv.conf; done
        echo "\$ip \$router \$dns" >"$T_WORK/lease.\$interface" ;;
esac
EOF
chmod 755 "$T_WORK/udhcpc.sh"
dhcp() {  # NS IFACE: one DHCP exchange, bounded
    timeout 30 ip netns exec "$1" udhcpc -f -q -n -t 10 -T 2 -i "$2" -s "$T_WORK/udhcpc.sh" >>"$T_WORK/udhcpc.log" 2>&1
}

PKG=$(visor_config g)
PKX=$(visor_config x)
jq --arg wl "$PKG" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$wl,"--dns","203.0.113.53"])' \
    "$T_WORK/x.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/x.json"
# The gateway role from the config: vpn-client auto-started with --lan.
jq --arg x "$PKX" --arg mac "$BYPASS_MAC" '.transport.peers[$x] = {"stcpr":"192.0.2.1:7777","sudph":"192.0.2.1:7778"}
    | (.launcher.apps[] | select(.name=="vpn-client")) |= (.auto_start=true
        | .args=["-k",$x,"--lan","skwt-gwbr","--lan-subnet","192.168.50.1/24","--bypass",$mac,"--dhcp-range","192.168.50.100-192.168.50.150"])' \
    "$T_WORK/g.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/g.json"

expect_ok "config check accepts the gateway config" "$SKYWIRE_BIN" config check -c "$T_WORK/g.json"
jq '(.launcher.apps[] | select(.name=="vpn-client")).args += ["--bypass","192.168.51.7"]' "$T_WORK/g.json" >"$T_WORK/bad.json"
chmod 600 "$T_WORK/bad.json"
expect_fail "config check names a bad gateway argument by its path" \
    'launcher\.apps\[[0-9]+\]\.args: vpn-client: --bypass: 192\.168\.51\.7 is not a device address in the LAN' \
    "$SKYWIRE_BIN" config check -c "$T_WORK/bad.json"

snapshot() {  # G's routes, rules, addresses, nftables and forwarding
    { ip -n $G -4 route show table all; ip -n $G rule; ip -n $G -4 -o addr | awk '{print $2, $4}'; ip -n $G -o link | cut -d' ' -f2
      ip netns exec $G nft list ruleset; ip netns exec $G cat /proc/sys/net/ipv4/ip_forward; } 2>&1
}
before=$(snapshot)

# 1. Up: the exit, then the gateway from its config.
visor_start x $X
visor_start g $G
for _ in $(seq 1 100); do
    st=$(cli g vpn status --json 2>/dev/null) && [ "$(jq -r .info.state <<<"$st")" = connected ] && break
    sleep 0.2
done
[ "$(jq -r .info.state <<<"$st")" = connected ] && [ "$(jq -r .info.lan.interface <<<"$st")" = skwt-gwbr ] \
    && pass "gateway auto-started from the config and connected ($(jq -r .info.tunnel_ip <<<"$st"))" || fail "gateway status: $st"
[ "$(ip netns exec $G cat /proc/sys/net/ipv4/ip_forward)" = 1 ] && pass "gateway: ip_forward on" || fail "gateway ip_forward off"

# 2. DHCP, DNS through the tunnel, a checksum-verified fetch; N sees the exit.
dhcp $L skwt-gwl0 && read -r lip lrouter ldns <"$T_WORK/lease.skwt-gwl0" || lip=
case "$lip" in 192.168.50.1[0-4][0-9]|192.168.50.150)
    [ "$lrouter" = 192.168.50.1 ] && [ "$ldns" = 192.168.50.1 ] && pass "L leased $lip by DHCP, router and DNS 192.168.50.1" \
        || fail "L lease: $lip $lrouter $ldns" ;;
    *) fail "L got no lease in 192.168.50.100-150: '$lip' $(tail -5 "$T_WORK/udhcpc.log")" ;;
esac
lines=$(wc -l <"$T_WORK/http.log")
got=$( (ip netns exec $L curl -fsS --max-time 120 http://files.example.test:8080/big.bin || true) | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass "L resolved files.example.test and fetched 5 MB with a matching checksum" || fail "L fetch: $got != $want"
grep '"GET /big.bin' <(tail -n +$((lines + 1)) "$T_WORK/http.log") | grep -q '^192.0.2.1 ' \
    && pass "N saw the exit's address (192.0.2.1) for L's fetch" || fail "http log: $(tail -3 "$T_WORK/http.log")"
grep -q 'query\[A\] files.example.test from 192.0.2.1' "$T_WORK/ndns.log" \
    && pass "N's DNS got L's query from the exit (through the tunnel)" || fail "dns log: $(tail -5 "$T_WORK/ndns.log")"

# The bypassing device goes out directly (N sees the gateway's uplink address).
dhcp $B skwt-gwb0 && read -r bip _ <"$T_WORK/lease.skwt-gwb0" || bip=
ip netns exec $B curl -fsS --max-time 10 -o /dev/null http://203.0.113.10:8080/small.txt?bypass=1 \
    && grep -q '^198.51.100.1 .*"GET /small.txt?bypass=1' "$T_WORK/http.log" \
    && pass "B ($BYPASS_MAC, $bip) bypasses the tunnel: N saw 198.51.100.1" || fail "bypass: $(tail -3 "$T_WORK/http.log")"

st=$(cli g vpn status --json)
lan=$(jq -c .info.lan <<<"$st")
[ "$(jq '.clients | length' <<<"$lan")" = 2 ] && [ "$(jq -r --arg ip "$lip" '.clients[] | select(.ip==$ip) | .bypass' <<<"$lan")" = false ] \
    && [ "$(jq -r --arg m $BYPASS_MAC '.clients[] | select(.mac==$m) | .bypass' <<<"$lan")" = true ] \
    && pass "vpn status lists both LAN clients, B as bypassing" || fail "lan clients: $lan"
[ "$(jq .bytes_down <<<"$lan")" -gt 5000000 ] && [ "$(jq .bytes_up <<<"$lan")" -gt 0 ] && [ "$(jq .bytes_bypass <<<"$lan")" -gt 0 ] \
    && [ "$(jq -r .dhcp <<<"$lan")" = running ] && [ "$(jq -r '.dns[0]' <<<"$lan")" = 203.0.113.53 ] \
    && pass "vpn status counts LAN bytes (up $(jq .bytes_up <<<"$lan"), down $(jq .bytes_down <<<"$lan"), bypass $(jq .bytes_bypass <<<"$lan"))" \
    || fail "lan counters: $lan"
txt=$(cli g vpn status)
grep -q "^clients: *2" <<<"$txt" && grep -q "^lan bytes:" <<<"$txt" && pass "vpn status (text) shows the LAN side" || fail "text: $txt"

# 2a. The uplink's gateway changes (a new DHCP lease names another router): the visor re-copies
#     the bypass default into table 6777 and moves the host route to the exit (docs/architecture.md,
#     "Network changes"); nothing references the old gateway; B still bypasses. Then back.
ip -n $R addr add 198.51.100.253/24 dev skwt-gwr0
for pair in "198.51.100.253 198.51.100.254" "198.51.100.254 198.51.100.253"; do
    read -r new old <<<"$pair"
    ip -n $G route replace default via $new
    for _ in $(seq 1 100); do
        bt=$(ip -n $G route show table 6777); hr=$(ip -n $G route show 192.0.2.1)
        grep -q "^default via $new " <<<"$bt" && grep -q "via $new " <<<"$hr" && break
        sleep 0.1
    done
    grep -q "^default via $new " <<<"$bt" && pass "uplink gateway $old → $new: the bypass default follows" || fail "bypass table: $bt"
    grep -q "via $new " <<<"$hr" && pass "uplink gateway $old → $new: the host route to the exit follows" || fail "host route: $hr"
    all=$(ip -n $G route show table all)
    grep -q "via $old " <<<"$all" && fail "a route still references $old: $all" || pass "uplink gateway $old → $new: nothing references $old"
    ip netns exec $B curl -fsS --max-time 10 -o /dev/null "http://203.0.113.10:8080/small.txt?bypass-$new" \
        && grep -q "^198.51.100.1 .*\"GET /small.txt?bypass-$new" "$T_WORK/http.log" \
        && pass "uplink gateway $old → $new: B still bypasses" || fail "bypass via $new: $(tail -3 "$T_WORK/http.log")"
done
ip -n $R addr del 198.51.100.253/24 dev skwt-gwr0

# 2b. dnsmasq dies (killed by PID, the one the state file names, after checking it is G's
#     dnsmasq): the app restarts it within seconds, with the leases kept; vpn status counts it.
dnsmasq_pid() { sed -n 's/^dnsmasq_pid=//p' "$T_WORK/g-state/vpn-gateway.state" 2>/dev/null | tail -1; }
dpid=$(dnsmasq_pid)
if [ -n "$dpid" ] && [ "$(cat /proc/$dpid/comm 2>/dev/null)" = dnsmasq ] && ip netns pids $G | grep -qx "$dpid"; then
    kill -9 "$dpid"
    pass "killed G's dnsmasq (pid $dpid, from the state file)"
else
    fail "state file's dnsmasq_pid '$dpid' is not G's dnsmasq"
fi
ok=
for _ in $(seq 1 75); do  # 15 s at most
    st=$(cli g vpn status --json 2>/dev/null) || st='{}'
    npid=$(dnsmasq_pid)
    [ "$(jq -r .info.lan.dhcp <<<"$st")" = running ] && [ "$(jq -r .info.lan.dhcp_restarts <<<"$st")" = 1 ] \
        && [ -n "$npid" ] && [ "$npid" != "$dpid" ] && [ "$(cat /proc/$npid/comm 2>/dev/null)" = dnsmasq ] && { ok=1; break; }
    sleep 0.2
done
[ -n "$ok" ] && pass "dnsmasq restarted (pid $npid): vpn status shows dhcp running, 1 restart, last exit '$(jq -r .info.lan.dhcp_last_exit <<<"$st")'" \
    || fail "no dnsmasq restart: $(jq -c .info.lan <<<"$st") pid '$npid'"
[ "$(jq -r .info.lan.dhcp_last_exit <<<"$st")" = "killed by signal 9" ] && pass "vpn status: dhcp_last_exit is the kill" \
    || fail "dhcp_last_exit: $(jq -r .info.lan.dhcp_last_exit <<<"$st")"
[ "$(jq -r --arg ip "$lip" '.info.lan.clients[] | select(.ip==$ip) | .source' <<<"$st")" = dhcp ] \
    && pass "the restarted dnsmasq kept L's lease ($lip)" || fail "L's lease lost: $(jq -c .info.lan.clients <<<"$st")"
dhcp $L skwt-gwl0 && read -r lip2 _ <"$T_WORK/lease.skwt-gwl0" || lip2=
[ "$lip2" = "$lip" ] && pass "the restarted dnsmasq serves DHCP: L leased $lip again" || fail "L after the restart: '$lip2' (was $lip)"
got=$(ip netns exec $L curl -fsS --max-time 10 http://files.example.test:8080/small.txt?after-dnsmasq-restart 2>/dev/null || true)
[ "$got" = hello ] && pass "the restarted dnsmasq serves DNS: L resolves and fetches" || fail "L after the dnsmasq restart: '$got'"
grep -q "dhcp .*1 restart(s), last exit: killed by signal 9" <(cli g vpn status) && pass "vpn status (text) shows the restart" \
    || fail "text: $(cli g vpn status | grep '^lan:')"
for _ in $(seq 1 25); do grep -q 'gateway: dnsmasq serving the LAN again' "$T_WORK/g.log" && break; sleep 0.2; done
[ "$(grep -c 'gateway: dnsmasq exited' "$T_WORK/g.log")" = 1 ] && [ "$(grep -c 'gateway: dnsmasq serving the LAN again' "$T_WORK/g.log")" = 1 ] \
    && pass "one log line for the failure, one for the recovery" || fail "log: $(grep 'gateway: dnsmasq' "$T_WORK/g.log")"

# 3. The exit dies: L is cut off although G's uplink reaches N directly; B still goes direct.
kill -9 "$PID_x"
for _ in $(seq 1 50); do
    [ "$(cli g vpn status --json | jq -r .info.state)" = reconnecting ] && break
    sleep 0.2
done
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $L curl -fsS --max-time 3 -o /dev/null http://203.0.113.10:8080/small.txt?lan-exit-down 2>/dev/null \
    && fail "L reached N with the exit down" || pass "exit down: L's traffic to N is dropped"
ip netns exec $G curl -fsS --max-time 3 --interface skwt-gwg1 -o /dev/null http://203.0.113.10:8080/small.txt?direct 2>/dev/null \
    && pass "exit down: G's uplink itself reaches N directly (the path L is kept from exists)" || fail "no direct path from G"
ip netns exec $B curl -fsS --max-time 3 -o /dev/null http://203.0.113.10:8080/small.txt?bypass-exit-down 2>/dev/null \
    && pass "exit down: the bypassing device still goes direct" || fail "bypass down with the exit"
! tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -q 'lan-exit-down' && pass "N saw nothing from L while the exit was down" \
    || fail "leak: $(tail -n +$((lines + 1)) "$T_WORK/http.log")"

# 4. The exit restarts, now announcing the DNS server 203.0.113.54: L works again with no manual
#    step (a new name: a fresh DNS query), through the new server only, and keeps its lease.
jq '(.launcher.apps[] | select(.name=="vpn-server")).args |= map(if . == "203.0.113.53" then "203.0.113.54" else . end)' \
    "$T_WORK/x.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/x.json"
visor_start x $X
ok=
for _ in $(seq 1 60); do
    got=$(ip netns exec $L curl -fsS --max-time 2 http://again.example.test:8080/small.txt 2>/dev/null) && [ "$got" = hello ] && { ok=1; break; }
    sleep 1
done
[ -n "$ok" ] && pass "exit back: L resolves and fetches again by itself" || fail "no recovery after the exit restarted"
got=$( (ip netns exec $L curl -fsS --max-time 120 http://files.example.test:8080/big.bin || true) | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass "exit back: 5 MB again with a matching checksum" || fail "after recovery: $got != $want"
[ "$(cli g vpn status --json | jq -r .info.reconnects)" -ge 1 ] && pass "the gateway reconnected by itself" || fail "reconnects"
grep -q 'query\[A\] again.example.test from 192.0.2.1' "$T_WORK/ndns2.log" && ! grep -q 'again.example.test' "$T_WORK/ndns.log" \
    && pass "after the reconnect L's queries go to the exit's new DNS server (203.0.113.54) only" \
    || fail "new DNS server: .54: $(grep -c again "$T_WORK/ndns2.log") .53: $(grep -c again "$T_WORK/ndns.log")"
st=$(cli g vpn status --json)
[ "$(jq -c .info.lan.dns <<<"$st")" = '["203.0.113.54"]' ] && [ "$(jq -c .info.dns <<<"$st")" = '["203.0.113.54"]' ] \
    && [ "$(jq -r .info.lan.dhcp_restarts <<<"$st")" = 1 ] && [ "$(jq -r .info.lan.dhcp <<<"$st")" = running ] \
    && pass "vpn status: dns 203.0.113.54, dnsmasq running, the DNS change not counted as a restart" || fail "status: $(jq -c '{dns: .info.dns, lan: .info.lan}' <<<"$st")"
# The listing is read once: `nft ... | grep -q` under pipefail fails when grep exits at its first
# match and nft gets SIGPIPE (the check failed so once with a correct listing).
fence=$(ip netns exec $G nft list chain inet skywire_gateway output)
grep -q 'ip daddr 203.0.113.54 .*dport 53 drop' <<<"$fence" && ! grep -q 203.0.113.53 <<<"$fence" \
    && pass "the gateway's DNS fence names the new server" || fail "fence: $fence"
[ "$(grep '^nameserver' "/etc/netns/$G/resolv.conf")" = "nameserver 203.0.113.54" ] \
    && pass "G's own resolver follows the new DNS server" || fail "G's resolv.conf: $(cat "/etc/netns/$G/resolv.conf")"
[ "$(jq -r --arg ip "$lip" '.info.lan.clients[] | select(.ip==$ip) | .source' <<<"$st")" = dhcp ] \
    && pass "L's lease survived the DNS change" || fail "L's lease after the DNS change: $(jq -c .info.lan.clients <<<"$st")"

# 5. The gateway visor dies: its TUN and /1 routes go with it, so L's packets would route out of
#    the uplink; the kernel-held fence drops them (and the orphaned dnsmasq's upstream queries).
dropped0=$(ip netns exec $G nft list counter inet skywire_gateway lan_dropped | awk '/packets/ {print $2}')
kill -9 "$PID_g"
sleep 0.5
routes=$(ip -n $G route)
! grep -q skwvpn0 <<<"$routes" && grep -q '^default via 198.51.100.254' <<<"$routes" \
    && pass "gateway visor killed: TUN gone, the default route out of the uplink is what is left" || fail "routes: $routes"
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $L curl -fsS --max-time 3 -o /dev/null http://203.0.113.10:8080/small.txt?visor-dead 2>/dev/null \
    && fail "L reached N with the gateway visor dead" || pass "gateway visor dead: L's traffic to N is dropped"
ip netns exec $L curl -fsS --max-time 3 -o /dev/null http://again.example.test:8080/small.txt?visor-dead-dns 2>/dev/null \
    && fail "L resolved and fetched with the gateway visor dead" || pass "gateway visor dead: L's name lookups go nowhere"
dropped1=$(ip netns exec $G nft list counter inet skywire_gateway lan_dropped | awk '/packets/ {print $2}')
[ "$dropped1" -gt "$dropped0" ] && pass "the fence counted L's dropped packets ($dropped0 -> $dropped1)" || fail "lan_dropped $dropped0 -> $dropped1"
! tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -q 'visor-dead' && pass "N saw nothing from L while the gateway visor was dead" \
    || fail "leak: $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
others=$(ip netns exec $N nft list counter inet skwt_gw_dns from_others | awk '/packets/ {print $2}')
[ "$others" = 0 ] && pass "N's DNS saw no query except through the exit" || fail "DNS leaked: $others packet(s) from elsewhere"

# 6. The gateway visor restarts (auto_start): leftovers cleaned, L works again.
visor_start g $G
ok=
for _ in $(seq 1 60); do
    got=$(ip netns exec $L curl -fsS --max-time 2 http://203.0.113.10:8080/small.txt?after-crash 2>/dev/null) && [ "$got" = hello ] && { ok=1; break; }
    sleep 1
done
[ -n "$ok" ] && pass "gateway visor restarted: L works again" || fail "L still cut off after the gateway restarted"
n_dnsmasq=$(ip netns pids $G | xargs -r -n1 sh -c 'cat /proc/$0/comm 2>/dev/null' | grep -c '^dnsmasq$' || true)
[ "$n_dnsmasq" = 1 ] && pass "one dnsmasq in the gateway (the crashed run's was stopped)" || fail "$n_dnsmasq dnsmasq processes in G"

# 7. SIGTERM: the visor stops its apps but the LAN stays fenced; dnsmasq is stopped.
visor_stop g
ip netns exec $G nft list table inet skywire_gateway >/dev/null 2>&1 && pass "after SIGTERM the LAN fence stays" \
    || fail "fence gone after SIGTERM"
ip netns exec $L curl -fsS --max-time 3 -o /dev/null http://203.0.113.10:8080/small.txt 2>/dev/null \
    && fail "L reached N with the gateway visor stopped" || pass "gateway visor stopped: L's traffic is dropped"
n_dnsmasq=$(ip netns pids $G | xargs -r -n1 sh -c 'cat /proc/$0/comm 2>/dev/null' | grep -c '^dnsmasq$' || true)
[ "$n_dnsmasq" = 0 ] && pass "SIGTERM stopped dnsmasq" || fail "$n_dnsmasq dnsmasq left after SIGTERM"

# 8. The gateway starts while the exit is down (a board booting with its exit away): the app
#    keeps trying with the LAN fenced, and the LAN comes up by itself once the exit is back.
visor_stop x
visor_start g $G
for _ in $(seq 1 50); do
    st=$(cli g vpn status --json 2>/dev/null) && [ "$(jq -r .info.state <<<"$st")" = reconnecting ] && break
    sleep 0.2
done
[ "$(jq -r .status <<<"$st")" = running ] && [ "$(jq -r .info.state <<<"$st")" = reconnecting ] \
    && pass "exit down at gateway start: the app runs and keeps trying ($(jq -r .info.last_error <<<"$st" | cut -c1-60))" \
    || fail "exit down at start: $(jq -c '{status, detail, state: .info.state}' <<<"$st")"
ip netns exec $L curl -fsS --max-time 3 -o /dev/null http://203.0.113.10:8080/small.txt 2>/dev/null \
    && fail "L reached N before the gateway's first session" || pass "before the first session L's traffic is dropped"
visor_start x $X
ok=
for _ in $(seq 1 60); do
    got=$(ip netns exec $L curl -fsS --max-time 2 http://files.example.test:8080/small.txt?late 2>/dev/null) && [ "$got" = hello ] && { ok=1; break; }
    sleep 1
done
[ -n "$ok" ] && pass "exit up later: the gateway connected by itself and L resolves and fetches" || fail "no late first session"

# 9. An explicit stop removes everything: G is exactly as before.
expect_ok "vpn stop (explicit)" cli g vpn stop
[ "$(snapshot)" = "$before" ] && pass "vpn stop restores the gateway's routes, rules, addresses, nftables and ip_forward" \
    || fail "after stop: $(diff <(echo "$before") <(snapshot))"
n_dnsmasq=$(ip netns pids $G | xargs -r -n1 sh -c 'cat /proc/$0/comm 2>/dev/null' | grep -c '^dnsmasq$' || true)
[ "$n_dnsmasq" = 0 ] && pass "vpn stop stopped dnsmasq" || fail "$n_dnsmasq dnsmasq left after stop"
[ "$(cat "/etc/netns/$G/resolv.conf")" = "$g_resolv_before" ] && pass "vpn stop restored G's resolver byte for byte" \
    || fail "G's resolv.conf after stop: $(cat "/etc/netns/$G/resolv.conf")"
sleep 2  # longer than the first restart back-off: the supervisor must not bring it back
n_dnsmasq=$(ip netns pids $G | xargs -r -n1 sh -c 'cat /proc/$0/comm 2>/dev/null' | grep -c '^dnsmasq$' || true)
[ "$n_dnsmasq" = 0 ] && pass "no dnsmasq restarted after vpn stop" || fail "$n_dnsmasq dnsmasq restarted after stop"
# 10. Bad gateway arguments (exit up, gateway stopped): clear errors, nothing changed.
expect_fail "--lan naming no interface is refused" 'no interface "skwt-nope"' cli g vpn start -k "$PKX" --lan skwt-nope -t 2
expect_fail "--lan-subnet with the network address is refused" "network or broadcast" \
    cli g vpn start -k "$PKX" --lan skwt-gwbr --lan-subnet 192.168.50.0/24 -t 2
expect_fail "--bypass with a bad entry is refused" "neither a MAC" cli g vpn start -k "$PKX" --lan skwt-gwbr --bypass 02:00:zz -t 2
expect_fail "--bypass outside the LAN is refused" "not a device address in the LAN" \
    cli g vpn start -k "$PKX" --lan skwt-gwbr --bypass 10.1.1.1 -t 2
expect_fail "--dhcp-range with the gateway inside is refused" "gateway's own address" \
    cli g vpn start -k "$PKX" --lan skwt-gwbr --dhcp-range 192.168.50.1-192.168.50.9 -t 2
[ "$(snapshot)" = "$before" ] && pass "refused gateway starts changed nothing" || fail "changed: $(diff <(echo "$before") <(snapshot))"
visor_stop g
visor_stop x

finish
