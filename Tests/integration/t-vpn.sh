#!/usr/bin/env bash
# VPN through two visors.
#
#   C (client, vpn-client) ──10.79.0.0/24──▶ E (exit, vpn-server) ──203.0.113.0/24──▶ N ("internet")
#   C ──198.51.100.0/24 (C's default route)──▶ N        E ──192.168.77.0/24──▶ L (the exit's LAN host)
#
# C normally reaches N directly (198.51.100.1); through the VPN N must see the exit (203.0.113.1).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

C=skwtVC$$ E=skwtVE$$ N=skwtVN$$ L=skwtVL$$ D=skwtVD$$
vpn_cleanup() {
    local rc=$?
    set +e
    rm -rf "/etc/netns/$C" "/etc/netns/$D" ${P:+"/etc/netns/$P"} ${R:+"/etc/netns/$R"}
    (exit $rc)  # hand the test's status on to lib.sh's cleanup
    cleanup
}
trap vpn_cleanup EXIT

netns_add $C; netns_add $E; netns_add $N; netns_add $L; netns_add $D
veth_pair $C skwvc0 10.79.0.1/24 $E skwve0 10.79.0.2/24
veth_pair $E skwve1 203.0.113.1/24 $N skwvn0 203.0.113.2/24
veth_pair $C skwvc1 198.51.100.1/24 $N skwvn1 198.51.100.2/24
veth_pair $E skwve2 192.168.77.1/24 $L skwvl0 192.168.77.2/24
veth_pair $D skwvd0 10.80.0.1/24 $E skwve3 10.80.0.2/24
# A second client D whose own network 10.77.0.0/28 overlaps the exit's first pool.
ip -n $D link add skwvdum0 type veth peer name skwvdum1
ip -n $D addr add 10.77.0.1/28 dev skwvdum0
ip -n $D link set skwvdum0 up
ip -n $D link set skwvdum1 up
ip -n $C route add default via 198.51.100.2
ip -n $E route add default via 203.0.113.2
ip -n $C addr add fd00:79::1/64 dev skwvc0 nodad
ip -n $E addr add fd00:79::2/64 dev skwve0 nodad
# The client's resolver: `ip netns exec` bind-mounts this over /etc/resolv.conf.
mkdir -p "/etc/netns/$C"
printf '# the client namespace resolver\nnameserver 192.0.2.1\noptions edns0\n' >"/etc/netns/$C/resolv.conf"

# N and L serve files; N on both of its addresses.
mkdir -p "$T_WORK/www"
head -c 5000000 /dev/urandom >"$T_WORK/www/big.bin"
echo hello >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
# Bulk TCP both ways over sudph (the TSO/GRO datapath): 48 MB, checked end to end.
head -c 48000000 /dev/urandom >"$T_WORK/www/bulk.bin"
want_bulk=$(sha256sum <"$T_WORK/www/bulk.bin" | cut -d' ' -f1)
ip netns exec $N python3 -m http.server 8080 --bind 0.0.0.0 --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $L python3 -m http.server 8080 --bind 192.168.77.2 --directory "$T_WORK/www" >"$T_WORK/lan.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $C curl -fsS -o /dev/null http://203.0.113.2:8080/small.txt 2>/dev/null \
        && ip netns exec $E curl -fsS -o /dev/null http://192.168.77.2:8080/small.txt 2>/dev/null && break
    [ "$i" = 100 ] && die "the test HTTP servers did not start"
    sleep 0.1
done
grep -q '^198.51.100.1 ' "$T_WORK/http.log" && pass "without the VPN, C reaches N directly" || fail "direct path: $(cat "$T_WORK/http.log")"

PKC=$(visor_config c)
PKE=$(visor_config e)
PKO=$(visor_config o)
PKD=$(visor_config d)
WL="$PKC,$PKD"
jq --arg wl "$WL" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$wl])' \
    "$T_WORK/e.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/e.json"
for v in c o; do
    jq --arg e "$PKE" '.transport.peers[$e] = {"stcpr":"10.79.0.2:7777","sudph":"10.79.0.2:7778"}' \
        "$T_WORK/$v.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/$v.json"
done
jq '.transport.stcpr_port=7790 | .transport.sudph_port=7791' "$T_WORK/o.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/o.json"
jq --arg e "$PKE" '.transport.peers[$e] = {"stcpr":"10.80.0.2:7777"}' "$T_WORK/d.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/d.json"

speed() { awk '{ printf "%.1f MB/s", $1 / 1e6 }' "$T_WORK/speed" 2>/dev/null; }
snapshot() {  # routes, rules, links, nftables and resolver of C
    { ip -n $C route show table all; ip -n $C -6 route show table all; ip -n $C rule; ip -n $C -o link | cut -d' ' -f2
      ip netns exec $C nft list ruleset; sha256sum <"/etc/netns/$C/resolv.conf"; } 2>&1
}
# Wait until IPv6 duplicate address detection is over (the kernel adds link-local routes then).
for i in $(seq 1 100); do
    [ -z "$(ip -n $C -6 addr show tentative)" ] && break
    [ "$i" = 100 ] && die "IPv6 addresses of $C still tentative after 10 s"
    sleep 0.1
done
before=$(snapshot)
fwd_before=$(ip netns exec $E cat /proc/sys/net/ipv4/ip_forward)
visor_start e $E
# The control socket opens before auto-started apps finish starting: wait (bounded) for the outcome.
for _ in $(seq 1 50); do
    st=$(cli e vpn server status --json 2>&1) || true
    [ "$(jq -r .status <<<"$st" 2>/dev/null)" = starting ] || break
    sleep 0.1
done
[ "$(jq -r .status <<<"$st")" = running ] && [ "$(jq -r .info.exit_interface <<<"$st")" = skwve1 ] \
    && pass "vpn-server auto-started with the exit interface of the only default route (skwve1)" || fail "server status: $st"
[ "$(ip netns exec $E cat /proc/sys/net/ipv4/ip_forward)" = 1 ] && pass "exit: ip_forward on" || fail "ip_forward off"

# 1. A visor outside the whitelist is refused and nothing is set up.
visor_start o $C
expect_fail "non-whitelisted client refused with forbidden" "forbidden" cli o vpn start -k "$PKE"
[ "$(snapshot)" = "$before" ] && pass "refused client: no route, link, nft table or DNS change" \
    || fail "refused client changed the system: $(diff <(echo "$before") <(snapshot))"
visor_stop o

# 2. Through the VPN: a 5 MB file with a matching checksum; N sees the exit's address.
visor_start c $C
expect_ok "vpn start" cli c vpn start -k "$PKE" --dns 192.0.2.53
st=$(cli c vpn status --json)
[ "$(jq -r .info.state <<<"$st")" = connected ] && [ "$(jq -r .info.transport <<<"$st")" = stcpr ] \
    && pass "status: connected over stcpr as $(jq -r .info.tunnel_ip <<<"$st")" || fail "status: $st"
routes=$(ip -n $C route)  # captured first: `ip | grep -q` can die of SIGPIPE under pipefail
grep -q '^0.0.0.0/1 dev skwvpn0' <<<"$routes" && grep -q '^128.0.0.0/1 dev skwvpn0' <<<"$routes" \
    && grep -q '^10.79.0.2 dev skwvc0' <<<"$routes" && pass "routes: two /1 via skwvpn0, host route to the exit" \
    || fail "routes: $routes"
grep -q '^nameserver 192.0.2.53$' "/etc/netns/$C/resolv.conf" && pass "resolv.conf points at --dns" \
    || fail "resolv.conf: $(cat "/etc/netns/$C/resolv.conf")"
: >"$T_WORK/http.log.mark"; lines=$(wc -l <"$T_WORK/http.log")
got=$( (ip netns exec $C curl -fsS --max-time 120 -w "%{stderr}%{speed_download}" http://203.0.113.2:8080/big.bin 2>"$T_WORK/speed" || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && pass "5 MB through the VPN with a matching checksum ($(speed))" || fail "checksum $got != $want"
fetches=$(tail -n +$((lines + 1)) "$T_WORK/http.log")
grep '"GET /big.bin' <<<"$fetches" | grep -q '^203.0.113.1 ' \
    && pass "the internet host saw the exit's address" || fail "http log: $(tail -3 "$T_WORK/http.log")"
st=$(cli c vpn status --json)
[ "$(jq -r .info.bytes_down <<<"$st")" -gt 5000000 ] && [ "$(jq -r .info.bytes_up <<<"$st")" -gt 0 ] \
    && pass "status counts bytes both ways ($(jq -c '[.info.bytes_up,.info.bytes_down]' <<<"$st"))" || fail "bytes: $st"
ip netns exec $C ping -6 -c1 -W1 fd00:79::2 >/dev/null 2>&1 && fail "IPv6 not blocked while connected" \
    || pass "IPv6 blocked while connected"
srv=$(cli e vpn server status --json)
[ "$(jq -r '.info.clients | length' <<<"$srv")" = 1 ] && [ "$(jq -r '.info.clients[0].pk' <<<"$srv")" = "$PKC" ] \
    && pass "server status lists the client" || fail "server status: $srv"

# Two clients at once: D's lease avoids its own 10.77.0.0/28; replies reach the right client.
# D's resolver is systemd-resolved's stub; a recording stand-in for resolvectl (SKYWIRE_RESOLVECTL)
# shows the per-link DNS set on the TUN and reverted on stop, with resolv.conf left alone.
mkdir -p "/etc/netns/$D"
printf 'nameserver 127.0.0.53\noptions edns0 trust-ad\n' >"/etc/netns/$D/resolv.conf"
resolv_d_before=$(sha256sum <"/etc/netns/$D/resolv.conf")
printf '#!/bin/sh\necho "$*" >>%s\n' "$T_WORK/resolvectl.log" >"$T_WORK/resolvectl"
chmod +x "$T_WORK/resolvectl"
SKYWIRE_RESOLVECTL=$T_WORK/resolvectl visor_start d $D
expect_ok "second client: vpn start" cli d vpn start -k "$PKE" --dns 192.0.2.53
grep -qx "dns skwvpn0 192.0.2.53" "$T_WORK/resolvectl.log" && grep -qx "domain skwvpn0 ~." "$T_WORK/resolvectl.log" \
    && [ "$(sha256sum <"/etc/netns/$D/resolv.conf")" = "$resolv_d_before" ] \
    && pass "systemd-resolved: DNS set on the TUN link (resolvectl dns/domain), resolv.conf untouched" \
    || fail "resolved path: $(cat "$T_WORK/resolvectl.log" 2>&1)"
std=$(cli d vpn status --json)
[ "$(jq -r .info.tunnel_ip <<<"$std")" = 10.77.0.18/30 ] && pass "second client leased 10.77.0.18/30, outside its own 10.77.0.0/28" \
    || fail "second client lease: $(jq -c .info <<<"$std")"
(ip netns exec $C curl -fsS --max-time 120 http://203.0.113.2:8080/big.bin | sha256sum | cut -d" " -f1 >"$T_WORK/sum.c") &
pc=$!
(ip netns exec $D curl -fsS --max-time 120 http://203.0.113.2:8080/big.bin | sha256sum | cut -d" " -f1 >"$T_WORK/sum.d") &
pd=$!
wait $pc $pd || true
[ "$(cat "$T_WORK/sum.c")" = "$want" ] && [ "$(cat "$T_WORK/sum.d")" = "$want" ] \
    && pass "two clients downloading at once, both checksums match" || fail "concurrent: $(cat "$T_WORK/sum.c") $(cat "$T_WORK/sum.d")"
[ "$(cli e vpn server status --json | jq '.info.clients | length')" = 2 ] && pass "server lists two clients" || fail "server clients"
expect_ok "second client: vpn stop" cli d vpn stop
grep -qx "revert skwvpn0" "$T_WORK/resolvectl.log" && [ "$(sha256sum <"/etc/netns/$D/resolv.conf")" = "$resolv_d_before" ] \
    && pass "systemd-resolved: the link's DNS reverted on stop" || fail "resolved revert: $(cat "$T_WORK/resolvectl.log")"
visor_stop d

# 3. --secure (default): no LAN host of the exit, no exit-local address; --secure=false: LAN reachable.
ip netns exec $C curl -fsS --max-time 3 -o /dev/null http://192.168.77.2:8080/small.txt 2>/dev/null \
    && fail "secure: client reached the exit's LAN host" || pass "secure: the exit's LAN host is unreachable"
ip netns exec $C ping -c1 -W1 203.0.113.1 >/dev/null 2>&1 && fail "secure: client reached an exit-local address" \
    || pass "secure: exit-local addresses are unreachable"
gw=$(jq -r .info.server_tunnel_ip <<<"$st")
ip netns exec $C ping -c1 -W2 "$gw" >/dev/null 2>&1 && pass "secure: the tunnel gateway $gw answers" || fail "gateway $gw silent"
# ---- [vpn] --secure protects the exit host itself (issue 16) ----
# A TCP service on 0.0.0.0 in the exit's namespace: the client reaches it neither through its
# tunnel gateway address nor through an address the exit got after vpn-server started (nor the
# exit's uplink address); the internet host still works. (The server runs with an explicit
# --whitelist: $WL.)
ip netns exec $E python3 -m http.server 8089 --bind 0.0.0.0 --directory "$T_WORK/www" >"$T_WORK/exit-http.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $E curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:8089/small.txt 2>/dev/null && break
    [ "$i" = 100 ] && die "the exit's own test service did not start"
    sleep 0.1
done
ip -n $E addr add 203.0.113.77/32 dev skwve1
for target in "$gw" 203.0.113.77 203.0.113.1; do
    ip netns exec $C curl -fsS --max-time 3 -o /dev/null "http://$target:8089/small.txt" 2>/dev/null \
        && fail "secure: the client reached the exit's own service at $target:8089" \
        || pass "secure: the exit's own service (0.0.0.0:8089) is unreachable at $target"
done
ip netns exec $C ping -c1 -W1 203.0.113.77 >/dev/null 2>&1 && fail "secure: the client pinged an address added to the exit" \
    || pass "secure: an address added to the exit after start does not answer pings"
[ "$(grep -v '^127\.0\.0\.1 ' "$T_WORK/exit-http.log" | grep -c GET || true)" = 0 ] \
    && pass "secure: the exit's service saw no request from a client" || fail "exit service log: $(cat "$T_WORK/exit-http.log")"
got=$(ip netns exec $C curl -fsS --max-time 10 http://203.0.113.2:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && pass "secure: the internet host still works" || fail "secure: the internet host unreachable"
ip -n $E addr del 203.0.113.77/32 dev skwve1
# Control streams that never say CLIENT_HELLO are reset (after 10 s) and counted. The hostile
# peer uses D's whitelisted key (visor d is stopped) from D's namespace.
to_before=$(cli e vpn server status --json | jq -r '.info.hello_timeouts // 0')
silent=$(ip netns exec $D timeout 90 "$(dirname "$SKYWIRE_BIN")/skywire-hostile" vpn-silent --pk "$PKE" --stcpr 10.80.0.2:7777 \
    --sk "$(jq -r .sk "$T_WORK/d.json")" --our-pk "$PKD" --streams 8 --wait 25 2>>"$T_WORK/hostile.log" || true)
[ "$(jq -r .opened <<<"$silent" 2>/dev/null)" = 8 ] && [ "$(jq -r .closed <<<"$silent")" = 8 ] \
    && [ "$(jq '[.closed_after_ms[] | select(. < 9000)] | length' <<<"$silent")" = 0 ] \
    && pass "8 control streams without CLIENT_HELLO reset by the exit after $(jq -c .closed_after_ms <<<"$silent") ms" \
    || fail "silent control streams: ${silent:-no output: $(tail -3 "$T_WORK/hostile.log" 2>/dev/null)}"
to_after=$(cli e vpn server status --json | jq -r '.info.hello_timeouts // 0')
[ $((to_after - to_before)) = 8 ] && pass "vpn server status counts them (hello_timeouts $to_after)" \
    || fail "hello_timeouts $to_before -> $to_after"
got=$(ip netns exec $C curl -fsS --max-time 10 http://203.0.113.2:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && pass "the connected client kept working meanwhile" || fail "client broken after the silent streams"
# ---- [vpn] end ----
expect_ok "vpn server stop" cli e vpn server stop
expect_ok "vpn server start --secure=false" cli e vpn server start --whitelist "$WL" --secure=false
for _ in $(seq 1 30); do
    ip netns exec $C curl -fsS --max-time 2 -o /dev/null http://192.168.77.2:8080/small.txt 2>/dev/null && break
    sleep 0.5
done
ip netns exec $C curl -fsS --max-time 3 -o /dev/null http://192.168.77.2:8080/small.txt 2>/dev/null \
    && pass "--secure=false: the client reconnected by itself and reaches the LAN host" || fail "--secure=false: LAN host unreachable"
expect_ok "vpn server restart (secure)" cli e vpn server stop
expect_ok "vpn server start" cli e vpn server start --whitelist "$WL"

# 4. Kill switch: the exit dies, nothing leaves directly (not even bound to the direct interface).
expect_ok "vpn stop" cli c vpn stop
[ "$(snapshot)" = "$before" ] && pass "vpn stop restores routes, links, nftables and resolv.conf exactly" \
    || fail "after stop: $(diff <(echo "$before") <(snapshot))"
expect_ok "vpn start --killswitch" cli c vpn start -k "$PKE" --killswitch --dns 192.0.2.53
kill -9 "$PID_e"
sleep 1
lines=$(wc -l <"$T_WORK/http.log")
ip netns exec $C curl -fsS --max-time 3 -o /dev/null http://203.0.113.2:8080/small.txt 2>/dev/null \
    && fail "kill switch: traffic got through with the exit dead" || pass "kill switch: routed traffic dropped"
ip netns exec $C curl -fsS --max-time 3 --interface skwvc1 -o /dev/null http://198.51.100.2:8080/small.txt 2>/dev/null \
    && fail "kill switch: traffic bound to the direct interface left" || pass "kill switch: traffic bound to the direct path dropped"
[ "$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep -c GET)" = 0 ] && pass "the internet host saw nothing while the exit was down" \
    || fail "leak: $(tail -n +$((lines + 1)) "$T_WORK/http.log")"
st=$(cli c vpn status --json)
[ "$(jq -r .info.state <<<"$st")" = reconnecting ] && pass "client state: reconnecting" || fail "state: $(jq -c .info <<<"$st")"

visor_start e $E
for _ in $(seq 1 60); do
    got=$(ip netns exec $C curl -fsS --max-time 2 http://203.0.113.2:8080/small.txt 2>/dev/null) && [ "$got" = hello ] && break
    sleep 1
done
[ "${got:-}" = hello ] && pass "exit restarted: traffic resumes without touching the client" || fail "no recovery after the exit restarted"
st=$(cli c vpn status --json)
[ "$(jq -r .info.reconnects <<<"$st")" -ge 1 ] && pass "client reconnected ($(jq -r .info.reconnects <<<"$st")x)" || fail "reconnects: $st"

# 5. A crashed client is cleaned up by the next start.
kill -9 "$PID_c"
sleep 0.5
ip netns exec $C nft list table inet skywire_vpn_client >/dev/null 2>&1 && pass "after a client crash the kill switch stays" \
    || fail "kill switch table gone after crash"
# The restarted client knows the exit's sudph address only: the tunnel runs over UDP.
jq --arg e "$PKE" '.transport.peers[$e] = {"sudph":"10.79.0.2:7778"}' "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"
visor_start c $C
expect_ok "vpn start after a crash" cli c vpn start -k "$PKE" --dns 192.0.2.53
got=$(ip netns exec $C curl -fsS --max-time 10 http://203.0.113.2:8080/small.txt 2>/dev/null || true)
[ "$got" = hello ] && pass "works after a crash" || fail "no traffic after a crash restart"
st=$(cli c vpn status --json)
[ "$(jq -r .info.transport <<<"$st")" = sudph ] && pass "the tunnel now runs over sudph" || fail "transport: $(jq -c .info <<<"$st")"
got=$( (ip netns exec $C curl -fsS --max-time 120 -w "%{stderr}%{speed_download}" http://203.0.113.2:8080/big.bin 2>"$T_WORK/speed" || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && pass "5 MB through the VPN over sudph with a matching checksum ($(speed))" || fail "sudph checksum $got != $want"
# SKYWIRE_VPN_OFFLOADS=0 (inherited by the visors) runs the same checks on a plain TUN.
tso=on; [ "${SKYWIRE_VPN_OFFLOADS:-1}" = 0 ] && tso=off
ip netns exec $C ethtool -k skwvpn0 2>/dev/null | grep -q "^tcp-segmentation-offload: $tso" \
    && pass "the client TUN runs with TSO $tso (IFF_VNET_HDR offloads)" || fail "TUN offloads: $(ip netns exec $C ethtool -k skwvpn0 2>&1 | head -20)"
got=$( (ip netns exec $C curl -fsS --max-time 120 -w "%{stderr}%{speed_download}" http://203.0.113.2:8080/bulk.bin 2>"$T_WORK/speed" || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want_bulk" ] && pass "48 MB bulk download over sudph with a matching checksum ($(speed))" || fail "bulk download checksum $got != $want_bulk"
# Upload: N hashes what one connection sends (one accept, 120 s limit).
rm -f "$T_WORK/up.sha"
ip netns exec $N timeout 130 python3 -c '
import hashlib, socket, sys
srv = socket.create_server(("203.0.113.2", 9009)); srv.settimeout(120)
conn, _ = srv.accept(); conn.settimeout(120); h = hashlib.sha256()
while (b := conn.recv(1 << 16)):
    h.update(b)
open(sys.argv[1] + ".tmp", "w").write(h.hexdigest()); conn.close()
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])' "$T_WORK/up.sha" &
T_PIDS+=("$!")
up_pid=$!
for i in $(seq 1 50); do ip netns exec $N ss -Hltn 'sport = :9009' | grep -q . && break; sleep 0.1; done
start_ns=$(date +%s%N)
ip netns exec $C timeout 120 python3 -c '
import socket, sys
s = socket.create_connection(("203.0.113.2", 9009), timeout=60)
with open(sys.argv[1], "rb") as f:
    while (b := f.read(1 << 16)):
        s.sendall(b)
s.close()' "$T_WORK/www/bulk.bin" || true
wait "$up_pid" 2>/dev/null || true
up_s=$(( ($(date +%s%N) - start_ns) / 1000000 ))
[ "$(cat "$T_WORK/up.sha" 2>/dev/null)" = "$want_bulk" ] && pass "48 MB bulk upload over sudph with a matching checksum (${up_s} ms)" \
    || fail "bulk upload checksum $(cat "$T_WORK/up.sha" 2>/dev/null) != $want_bulk"
expect_ok "vpn stop" cli c vpn stop
[ "$(snapshot)" = "$before" ] && pass "after crash + restart + stop, the client is exactly as before" \
    || fail "after crash: $(diff <(echo "$before") <(snapshot))"

# A visor stopped with SIGTERM stops its apps: the client is restored too.
expect_ok "vpn start --killswitch (then SIGTERM)" cli c vpn start -k "$PKE" --killswitch --dns 192.0.2.53
txt=$(cli c vpn status)
grep -q '^state: *connected' <<<"$txt" && pass "vpn status (text) says connected" || fail "text status: $txt"
visor_stop c
[ "$(snapshot)" = "$before" ] && pass "SIGTERM of the client visor restores routes, nftables and resolv.conf" \
    || fail "after SIGTERM: $(diff <(echo "$before") <(snapshot))"

# 5b. A client without --dns uses the DNS servers the exit announces, and follows a change of
# them when it reconnects (the exit restarted with another --dns).
exit_dns() {  # exit_dns IP: restarts the exit announcing IP and waits for its vpn-server
    jq --arg wl "$WL" --arg d "$1" '(.launcher.apps[] | select(.name=="vpn-server")).args = ["--whitelist", $wl, "--dns", $d]' \
        "$T_WORK/e.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/e.json"
    visor_stop e
    visor_start e $E
    for _ in $(seq 1 50); do
        [ "$(cli e vpn server status --json 2>/dev/null | jq -r .status 2>/dev/null)" = running ] && return 0
        sleep 0.1
    done
    fail "vpn-server did not come back announcing $1"
}
exit_dns 192.0.2.61
visor_start c $C
expect_ok "vpn start without --dns" cli c vpn start -k "$PKE"
grep -qx 'nameserver 192.0.2.61' "/etc/netns/$C/resolv.conf" && pass "resolv.conf points at the DNS server the exit announced" \
    || fail "resolv.conf: $(cat "/etc/netns/$C/resolv.conf")"
exit_dns 192.0.2.62
t0=$(date +%s%N)
for _ in $(seq 1 300); do
    grep -qx 'nameserver 192.0.2.62' "/etc/netns/$C/resolv.conf" && break
    sleep 0.1
done
log "the client followed the exit's restart (sudph) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
st=$(cli c vpn status --json)
grep -qx 'nameserver 192.0.2.62' "/etc/netns/$C/resolv.conf" && ! grep -q '192.0.2.61' "/etc/netns/$C/resolv.conf" \
    && [ "$(jq -c .info.dns <<<"$st")" = '["192.0.2.62"]' ] && [ "$(jq -r .info.state <<<"$st")" = connected ] \
    && pass "after the reconnect the client uses the exit's new DNS server (resolv.conf and status)" \
    || fail "DNS after reconnect: $(cat "/etc/netns/$C/resolv.conf"); $(jq -c .info <<<"$st")"
expect_ok "vpn stop" cli c vpn stop
[ "$(snapshot)" = "$before" ] && pass "after the DNS change and stop, the client is exactly as before" \
    || fail "after DNS change: $(diff <(echo "$before") <(snapshot))"
visor_stop c

# ---- access (issue 16): closed by default ------------------------------------------------------
# A vpn-server given no whitelist, or an empty one, refuses every key (forbidden) and says so;
# `--whitelist any` admits a key no list names; `any` mixed with keys is refused.
expect_ok "access: vpn server stop" cli e vpn server stop
for wl_args in "none" "empty"; do
    if [ $wl_args = none ]; then out=$(cli e vpn server start 2>&1); else out=$(cli e vpn server start --whitelist "" 2>&1); fi \
        && grep -q "refuses every key (whitelist empty)" <<<"$out" \
        && pass "access: vpn server start with $wl_args whitelist says it refuses every key ($out)" \
        || fail "access: vpn server start with $wl_args whitelist: $out"
    st=$(cli e apps ls --json | jq -c '.[] | select(.name=="vpn-server")')
    [ "$(jq -r .access <<<"$st")" = closed ] && grep -q "refuses every key" <<<"$(jq -r .detail <<<"$st")" \
        && pass "access: apps ls --json: vpn-server access closed" || fail "access: apps ls: $st"
    visor_start o $C
    expect_fail "access: $wl_args whitelist: a stranger is refused with forbidden" "forbidden" cli o vpn start -k "$PKE"
    visor_stop o
    expect_ok "access: vpn server stop ($wl_args)" cli e vpn server stop
done
grep -q "vpn-server: whitelist empty: refuses every key; use --whitelist PK,... or --whitelist any" "$T_WORK/e.log" \
    && pass "access: the exit's log says the vpn-server refuses every key" || fail "access: no refusal notice in the exit's log"
expect_fail "access: --whitelist any mixed with a key is refused" "cannot be combined with keys" \
    cli e vpn server start --whitelist "any,$PKC"
out=$(cli e vpn server start --whitelist any 2>&1) && grep -q "open to every key (whitelist any)" <<<"$out" \
    && pass "access: vpn server start --whitelist any says it is open to every key" || fail "access: --whitelist any: $out"
grep -q "vpn-server: whitelist any: open to every visor key" "$T_WORK/e.log" \
    && pass "access: the exit's log says the vpn-server is open to every key" || fail "access: no open notice in the exit's log"
[ "$(cli e apps ls --json | jq -r '.[] | select(.name=="vpn-server") | .access')" = open ] \
    && pass "access: apps ls --json: vpn-server access open" || fail "access: apps ls: $(cli e apps ls --json)"
visor_start o $C
expect_ok "access: --whitelist any admits a key no list names" cli o vpn start -k "$PKE"
[ "$(cli o vpn status --json | jq -r .info.state)" = connected ] && pass "access: the stranger is connected" \
    || fail "access: stranger status: $(cli o vpn status --json)"
expect_ok "access: stranger vpn stop" cli o vpn stop
visor_stop o
expect_ok "access: vpn server stop (any)" cli e vpn server stop
expect_ok "access: vpn server start with the whitelist again" cli e vpn server start --whitelist "$WL"
# ---- end access ---------------------------------------------------------------------------------

# ---- [vpn] vpn stop restores the routing tables exactly (issue 24) ----
# The client on the exit's own link with the exit as its default gateway (no router between
# them), then behind a router: `ip route show table all` (fe80:: lines left out) and nftables
# before start and after stop must be identical: after a plain stop, after a stop by the
# restarted visor of a client that crashed with the VPN up, and after a start that found the
# crashed run's state file. The client is visor c (on the exit's explicit whitelist $WL).
P=skwtVP$$ Q=skwtVQ$$ R=skwtVR$$
netns_add $P; netns_add $Q; netns_add $R
veth_pair $P skwvp0 10.84.0.1/24 $E skwve4 10.84.0.2/24
ip -n $P route add default via 10.84.0.2
veth_pair $R skwvr0 10.85.0.1/24 $Q skwvq0 10.85.0.254/24
veth_pair $Q skwvq1 10.86.0.254/24 $E skwve5 10.86.0.2/24
ip netns exec $Q sysctl -qw net.ipv4.ip_forward=1
ip -n $R route add default via 10.85.0.254
ip -n $E route add 10.85.0.0/24 via 10.86.0.254
for ns in $P $R; do  # their own resolver file (`ip netns exec` bind-mounts it): the exit announces DNS
    mkdir -p "/etc/netns/$ns"
    printf 'nameserver 192.0.2.1\n' >"/etc/netns/$ns/resolv.conf"
done
tables() {  # tables NS: every routing table (no IPv6 link-local lines) and the nftables ruleset
    { ip -n "$1" route show table all | grep -v 'fe80::' || true; ip netns exec "$1" nft list ruleset; } 2>&1
}
settle() {  # settle NS: IPv6 duplicate address detection over (bounded)
    for _ in $(seq 1 100); do
        [ -z "$(ip -n "$1" -6 addr show tentative)" ] && return 0
        sleep 0.1
    done
}
same_tables() {  # same_tables NAME NS BEFORE WHAT: the tables of NS equal BEFORE
    local now
    now=$(tables "$2")
    [ "$now" = "$3" ] && pass "$1: $4: routing tables and nftables identical" || fail "$1: $4: $(diff <(echo "$3") <(echo "$now"))"
}
crash_c() {  # crash_c NAME NS: vpn start, the visor dies (SIGKILL), the visor starts again
    expect_ok "$1: vpn start (then the visor crashes)" cli c vpn start -k "$PKE" --killswitch
    kill -9 "$PID_c"
    wait "$PID_c" 2>/dev/null || true
    visor_start c "$2"
}
route_case() {  # route_case NAME NS EXIT_ADDR HOST_ROUTE
    local name=$1 ns=$2 exit_addr=$3 want=$4 before routes got
    jq --arg e "$PKE" --arg a "$exit_addr" '.transport.peers = {($e): {"stcpr": ($a + ":7777"), "sudph": ($a + ":7778")}}' \
        "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"
    settle "$ns"
    before=$(tables "$ns")
    visor_start c "$ns"
    expect_ok "$name: vpn start --killswitch" cli c vpn start -k "$PKE" --killswitch
    routes=$(ip -n "$ns" route)
    grep -q "^$want *\$" <<<"$routes" && pass "$name: host route to the exit: $want" || fail "$name: routes: $routes"
    got=$(ip netns exec "$ns" curl -fsS --max-time 10 http://203.0.113.2:8080/small.txt 2>/dev/null || true)
    [ "$got" = hello ] && pass "$name: traffic through the tunnel" || fail "$name: no traffic through the tunnel"
    expect_ok "$name: vpn stop" cli c vpn stop
    same_tables "$name" "$ns" "$before" "after stop"
    # The visor dies with the VPN up (the host route stays: it is on the uplink); vpn stop of
    # the restarted visor restores everything.
    crash_c "$name" "$ns"
    grep -q "^$want *\$" <<<"$(ip -n "$ns" route)" && pass "$name: the crash left the host route" \
        || fail "$name: host route gone after the crash"
    expect_ok "$name: vpn stop after a crash" cli c vpn stop
    same_tables "$name" "$ns" "$before" "after a crash and vpn stop"
    # A start that finds the crashed run's state file undoes it first.
    crash_c "$name" "$ns"
    expect_ok "$name: vpn start over a stale state file" cli c vpn start -k "$PKE" --killswitch
    expect_ok "$name: vpn stop" cli c vpn stop
    same_tables "$name" "$ns" "$before" "after a start over a stale state file and stop"
    visor_stop c
}
route_case "exit on the client's link" $P 10.84.0.2 "10.84.0.2 dev skwvp0 proto static scope link"
route_case "exit behind a router" $R 10.86.0.2 "10.86.0.2 via 10.85.0.254 dev skwvr0 proto static"
# ---- [vpn] end ----

# 6. Server stop restores the exit.
expect_ok "vpn server stop" cli e vpn server stop
ip netns exec $E nft list table inet skywire_vpn_server >/dev/null 2>&1 && fail "server nft table left" || pass "server nft table removed"
[ "$(ip netns exec $E cat /proc/sys/net/ipv4/ip_forward)" = "$fwd_before" ] && pass "ip_forward restored" || fail "ip_forward not restored"
ip -n $E link show skwvpns0 >/dev/null 2>&1 && fail "server TUN left" || pass "server TUN removed"

finish
