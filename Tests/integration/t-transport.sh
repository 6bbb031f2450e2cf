#!/usr/bin/env bash
# Two visors in two namespaces: stcpr and sudph transports, stream and datagram echo,
# a wrong responder key, garbage thrown at both listeners, and a 20 MB stream over sudph
# through 2 % loss (nftables) and 20 ms RTT (an L2 delay relay in a third namespace).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

A=skwtA$$ B=skwtB$$ D=skwtD$$
netns_add $A; netns_add $B; netns_add $D
# A -- D (relay) -- B; D forwards Ethernet frames with a configurable delay.
ip link add skwa0 netns $A type veth peer name skwd0 netns $D
ip link add skwb0 netns $B type veth peer name skwd1 netns $D
ip -n $A addr add 10.77.0.1/24 dev skwa0
ip -n $B addr add 10.77.0.2/24 dev skwb0
for l in "$A skwa0" "$B skwb0" "$D skwd0" "$D skwd1"; do
    set -- $l
    ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$1" link set "$2" up
done
ip -n $D link set skwd0 promisc on
ip -n $D link set skwd1 promisc on
gcc -O2 -o "$T_WORK/pfdelay" "$here/tools/pfdelay.c" || die "cannot build the delay relay"
relay_start() {  # relay_start ONE_WAY_MS
    ip netns exec $D "$T_WORK/pfdelay" skwd0 skwd1 "$(($1 * 1000))" 4096 >>"$T_WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    T_PIDS+=("$RELAY_PID")
}
relay_stop() { kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; }
relay_start 0

# Rotate sudph keys every 2 s (default 120 s) so the transfers below cross many rotations.
export SKYWIRE_SUDPH_REKEY_SECONDS=2
PKA=$(visor_config a)
PKB=$(visor_config b)
[[ $PKA =~ ^[0-9a-f]{64}$ ]] || die "config gen printed no public key: $PKA"
visor_start a $A
visor_start b $B
ip netns exec $A ping -c1 -W2 10.77.0.2 >/dev/null || die "no underlay connectivity"

info=$(cli a visor info --json)
[ "$(jq -r .pk <<<"$info")" = "$PKA" ] && pass "visor info reports the config's pk" || fail "visor info pk: $info"

# --- stcpr
expect_ok "tp add stcpr" cli a tp add "$PKB" -t stcpr --addr 10.77.0.2:7777
tpls=$(cli a tp ls --json)
[ "$(jq -r '.[] | select(.type=="stcpr") | .state' <<<"$tpls")" = up ] && pass "stcpr transport is up" || fail "tp ls: $tpls"
[ "$(cli b tp ls --json | jq -r --arg pk "$PKA" '.[] | select(.remote_pk==$pk) | .type')" = stcpr ] \
    && pass "responder learnt the initiator's key" || fail "responder does not list A: $(cli b tp ls --json)"
sleep 0.5
rtt0=$(cli a tp ls --json | jq -r '.[] | select(.type=="stcpr") | .rtt_ms')
[ "$(jq -r 'type' <<<"$rtt0")" = number ] && pass "tp ls shows the stcpr RTT (${rtt0} ms)" || fail "no stcpr rtt_ms: $rtt0"
out=$(cli a visor ping "$PKB" --size 5000000 --json) && [ "$(jq -r .bytes <<<"$out")" = 5000000 ] \
    && pass "stcpr stream echo 5 MB intact" || fail "stcpr stream echo: $out"
out=$(cli a visor ping "$PKB" --datagram --count 20 --json) && [ "$(jq -r .received <<<"$out")" -ge 18 ] \
    && pass "stcpr datagram echo ($(jq -r .received <<<"$out")/20)" || fail "stcpr datagram echo: $out"

# --- wrong responder key: B's address, someone else's key
WRONG=$("$SKYWIRE_BIN" config gen -o "$T_WORK/wrong.json")
expect_fail "stcpr to a wrong key is refused" "handshake|closed|refused|failed" \
    cli a tp add "$WRONG" -t stcpr --addr 10.77.0.2:7777
expect_fail "sudph to a wrong key is refused" "handshake|timed out|failed|unreachable" \
    cli a tp add "$WRONG" -t sudph --addr 10.77.0.2:7778

# --- garbage at both listeners, then B must still serve
python3 - "$A" <<'PY' || fail "garbage sender crashed"
import os, socket, random, subprocess, sys
ns = ["ip", "netns", "exec", sys.argv[1]]
code = r'''
import os, socket, random
random.seed(7)
for i in range(40):
    s = socket.create_connection(("10.77.0.2", 7777), timeout=2)
    try:
        kind = i % 4
        if kind == 0: s.sendall(os.urandom(random.randint(1, 4000)))
        elif kind == 1: s.sendall(b"\x00\x00")                       # zero-length frame
        elif kind == 2: s.sendall(b"\x00\x81" + os.urandom(50))      # truncated message 1
        else: s.sendall(b"\x00\x81" + os.urandom(129))               # well-sized garbage message 1
    except OSError: pass
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    kind = i % 5
    if kind == 0: pkt = os.urandom(random.randint(0, 1400))
    elif kind == 1: pkt = b"\x01\x00\x00\x00" + os.urandom(4 + 129)  # garbage initiation
    elif kind == 2: pkt = b"\x04\x00\x00\x00" + os.urandom(12 + 40)  # data, unknown index
    elif kind == 3: pkt = b"\x02\x00\x00\x00" + os.urandom(8)        # truncated response
    else: pkt = b"\x04"                                              # truncated header
    u.sendto(pkt, ("10.77.0.2", 7778))
'''
subprocess.run(ns + ["python3", "-c", code], check=True, timeout=60)
PY
kill -0 "$PID_b" && pass "visor B survived garbage" || fail "visor B died after garbage"
out=$(cli a visor ping "$PKB" --size 100000 --json) && [ "$(jq -r .bytes <<<"$out")" = 100000 ] \
    && pass "stcpr still serves after garbage" || fail "stcpr after garbage: $out"

# --- sudph (remove stcpr so that pings take sudph)
expect_ok "tp rm stcpr" cli a tp rm "$PKB"
expect_ok "tp add sudph" cli a tp add "$PKB" -t sudph --addr 10.77.0.2:7778
out=$(cli a visor ping "$PKB" --size 2000000 --json) && [ "$(jq -r .bytes <<<"$out")" = 2000000 ] \
    && pass "sudph stream echo 2 MB intact" || fail "sudph stream echo: $out"
out=$(cli a visor ping "$PKB" --datagram --count 20 --json) && [ "$(jq -r .received <<<"$out")" -ge 18 ] \
    && pass "sudph datagram echo ($(jq -r .received <<<"$out")/20)" || fail "sudph datagram echo: $out"

# --- 2 % loss both ways and 20 ms RTT (10 ms each way), 20 MB over sudph
ip netns exec $B nft -f - <<'NFT'
table inet skwtloss {
    chain in { type filter hook input priority 0; udp dport 7778 numgen random mod 100 < 2 counter drop; }
    chain out { type filter hook output priority 0; udp sport 7778 numgen random mod 100 < 2 counter drop; }
}
NFT
relay_stop
relay_start 10
rtt=$(ip netns exec $A ping -c3 -i0.2 -W2 10.77.0.2 | awk -F/ '/rtt/ {print $5}')
log "underlay RTT with relay: ${rtt} ms"
awk -v r="$rtt" 'BEGIN { exit !(r >= 18) }' && pass "relay adds ~20 ms RTT (${rtt} ms)" || fail "relay RTT ${rtt} ms"
out=$(cli a visor ping "$PKB" --size 20000000 --timeout 240 --rpc-timeout 260 --json) \
    && [ "$(jq -r .bytes <<<"$out")" = 20000000 ] \
    && pass "sudph 20 MB intact over 2% loss + 20 ms RTT in $(jq -r .elapsed_ms <<<"$out") ms" \
    || fail "sudph 20 MB under loss: $out"
rtt1=$(cli a tp ls --json | jq -r '.[] | select(.type=="sudph") | .rtt_ms')
awk -v r="$rtt1" 'BEGIN { exit !(r + 0 >= 18) }' && pass "tp ls RTT of the sudph transport includes the relay's 20 ms (${rtt1} ms)" \
    || fail "sudph rtt_ms $rtt1 after the relayed transfer"
drops=$(ip netns exec $B nft list table inet skwtloss | awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i+1) } END { print s+0 }')
[ "$drops" -gt 0 ] && pass "nftables dropped $drops packets during the transfer" || fail "loss rule dropped nothing"
ip netns exec $B nft delete table inet skwtloss
rot=$(cat "$T_WORK/a.log" "$T_WORK/b.log" | grep -c "rotated its key" || true)
[ "$rot" -ge 4 ] && pass "sudph keys rotated $rot times during the transfers, data intact" || fail "only $rot key rotations seen"

finish
