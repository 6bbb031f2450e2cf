#!/usr/bin/env bash
# IPv6 through the VPN (docs/vpn.md §8).
#
#   C (client) ──10.89.0.0/24──▶ E (exit, vpn-server) ──2001:db8:e::/64, 203.0.113.0/24──▶ N (router + "internet")
#   C ──2001:db8:c::/64, 198.51.100.0/24 (C's direct default routes)──▶ N
#   E ──fd00:77::/64 (the exit's ULA LAN)──▶ L
#
# N's "internet" addresses are 2001:db8:f::80 and 203.0.113.80 (on its loopback, routed by E and C
# to N): directly C reaches them from 2001:db8:c::1; through the tunnel N must see the exit's
# 2001:db8:e::1 (NAT66 from the exit's ULA /64).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

C=skwt6C$$ E=skwt6E$$ N=skwt6N$$ L=skwt6L$$
vpn6_cleanup() {
    local rc=$?
    set +e
    rm -rf "/etc/netns/$C"
    (exit $rc)
    cleanup
}
trap vpn6_cleanup EXIT

netns_add $C; netns_add $E; netns_add $N; netns_add $L
veth_pair $C skwxc0 10.89.0.1/24 $E skwxe0 10.89.0.2/24
veth_pair $E skwxe1 203.0.113.1/24 $N skwxn0 203.0.113.2/24
veth_pair $C skwxc1 198.51.100.1/24 $N skwxn1 198.51.100.2/24
ip link add skwxe2 netns $E type veth peer name skwxl0 netns $L
ip -n $E link set skwxe2 up; ip -n $L link set skwxl0 up
ip -n $E addr add 2001:db8:e::1/64 dev skwxe1 nodad
ip -n $N addr add 2001:db8:e::2/64 dev skwxn0 nodad
ip -n $C addr add 2001:db8:c::1/64 dev skwxc1 nodad
ip -n $N addr add 2001:db8:c::2/64 dev skwxn1 nodad
ip -n $E addr add fd00:77::1/64 dev skwxe2 nodad
ip -n $L addr add fd00:77::2/64 dev skwxl0 nodad
ip -n $N addr add 2001:db8:f::80/128 dev lo
ip -n $N addr add 203.0.113.80/32 dev lo
ip -n $C route add default via 198.51.100.2
ip -n $C -6 route add default via 2001:db8:c::2
ip -n $E route add default via 203.0.113.2
ip -n $E -6 route add default via 2001:db8:e::2
ip -n $L -6 route add default via fd00:77::1
ip netns exec $N sysctl -qw net.ipv6.conf.all.forwarding=1
mkdir -p "/etc/netns/$C"
printf '# the client namespace resolver\nnameserver 192.0.2.1\n' >"/etc/netns/$C/resolv.conf"

mkdir -p "$T_WORK/www"
echo hello >"$T_WORK/www/small.txt"
head -c 48000000 /dev/urandom >"$T_WORK/www/bulk.bin"
want_bulk=$(sha256sum <"$T_WORK/www/bulk.bin" | cut -d' ' -f1)
# N serves on every address, both families (a dual-stack socket on ::); L on its ULA.
ip netns exec $N python3 -m http.server 8080 --bind :: --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $L python3 -m http.server 8080 --bind fd00:77::2 --directory "$T_WORK/www" >"$T_WORK/lan.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $C curl -fsS -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null \
        && ip netns exec $E curl -fsS -o /dev/null 'http://[fd00:77::2]:8080/small.txt' 2>/dev/null && break
    [ "$i" = 100 ] && die "the test HTTP servers did not start"
    sleep 0.1
done
grep -q '^2001:db8:c::1 ' "$T_WORK/http.log" && pass "without the VPN, C reaches N over IPv6 directly (2001:db8:c::1)" \
    || fail "direct IPv6 path: $(cat "$T_WORK/http.log")"

PKC=$(visor_config c)
PKE=$(visor_config e)
jq --arg wl "$PKC" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true
    | .args=["--whitelist",$wl,"--dns","192.0.2.53","--dns6","2001:db8:f::53"])' \
    "$T_WORK/e.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/e.json"
jq --arg e "$PKE" '.transport.peers[$e] = {"sudph":"10.89.0.2:7778"}' "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"

server_up() {  # the exit's auto-started vpn-server (bounded wait)
    for _ in $(seq 1 50); do
        [ "$(cli e vpn server status --json 2>/dev/null | jq -r .status)" = running ] && return 0
        sleep 0.1
    done
    return 1
}
visor_start e $E
server_up && pass "vpn-server running" || fail "server status: $(cli e vpn server status --json 2>&1)"
[ "$(ip netns exec $E cat /proc/sys/net/ipv6/conf/all/forwarding)" = 1 ] && pass "exit: IPv6 forwarding on" || fail "IPv6 forwarding off"
ula=$(cat "$T_WORK/e-state/vpn-server.ula" 2>/dev/null || true)
[[ "$ula" == fd* ]] && pass "exit: ULA prefix $ula stored" || fail "no stored ULA: '$ula'"

# 1. Through the tunnel over IPv6: the lease, routes, DNS; N sees the exit's IPv6 address.
visor_start c $C
expect_ok "vpn start" cli c vpn start -k "$PKE"
st=$(cli c vpn status --json)
ip6=$(jq -r .info.tunnel_ip6 <<<"$st")
[[ "$ip6" == "${ula%%::/64}::"*"/64" ]] && [ "$(jq -r .info.ipv6_blocked <<<"$st")" = null ] \
    && pass "status: IPv6 lease $ip6 in the exit's ULA" || fail "status: $(jq -c .info <<<"$st")"
cli c vpn status | grep -q "^ipv6: *${ip6}$" && pass "text status shows the IPv6 address" || fail "text status: $(cli c vpn status)"
routes6=$(ip -n $C -6 route)
grep -q '^::/1 dev skwvpn0' <<<"$routes6" && grep -q '^8000::/1 dev skwvpn0' <<<"$routes6" \
    && pass "routes: ::/1 and 8000::/1 via skwvpn0" || fail "IPv6 routes: $routes6"
addrs6=$(ip -n $C -6 addr show dev skwvpn0)  # captured first: `ip | grep -q` can die of SIGPIPE under pipefail
grep -q "inet6 ${ip6} " <<<"$addrs6" && pass "the TUN has the IPv6 lease" || fail "TUN addresses: $addrs6"
grep -q '^nameserver 192.0.2.53$' "/etc/netns/$C/resolv.conf" && grep -q '^nameserver 2001:db8:f::53$' "/etc/netns/$C/resolv.conf" \
    && pass "resolv.conf: the exit's IPv4 and IPv6 DNS servers" || fail "resolv.conf: $(cat "/etc/netns/$C/resolv.conf")"
lines=$(wc -l <"$T_WORK/http.log")
got=$(ip netns exec $C curl -fsS --max-time 10 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null || true)
[ "$got" = hello ] && pass "IPv6 fetch through the tunnel" || fail "IPv6 fetch through the tunnel: '$got'"
tail -n +$((lines + 1)) "$T_WORK/http.log" | grep '"GET /small.txt' | grep -q '^2001:db8:e::1 ' \
    && pass "the internet host saw the exit's IPv6 address (NAT66)" || fail "http log: $(tail -3 "$T_WORK/http.log")"
srv=$(cli e vpn server status --json)
[ "$(jq -r '.info.clients[0].tunnel_ip6' <<<"$srv")" = "${ip6%/64}" ] && pass "server status lists the client's IPv6 address" \
    || fail "server status: $(jq -c .info.clients <<<"$srv")"

# 2. Bulk over sudph, IPv6 and IPv4, checksummed; medians of 3.
bulk() {  # bulk URL -> prints bytes/s, fails on a checksum mismatch
    local sum
    sum=$( (ip netns exec $C curl -fsS --max-time 180 -w "%{stderr}%{speed_download}" "$1" 2>"$T_WORK/speed" || true) | sha256sum | cut -d' ' -f1)
    [ "$sum" = "$want_bulk" ] || { echo 0; return 1; }
    cat "$T_WORK/speed"
}
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
for fam in 6 4; do
    url='http://[2001:db8:f::80]:8080/bulk.bin'
    [ $fam = 4 ] && url='http://203.0.113.80:8080/bulk.bin'
    speeds=() ok=1
    for _ in 1 2 3; do
        if s=$(bulk "$url"); then speeds+=("$s"); else ok=0; speeds+=(0); fi
    done
    m=$(median "${speeds[@]}")
    [ $ok = 1 ] && pass "IPv$fam: 3 × 48 MB through the tunnel, checksums match; median $(awk -v s="$m" 'BEGIN { printf "%.1f MB/s", s / 1e6 }') (runs: $(printf '%s ' "${speeds[@]}"))" \
        || fail "IPv$fam bulk checksum mismatch"
done
# iperf3 (when installed): 3 × 4 s per family and direction through the tunnel, medians in
# Mbit/s; figures for the report, not asserted.
if command -v iperf3 >/dev/null; then
    ip netns exec $N iperf3 -s >"$T_WORK/iperf3.log" 2>&1 &
    T_PIDS+=("$!")
    sleep 0.5
    for fam in 6 4; do
        target=2001:db8:f::80; [ $fam = 4 ] && target=203.0.113.80
        for dir in down up; do
            rates=() rev=""
            [ $dir = down ] && rev=-R  # -R: N sends, as in the downloads above
            for _ in 1 2 3; do
                r=$(ip netns exec $C timeout 20 iperf3 -c $target -t 4 -J $rev 2>/dev/null \
                    | jq -r '.end.sum_received.bits_per_second // 0' 2>/dev/null || echo 0)
                rates+=("${r:-0}")
            done
            log "iperf3 IPv$fam $dir: median $(median "${rates[@]}" | awk '{ printf "%.0f", $1 / 1e6 }') Mbit/s (runs: $(printf '%.0f ' "${rates[@]}"))"
        done
    done
fi
log "load: $(cat /proc/loadavg)"

# 3. --secure (default): the exit's ULA LAN host, its uplink /64 and the exit itself are out of reach.
ip netns exec $C curl -fsS --max-time 3 -o /dev/null 'http://[fd00:77::2]:8080/small.txt' 2>/dev/null \
    && fail "secure: client reached the exit's ULA LAN host" || pass "secure: the exit's ULA LAN host (fd00:77::2) is unreachable"
ip netns exec $C curl -fsS --max-time 3 -o /dev/null 'http://[2001:db8:e::2]:8080/small.txt' 2>/dev/null \
    && fail "secure: client reached a host on the exit's IPv6 uplink /64" || pass "secure: a host on the exit's IPv6 /64 (2001:db8:e::2) is unreachable"
ip netns exec $C ping -6 -c1 -W1 2001:db8:e::1 >/dev/null 2>&1 && fail "secure: client pinged the exit's IPv6 address" \
    || pass "secure: the exit's own IPv6 address does not answer"
[ "$(grep -c GET "$T_WORK/lan.log" || true)" = 1 ] && pass "secure: the LAN host saw only the exit's own probe" \
    || fail "LAN log: $(cat "$T_WORK/lan.log")"

# 3b. The exit restarts: the client reconnects with the same IPv6 address (the ULA is stored)
# and IPv6 flows again.
visor_stop e
visor_start e $E
server_up || fail "vpn-server did not come back"
t0=$(date +%s%N)
for _ in $(seq 1 600); do
    st=$(cli c vpn status --json 2>/dev/null) || true
    [ "$(jq -r .info.state <<<"$st" 2>/dev/null)" = connected ] && [ "$(jq -r .info.reconnects <<<"$st")" -ge 1 ] && break
    sleep 0.1
done
log "the client reconnected after the exit's restart in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
[ "$(jq -r .info.tunnel_ip6 <<<"$st")" = "$ip6" ] && [ "$(cat "$T_WORK/e-state/vpn-server.ula")" = "$ula" ] \
    && pass "after the exit's restart: the same ULA and IPv6 lease ($ip6)" || fail "after restart: $(jq -c .info <<<"$st")"
# Retried for up to 150 s: after a quick exit restart traffic through the tunnel can stall for
# tens of seconds until the client reconnects once more, IPv4 alike (seen with main's binary too).
t1=$(date +%s)
while :; do
    got=$(ip netns exec $C curl -fsS --max-time 5 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null || true)
    [ "$got" = hello ] || [ $(( $(date +%s) - t1 )) -gt 150 ] && break
    sleep 1
done
got4=$(ip netns exec $C curl -fsS --max-time 5 http://203.0.113.80:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && pass "IPv6 through the tunnel after the exit's restart (after $(( $(date +%s) - t1 )) s)" \
    || fail "IPv6 fetch after restart: '$got' (IPv4 now: '$got4')"

# 4. Kill switch covers IPv6: the exit dies, no IPv6 leaves directly.
expect_ok "vpn stop" cli c vpn stop
routes6=$(ip -n $C -6 route)
grep -q skwvpn0 <<<"$routes6" && fail "IPv6 routes left after stop" || pass "vpn stop removes the IPv6 routes"
expect_ok "vpn start --killswitch" cli c vpn start -k "$PKE" --killswitch
kill -9 "$PID_e"
sleep 1
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $C curl -fsS --max-time 3 -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null \
    && fail "kill switch: IPv6 got through with the exit dead" || pass "kill switch: routed IPv6 dropped"
ip netns exec $C curl -fsS --max-time 3 --interface skwxc1 -o /dev/null 'http://[2001:db8:c::2]:8080/small.txt' 2>/dev/null \
    && fail "kill switch: IPv6 bound to the direct interface left" || pass "kill switch: IPv6 bound to the direct path dropped"
[ "$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -c GET || true)" = 0 ] && pass "the internet host saw no IPv6 while the exit was down" \
    || fail "leak: $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
expect_ok "vpn stop (exit dead)" cli c vpn stop
visor_stop c  # its transport to the dead exit would wait for the dead-peer timer

# 5. An exit without an IPv6 uplink: the client keeps IPv6 blocked and says why.
ip -n $E -6 route del default
visor_start e $E
server_up || fail "vpn-server did not come back"
visor_start c $C
expect_ok "vpn start (exit without IPv6 uplink)" cli c vpn start -k "$PKE"
st=$(cli c vpn status --json)
[ "$(jq -r .info.tunnel_ip6 <<<"$st")" = null ] && [[ "$(jq -r .info.ipv6_blocked <<<"$st")" == *"no IPv6 uplink"* ]] \
    && pass "status: IPv6 blocked, because the exit has no IPv6 uplink" || fail "status: $(jq -c .info <<<"$st")"
cli c vpn status | grep -q "^ipv6: *blocked: the exit has no IPv6 uplink" && pass "text status says why IPv6 is blocked" \
    || fail "text status: $(cli c vpn status)"
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $C curl -fsS --max-time 3 -o /dev/null 'http://[2001:db8:f::80]:8080/small.txt' 2>/dev/null \
    && fail "IPv6 left outside the tunnel" || pass "IPv6 blocked (no leak around the tunnel)"
got=$(ip netns exec $C curl -fsS --max-time 10 http://203.0.113.80:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && tail -n 1 "$T_WORK/http.log" | grep -q '^::ffff:203.0.113.1 ' && pass "IPv4 through the tunnel still works" \
    || fail "IPv4 fetch: '$got' $(tail -n 1 "$T_WORK/http.log")"
[ "$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -c '^2001:db8:c::1 ' || true)" = 0 ] && pass "no IPv6 request from C's own address" \
    || fail "leak: $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
expect_ok "vpn stop" cli c vpn stop
visor_stop c

# 5b. An exit with IPv6 turned off (disable_ipv6=1, as in the bench harness's namespaces): the
# kernel refuses the TUN's IPv6 address (EACCES); vpn-server still starts and serves IPv4, and
# the client says why it has no IPv6.
visor_stop e
ip netns exec $E sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
visor_start e $E
server_up && pass "vpn-server starts on an exit with IPv6 disabled" \
    || fail "server status (IPv6 disabled): $(cli e vpn server status --json 2>&1; tail -3 "$T_WORK/e.log")"
visor_start c $C
expect_ok "vpn start (exit with IPv6 disabled)" cli c vpn start -k "$PKE"
st=$(cli c vpn status --json)
[ "$(jq -r .info.tunnel_ip6 <<<"$st")" = null ] && [[ "$(jq -r .info.ipv6_blocked <<<"$st")" == *"cannot address its TUN over IPv6"* ]] \
    && pass "status: IPv6 blocked, because the exit cannot use IPv6" || fail "status: $(jq -c .info <<<"$st")"
got=$(ip netns exec $C curl -fsS --max-time 10 http://203.0.113.80:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && tail -n 1 "$T_WORK/http.log" | grep -q '^::ffff:203.0.113.1 ' \
    && pass "IPv4 through the tunnel works with the exit's IPv6 disabled" || fail "IPv4 fetch (IPv6 disabled): '$got' $(tail -n 1 "$T_WORK/http.log")"
expect_ok "vpn stop" cli c vpn stop
visor_stop c
ip netns exec $E sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0

# 6. Server stop restores the exit.
expect_ok "vpn server stop" cli e vpn server stop
[ "$(ip netns exec $E cat /proc/sys/net/ipv6/conf/all/forwarding)" = 0 ] && pass "IPv6 forwarding restored" || fail "IPv6 forwarding not restored"
ip netns exec $E nft list table inet skywire_vpn_server >/dev/null 2>&1 && fail "server nft table left" || pass "server nft table removed"

finish
