#!/usr/bin/env bash
# dmsg between visors that cannot reach each other directly (issue 18's test list, docs/dmsg.md):
# visors A and B each behind its own symmetric NAT (`masquerade fully-random`), B advertising no
# stcpr address; the relay `skywire-dmsg` and the discovery service on the "internet" side (I,
# which routes between the NATs). B is an exit to host N, which only B and C reach.
# Checks (names as printed):
#   symmetric-nat      A cannot punch B, has no stcpr address for it: `proxy start -k` falls back
#                      to dmsg and its error-free result is a dmsg transport;
#   socks-20mb         20 MB through SOCKS5 over dmsg with a matching checksum;
#   capture            a packet capture in the relay's namespace never sees the plaintext marker;
#   vpn-refused        `vpn start -k B` refuses the relay-only path (opt-in: t-dmsg.sh);
#   impostor           a client presenting B's key to the relay is not answered (the control run
#                      with its own key is), the relay replaced no session, B keeps its session
#                      and A's new SOCKS streams still reach B;
#   move-to-direct     exit C behind B's NAT advertises a port forward that does not exist yet: A
#                      reaches C over dmsg; a download runs over it; the NAT gets the forward; A's
#                      background retry (SKYWIRE_DIRECT_RETRY_SECONDS) brings stcpr up without user
#                      action, `tp ls` shows both, a new SOCKS download goes over stcpr (its byte
#                      counter), and the download on dmsg completes with its checksum.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

DMSG_BIN=$(dirname "$SKYWIRE_BIN")/skywire-dmsg
DISC_BIN=$(dirname "$SKYWIRE_BIN")/skywire-discovery
HOSTILE=$(dirname "$SKYWIRE_BIN")/skywire-hostile
for b in "$DMSG_BIN" "$DISC_BIN" "$HOSTILE"; do [ -x "$b" ] || die "no $b (swift build builds it)"; done
# The first background direct attempt after this many seconds (30 s by default).
export SKYWIRE_DIRECT_RETRY_SECONDS=2

I=skwtXI$$ NA=skwtXNA$$ NB=skwtXNB$$ A=skwtXA$$ B=skwtXB$$ C=skwtXC$$ N=skwtXN$$
for ns in $I $NA $NB $A $B $C $N; do netns_add $ns; done
ip -n $I addr add 203.0.113.1/32 dev lo
veth_pair $I skwxi1 198.51.100.1/30 $NA skwxna0 198.51.100.2/30
veth_pair $I skwxi2 198.51.100.5/30 $NB skwxnb0 198.51.100.6/30
veth_pair $NA skwxna1 10.71.1.1/24 $A skwxa0 10.71.1.2/24
veth_pair $NB skwxnb1 10.72.1.1/24 $B skwxb0 10.72.1.2/24
veth_pair $NB skwxnb2 10.72.2.1/24 $C skwxc0 10.72.2.2/24
veth_pair $B skwxb1 192.0.2.1/25 $N skwxn0 192.0.2.2/25
veth_pair $C skwxc1 192.0.2.129/25 $N skwxn1 192.0.2.130/25
ip netns exec $I sysctl -qw net.ipv4.ip_forward=1
for nat in $NA $NB; do
    ip netns exec $nat sysctl -qw net.ipv4.ip_forward=1
    ip -n $nat route add default via $([ $nat = $NA ] && echo 198.51.100.1 || echo 198.51.100.5)
done
ip -n $A route add default via 10.71.1.1
ip -n $B route add default via 10.72.1.1
ip -n $C route add default via 10.72.2.1
ip netns exec $NA nft -f - <<'EOF'
table ip skwt_xna {
    chain post { type nat hook postrouting priority srcnat; oifname "skwxna0" masquerade fully-random; }
}
EOF
ip netns exec $NB nft -f - <<'EOF'
table ip skwt_xnb {
    chain post { type nat hook postrouting priority srcnat; oifname "skwxnb0" masquerade fully-random; }
}
EOF
ip netns exec $A ping -c1 -W2 203.0.113.1 >/dev/null || die "no route A -> internet through its NAT"
ip netns exec $B ping -c1 -W2 203.0.113.1 >/dev/null || die "no route B -> internet through its NAT"

# N serves 20 MB that repeat a plaintext marker, and a small file, to B and C.
MARKER=SKWT-DMSG-NAT-PLAINTEXT
mkdir -p "$T_WORK/www"
python3 -c "import sys; sys.stdout.write(((sys.argv[1] + '-') * 20 + '\n') * 42000)" "$MARKER" >"$T_WORK/www/big.bin"
head -c 8000000 "$T_WORK/www/big.bin" >"$T_WORK/www/mid.bin"
echo hello >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
want_mid=$(sha256sum <"$T_WORK/www/mid.bin" | cut -d' ' -f1)
ip netns exec $N python3 -m http.server --bind 0.0.0.0 --directory "$T_WORK/www" 8080 >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
# The same files paced by the server at 100 kB/s (mid.bin: 80 s), for the download that must outlive
# the move to a direct transport; bounded to 10 minutes.
ip netns exec $N python3 "$here/tools/paced-http.py" "$T_WORK/www" 0.0.0.0 8090 100000 600 >"$T_WORK/paced.log" 2>&1 &
T_PIDS+=("$!")
for port in 8080 8090; do
    for i in $(seq 1 100); do ip netns exec $B curl -fsS -o /dev/null http://192.0.2.2:$port/small.txt 2>/dev/null && break; [ "$i" = 100 ] && die "the test HTTP server on port $port did not start"; sleep 0.1; done
done

log "namespaces and the HTTP host are up; starting discovery, the relay and three visors"
# Discovery and the relay on the internet side.
ip netns exec $I "$DISC_BIN" --http 203.0.113.1:9090 --udp 203.0.113.1:9091 --db "sqlite:$T_WORK/disc.sqlite" \
    >>"$T_WORK/discovery.log" 2>&1 &
T_PIDS+=("$!")
for _ in $(seq 1 100); do ip netns exec $I curl -fsS -o /dev/null http://203.0.113.1:9090/v1/info 2>/dev/null && break; sleep 0.1; done
# A relay admitting the test's visors: newer relays are closed by default (`--clients`).
RELAY_OPEN=()
"$DMSG_BIN" --help 2>&1 | grep -q -- '--clients' && RELAY_OPEN=(--clients any)
ip netns exec $I "$DMSG_BIN" --listen 203.0.113.1:8081 --key-file "$T_WORK/relay-key.json" --http 127.0.0.1:8082 \
    "${RELAY_OPEN[@]}" >>"$T_WORK/relay.log" 2>&1 &
RELAY_PID=$!; T_PIDS+=("$RELAY_PID")
health() { ip netns exec $I curl -fsS http://127.0.0.1:8082/health; }
for i in $(seq 1 100); do health >/dev/null 2>&1 && break; [ "$i" = 100 ] && die "skywire-dmsg did not serve /health"; sleep 0.1; done
RELAY_PK=$(jq -r .public_key "$T_WORK/relay-key.json")

PKA=$(visor_config a); PKB=$(visor_config b); PKC=$(visor_config c)
for v in a b c; do
    jq --arg r "$RELAY_PK" '.transport.discovery = "http://203.0.113.1:9090" | .transport.peers = {}
        | .transport.dmsg_servers = [{"pk": $r, "addr": "203.0.113.1:8081"}]' "$T_WORK/$v.json" >"$T_WORK/t"
    install -m600 "$T_WORK/t" "$T_WORK/$v.json"
done
# B: an exit with no stcpr address (listens on 0.0.0.0, no public_addr). C: an exit whose advertised
# stcpr address is a port forward its NAT does not have yet.
for v in b c; do
    jq --arg a "$PKA" '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a])
        | (.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$a])' \
        "$T_WORK/$v.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/$v.json"
done
jq '.transport.public_addr = "198.51.100.6:7777"' "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"
visor_start a $A; visor_start b $B; visor_start c $C

relays_up() {  # relays_up NAME: the visor lists the relay among dmsg_relays (bounded: 20 s)
    for _ in $(seq 1 100); do
        [ "$(cli "$1" visor info --json | jq -r '.dmsg_relays[0] // empty')" = "$RELAY_PK" ] && return 0
        sleep 0.2
    done
    return 1
}
for v in a b c; do relays_up $v || die "visor $v has no relay session: $(tail -5 "$T_WORK/$v.log")"; done
registered() {  # registered PK: discovery has its transport entry with a sudph binding (bounded: 30 s)
    for _ in $(seq 1 150); do
        ip netns exec $I curl -fsS "http://203.0.113.1:9090/v1/transports/$1" 2>/dev/null | jq -e '.sudph != null' >/dev/null && return 0
        sleep 0.2
    done
    return 1
}
registered "$PKB" && registered "$PKC" || die "B or C not registered with a sudph binding in discovery"
entry=$(ip netns exec $I curl -fsS "http://203.0.113.1:9090/v1/transports/$PKB")
[ "$(jq -c .stcpr <<<"$entry")" = "[]" ] && pass "symmetric-nat: B advertises no stcpr address ($entry)" || fail "symmetric-nat: B's entry $entry"

# --- symmetric-nat, socks-20mb, capture: by key alone, punch and stcpr fail, dmsg follows.
expect_ok "symmetric-nat: proxy start -k B (by key alone)" cli a proxy start -k "$PKB" -t 40
tps=$(cli a tp ls --json)
[ "$(jq -r '[.[] | select(.state=="up") | .type] | join(",")' <<<"$tps")" = dmsg ] \
    && pass "symmetric-nat: the only transport up to B is dmsg (the punch failed)" || fail "symmetric-nat: tp ls $tps"

ip netns exec $I python3 "$here/tools/marker-sniff.py" "$MARKER" "$T_WORK/sniff.stop" 240 200000000 \
    >"$T_WORK/sniff.out" 2>"$T_WORK/sniff.log" &
sniff=$!; T_PIDS+=("$sniff")
sleep 0.5
got=$( (ip netns exec $A curl -fsS --max-time 200 -w "%{stderr}%{speed_download}" --socks5-hostname 127.0.0.1:1080 \
        http://192.0.2.2:8080/big.bin 2>"$T_WORK/speed" || true) | sha256sum | cut -d" " -f1)
speed=$(awk '{printf "%.1f MB/s", $1 / 1e6}' "$T_WORK/speed" 2>/dev/null || echo "? MB/s")
[ "$got" = "$want" ] && pass "socks-20mb: 20 MB through SOCKS5 over dmsg between two symmetric NATs, checksum matches ($speed)" \
    || fail "socks-20mb: checksum $got != $want"
touch "$T_WORK/sniff.stop"; wait "$sniff" 2>/dev/null || true
read -r packets total seen <"$T_WORK/sniff.out" || { packets=0; total=0; seen=-1; }
if [ "${total:-0}" -gt 10000000 ] && [ "$seen" = 0 ]; then
    pass "capture: the relay's namespace saw $total bytes in $packets packets, none with the plaintext marker"
else
    fail "capture: $packets packets, $total bytes, $seen with the marker; $(cat "$T_WORK/sniff.log")"
fi

# --- vpn-refused
expect_fail "vpn-refused: vpn start -k B refuses the relay-only path" "not through dmsg relays" cli a vpn start -k "$PKB" -t 20

# --- impostor: B's key presented to the relay by someone without B's secret key.
ctl=$(ip netns exec $I "$HOSTILE" dmsg-impersonate --addr 203.0.113.1:8081 --relay "$RELAY_PK" --as "$PKB" --attempts 1 --honest)
out=$(ip netns exec $I "$HOSTILE" dmsg-impersonate --addr 203.0.113.1:8081 --relay "$RELAY_PK" --as "$PKB" --attempts 5)
jq -e '.answered == 1' <<<"$ctl" >/dev/null && jq -e '.answered == 0 and .attempts == 5' <<<"$out" >/dev/null \
    && pass "impostor: 5 handshakes claiming B's key not answered ($out; control with its own key answered: $ctl)" \
    || fail "impostor: $out (control $ctl)"
h=$(health)
jq -e '.refusals.replaced_sessions == 0' <<<"$h" >/dev/null && pass "impostor: the relay replaced no session" || fail "impostor: /health $h"
relays_up b && pass "impostor: B keeps its relay session" || fail "impostor: B lost its relay session"
[ "$(ip netns exec $A curl -fsS --max-time 20 --socks5-hostname 127.0.0.1:1080 http://192.0.2.2:8080/small.txt 2>&1)" = hello ] \
    && pass "impostor: A's new stream through the relay still reaches B" || fail "impostor: no stream to B after the attempts"

# --- move-to-direct: C is reached over dmsg (its forward does not exist), then the NAT forwards.
expect_ok "move-to-direct: proxy stop" cli a proxy stop
expect_ok "move-to-direct: proxy start -k C (over dmsg)" cli a proxy start -k "$PKC" -t 40
tp_c() { cli a tp ls --json | jq -c --arg pk "$PKC" --arg t "$1" '[.[] | select(.remote_pk==$pk and .type==$t and .state=="up")][0] // empty'; }
[ -n "$(tp_c dmsg)" ] && [ -z "$(tp_c stcpr)" ] && pass "move-to-direct: C only over dmsg" || fail "move-to-direct: $(cli a tp ls --json)"
# A download over dmsg, paced by the server (8 MB at 100 kB/s) so that it outlives the move.
(ip netns exec $A curl -fsS --max-time 240 --socks5-hostname 127.0.0.1:1080 \
    http://192.0.2.130:8090/mid.bin 2>"$T_WORK/old.err" | sha256sum | cut -d" " -f1 >"$T_WORK/old.sum") &
OLD=$!; T_PIDS+=("$OLD")
sleep 3
ip netns exec $NB nft -f - <<'EOF'
table ip skwt_xnb_fwd {
    chain pre { type nat hook prerouting priority dstnat; iifname "skwxnb0" tcp dport 7777 dnat to 10.72.2.2:7777; }
}
EOF
log "the port forward to C is in place; waiting for A's background direct retry"
up="" t0=$(date +%s)
for _ in $(seq 1 300); do [ -n "$(tp_c stcpr)" ] && { up=1; break; }; sleep 0.2; done
[ -n "$up" ] && pass "move-to-direct: A brought up stcpr to C by itself, $(( $(date +%s) - t0 )) s after the forward appeared" \
    || fail "move-to-direct: no stcpr to C; $(grep -i 'direct' "$T_WORK/a.log" | tail -5)"
[ -n "$(tp_c dmsg)" ] && [ -n "$(tp_c stcpr)" ] && pass "move-to-direct: tp ls shows both (dmsg and stcpr up)" || fail "move-to-direct: $(cli a tp ls)"
kill -0 $OLD 2>/dev/null && pass "move-to-direct: the download on dmsg is still running" || fail "move-to-direct: the old download ended before the move"
s0=$(tp_c stcpr | jq '.bytes_received // 0'); d0=$(tp_c dmsg | jq '.bytes_received // 0')
got=$(ip netns exec $A curl -fsS --max-time 120 --socks5-hostname 127.0.0.1:1080 http://192.0.2.130:8080/mid.bin | sha256sum | cut -d" " -f1)
s1=$(tp_c stcpr | jq '.bytes_received // 0'); d1=$(tp_c dmsg | jq '.bytes_received // 0')
[ "$got" = "$want_mid" ] && [ $((s1 - s0)) -ge 8000000 ] \
    && pass "move-to-direct: a new SOCKS download (8 MB) went over stcpr (+$((s1 - s0)) B there, +$((d1 - d0)) B on dmsg)" \
    || fail "move-to-direct: checksum $got, stcpr +$((s1 - s0)) B, dmsg +$((d1 - d0)) B"
for _ in $(seq 1 1000); do kill -0 $OLD 2>/dev/null || break; sleep 0.2; done
[ "$(cat "$T_WORK/old.sum" 2>/dev/null)" = "$want_mid" ] && [ "$(tp_c dmsg | jq '.bytes_received // 0')" -ge 8000000 ] \
    && pass "move-to-direct: the download that started on dmsg completed there with its checksum" \
    || fail "move-to-direct: old download $(cat "$T_WORK/old.sum" 2>/dev/null) $(cat "$T_WORK/old.err"); dmsg $(tp_c dmsg)"

finish
