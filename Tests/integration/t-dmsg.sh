#!/usr/bin/env bash
# dmsg transport through a relay server (issue 18, the visor side): visors A and B in two
# namespaces with no route between them, both with a session to the relay `skywire-dmsg` in a
# third namespace R (R does not forward). B is an exit to an "internet" host N only B reaches.
# Checks: tp add -t dmsg, tp ls (type, relay key), SOCKS5 20 MB checksum over dmsg after dialling
# by key alone (fallback), no plaintext marker in R's packets, vpn start refused without
# --allow-relay, a stream to a key with no session fails, relay restart: sessions come back.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

DMSG_BIN=$(dirname "$SKYWIRE_BIN")/skywire-dmsg
[ -x "$DMSG_BIN" ] || die "no $DMSG_BIN (swift build builds it)"

A=skwtDA$$ B=skwtDB$$ R=skwtDR$$ N=skwtDN$$
netns_add $A; netns_add $B; netns_add $R; netns_add $N
veth_pair $A skwda0 10.81.1.2/24 $R skwdr1 10.81.1.1/24
veth_pair $B skwdb0 10.81.2.2/24 $R skwdr2 10.81.2.1/24
veth_pair $B skwdb1 203.0.113.1/24 $N skwdn0 203.0.113.2/24
ip -n $N route add default via 203.0.113.1
ip -n $B route add default via 203.0.113.2   # the exit's uplink (vpn-server NATs out of it)
ip -n $A route add default via 10.81.1.1     # R does not forward: nothing leaves A but to R
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0

# The internet host serves 20 MB that repeat a plaintext marker, and a small file.
MARKER=SKWT-DMSG-PLAINTEXT-MARKER
mkdir -p "$T_WORK/www"
python3 -c "import sys; sys.stdout.write(('$MARKER-' * 20) + '\n')" >"$T_WORK/line"
for _ in $(seq 1 38500); do cat "$T_WORK/line"; done >"$T_WORK/www/big.bin"
echo hello >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
ip netns exec $N python3 -m http.server --bind 203.0.113.2 --directory "$T_WORK/www" 8080 >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do ip netns exec $B curl -fsS -o /dev/null http://203.0.113.2:8080/small.txt 2>/dev/null && break; [ "$i" = 100 ] && die "the test HTTP server did not start"; sleep 0.1; done

relay_start() {
    ip netns exec $R "$DMSG_BIN" --listen 0.0.0.0:8081 --key-file "$T_WORK/relay-key.json" --http 127.0.0.1:8082 --clients any \
        >>"$T_WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    T_PIDS+=("$RELAY_PID")
    for _ in $(seq 1 100); do
        ip netns exec $R curl -fsS -o /dev/null http://127.0.0.1:8082/health 2>/dev/null && return 0
        sleep 0.1
    done
    die "skywire-dmsg did not serve /health within 10 s"
}
relay_start
RELAY_PK=$(jq -r .public_key "$T_WORK/relay-key.json")

PKA=$(visor_config a)
PKB=$(visor_config b)
jq --arg r "$RELAY_PK" '.transport.dmsg_servers = [{"pk": $r, "addr": "10.81.1.1:8081"}]' \
    "$T_WORK/a.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/a.json"
jq --arg r "$RELAY_PK" --arg a "$PKA" '.transport.dmsg_servers = [{"pk": $r, "addr": "10.81.2.1:8081"}]
    | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a])
    | (.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$a])' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
expect_ok "config check accepts transport.dmsg_servers" "$SKYWIRE_BIN" config check -c "$T_WORK/a.json"
visor_start a $A
visor_start b $B

ip netns exec $A ping -c1 -W1 10.81.2.2 >/dev/null 2>&1 && die "A reaches B directly (test topology broken)"
pass "no route between A and B"

relays_up() {  # relays_up NAME: the visor lists the relay among dmsg_relays (bounded: 15 s)
    for _ in $(seq 1 75); do
        [ "$(cli "$1" visor info --json | jq -r '.dmsg_relays[0] // empty')" = "$RELAY_PK" ] && return 0
        sleep 0.2
    done
    return 1
}
relays_up a && relays_up b && pass "both visors have a session with the relay (visor info dmsg_relays)" \
    || fail "relay sessions: a $(cli a visor info --json | jq -c .dmsg_relays), b $(cli b visor info --json | jq -c .dmsg_relays)"

expect_ok "tp add -t dmsg" cli a tp add "$PKB" -t dmsg
tp=$(cli a tp ls --json | jq -c '.[0]')
[ "$(jq -r .type <<<"$tp")" = dmsg ] && [ "$(jq -r .relay_pk <<<"$tp")" = "$RELAY_PK" ] && [ "$(jq -r .state <<<"$tp")" = up ] \
    && pass "tp ls --json: type dmsg, relay_pk the relay's key, up" || fail "tp ls: $tp"
cli a tp ls | grep -q "dmsg.*relay $RELAY_PK" && pass "tp ls shows the type and the relay key" || fail "tp ls table: $(cli a tp ls)"
for _ in $(seq 1 25); do [ "$(cli b tp ls --json | jq -r '.[0].type // empty')" = dmsg ] && break; sleep 0.2; done
[ "$(cli b tp ls --json | jq -r '.[0].remote_pk // empty')" = "$PKA" ] && pass "B lists the inbound dmsg transport from A" \
    || fail "B tp ls: $(cli b tp ls --json)"
expect_ok "tp rm" cli a tp rm "$PKB"

# Dialling by key alone: no peers entry, no discovery: the direct step fails, dmsg follows.
expect_ok "proxy start -k over dmsg (fallback)" cli a proxy start -k "$PKB" -t 20
[ "$(cli a tp ls --json | jq -r '[.[] | select(.state=="up") | .type] | join(",")')" = dmsg ] \
    && pass "the proxy's transport is dmsg" || fail "tp ls: $(cli a tp ls --json)"

# Capture in R while 20 MB cross the relay: no packet may carry the plaintext marker.
ip netns exec $R python3 "$here/tools/marker-sniff.py" "$MARKER" "$T_WORK/sniff.stop" 60 60000000 \
    >"$T_WORK/sniff.out" 2>"$T_WORK/sniff.log" &
sniff=$!
T_PIDS+=("$sniff")
sleep 0.5
got=$( (ip netns exec $A curl -fsS --max-time 120 -w "%{stderr}%{speed_download}" --socks5-hostname 127.0.0.1:1080 \
        http://203.0.113.2:8080/big.bin 2>"$T_WORK/speed" || true) | sha256sum | cut -d" " -f1)
speed=$(awk '{printf "%.1f MB/s", $1 / 1e6}' "$T_WORK/speed" 2>/dev/null || echo "? MB/s")
[ "$got" = "$want" ] && pass "20 MB through SOCKS5 over dmsg with a matching checksum ($speed)" || fail "checksum $got != $want"
touch "$T_WORK/sniff.stop"; wait "$sniff" 2>/dev/null || true
read -r packets total seen <"$T_WORK/sniff.out" || { packets=0; total=0; seen=-1; }
if [ "${total:-0}" -gt 20000000 ] && [ "$seen" = 0 ]; then
    pass "the relay's namespace saw $total bytes in $packets packets, none with the plaintext marker"
else
    fail "capture in R: $packets packets, $total bytes, $seen with the marker; $(cat "$T_WORK/sniff.log")"
fi

# The VPN refuses the relay-only path without --allow-relay (before starting anything).
expect_fail "vpn start refuses a dmsg-only path" "the VPN is routed over stcpr or sudph, not through dmsg relays" \
    cli a vpn start -k "$PKB" -t 10
[ "$(cli a apps ls --json | jq -r '.[] | select(.name=="vpn-client") | .status')" != running ] \
    && pass "vpn-client not started" || fail "vpn-client running after the refusal"

# With --allow-relay the VPN runs over the dmsg transport: the relay's address bypasses the tunnel.
mkdir -p "/etc/netns/$A"; : >"/etc/netns/$A/resolv.conf"
expect_ok "vpn start --allow-relay" cli a vpn start -k "$PKB" -t 10 --allow-relay --dns 192.0.2.53
st=$(cli a vpn status --json)
[ "$(jq -r .info.state <<<"$st")" = connected ] && pass "vpn connected over the relay ($(jq -r .info.transport <<<"$st"))" \
    || fail "vpn status: $st"
got=$(ip netns exec $A curl -fsS --max-time 20 http://203.0.113.2:8080/small.txt 2>&1 || true)
[ "$got" = hello ] && pass "traffic through the VPN over dmsg reaches the internet host" || fail "through the VPN: $got"
expect_ok "vpn stop" cli a vpn stop
rm -rf "/etc/netns/$A"

# A key with no session at the relay: the stream open fails with the relay's answer.
STRANGER=$("$SKYWIRE_BIN" config gen -o "$T_WORK/stranger.json")
expect_fail "tp add -t dmsg to a key without a relay session" "no session|not reach|no dmsg relay" \
    cli a tp add "$STRANGER" -t dmsg

# The relay restarts: the sessions come back (redial with backoff), and so does the transport.
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
for _ in $(seq 1 50); do [ -z "$(cli a visor info --json | jq -r '.dmsg_relays[0] // empty')" ] && break; sleep 0.2; done
[ -z "$(cli a visor info --json | jq -r '.dmsg_relays[0] // empty')" ] && pass "A reports the relay session down" \
    || fail "A still lists the relay after it stopped"
relay_start
relays_up a && relays_up b && pass "sessions back after the relay restarted" || fail "no session after the relay restarted"
ok=""
for _ in $(seq 1 40); do
    if [ "$(ip netns exec $A curl -fsS --max-time 5 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2:8080/small.txt 2>/dev/null)" = hello ]; then ok=1; break; fi
    sleep 1
done
[ -n "$ok" ] && pass "the proxy works again through the restarted relay" \
    || fail "no proxy after the relay restart; tp: $(cli a tp ls --json | jq -c '[.[] | {type, state, last_error}]')"

# Relay servers from discovery: visor C (no transport.dmsg_servers) finds the relay registered as
# a `dmsg` service and keeps a session with it; `tp add -t dmsg` then reaches B through it.
DISC_BIN=$(dirname "$SKYWIRE_BIN")/skywire-discovery
ip netns exec $R "$DISC_BIN" --http 10.81.1.1:9090 --udp 10.81.1.1:9091 --db "sqlite:$T_WORK/disc.sqlite" \
    --allow-private-addresses >>"$T_WORK/discovery.log" 2>&1 &
T_PIDS+=("$!")
for _ in $(seq 1 50); do ip netns exec $A curl -s -m 1 -o /dev/null http://10.81.1.1:9090/v1/info && break; sleep 0.1; done
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
ip netns exec $R "$DMSG_BIN" --listen 0.0.0.0:8081 --key-file "$T_WORK/relay-key.json" --http 127.0.0.1:8082 --clients any \
    --discovery http://10.81.1.1:9090 --public-addr 10.81.1.1:8081 >>"$T_WORK/relay.log" 2>&1 &
RELAY_PID=$!
T_PIDS+=("$RELAY_PID")
listed=""
for _ in $(seq 1 50); do
    ip netns exec $A curl -fsS -m 1 http://10.81.1.1:9090/v1/services/dmsg 2>/dev/null | grep -q "$RELAY_PK" && { listed=1; break; }
    sleep 0.2
done
[ -n "$listed" ] && pass "the relay lists itself in discovery as a dmsg service" || fail "relay not in discovery: $(tail -3 "$T_WORK/relay.log")"
visor_config c >/dev/null
jq --arg sock "$T_WORK/c.sock" '.transport.stcpr_port=7790 | .transport.sudph_port=7791 | .transport.discovery="http://10.81.1.1:9090"
    | .ui.listen=""' "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"
visor_start c $A
relays_up c && pass "visor C took its relay from discovery" || fail "C: dmsg_relays $(cli c visor info --json | jq -c .dmsg_relays); $(grep -i relay "$T_WORK/c.log" | tail -3)"
relays_up b || fail "B has no relay session after the relay restart"
expect_ok "C: tp add -t dmsg through the relay it found in discovery" cli c tp add "$PKB" -t dmsg

finish
