#!/usr/bin/env bash
# Two dmsg relay servers (issue 18): visors A and B in two namespaces with no route between them,
# A configured with relay R1 only, B with relay R2 only (transport.dmsg_servers); both relays and a
# discovery service run in namespace R (which does not forward). Checks:
#   1. each visor's discovery entry lists the relay it is reachable through (`dmsg`; the
#      service's bounds on the list are unit-tested in DiscoveryConformance.transportRelayList);
#   2. A reaches B, registered only on R2: `tp add B -t dmsg` looks up B's entry, opens an
#      on-demand session to R2 (its address from R2's own transport entry) and the transport is
#      up through R2; a SOCKS5 download over it matches its checksum;
#   3. without discovery of B's relays (B's entry deleted), the dial fails with an error naming
#      each relay tried.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

DMSG_BIN=$(dirname "$SKYWIRE_BIN")/skywire-dmsg
DISC_BIN=$(dirname "$SKYWIRE_BIN")/skywire-discovery
[ -x "$DMSG_BIN" ] && [ -x "$DISC_BIN" ] || die "no $DMSG_BIN or $DISC_BIN (swift build builds them)"

A=skwtEA$$ B=skwtEB$$ R=skwtER$$ N=skwtEN$$
netns_add $A; netns_add $B; netns_add $R; netns_add $N
veth_pair $A skwea0 10.83.1.2/24 $R skwer1 10.83.1.1/24
veth_pair $B skweb0 10.83.2.2/24 $R skwer2 10.83.2.1/24
veth_pair $B skweb1 203.0.113.1/24 $N skwen0 203.0.113.2/24
ip -n $N route add default via 203.0.113.1
ip -n $B route add default via 203.0.113.2
ip -n $A route add default via 10.83.1.1
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0

mkdir -p "$T_WORK/www"
head -c 4000000 /dev/urandom >"$T_WORK/www/big.bin"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
ip netns exec $N python3 -m http.server --bind 203.0.113.2 --directory "$T_WORK/www" 8080 >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do ip netns exec $B curl -fsS -o /dev/null http://203.0.113.2:8080/big.bin 2>/dev/null && break; [ "$i" = 100 ] && die "the test HTTP server did not start"; sleep 0.1; done

ip netns exec $R "$DISC_BIN" --http 0.0.0.0:9090 --udp 0.0.0.0:9091 --db "sqlite:$T_WORK/disc.sqlite" \
    --allow-private-addresses --ttl 30 >>"$T_WORK/discovery.log" 2>&1 &
T_PIDS+=("$!")
for _ in $(seq 1 50); do ip netns exec $R curl -s -m 1 -o /dev/null http://127.0.0.1:9090/v1/info && break; sleep 0.1; done

# relay_start NAME PORT HTTP PUBLIC: a relay in R registered in discovery at PUBLIC; sets RPK_<NAME>.
relay_start() {
    local name=$1 port=$2 http=$3 public=$4
    ip netns exec $R "$DMSG_BIN" --listen 0.0.0.0:$port --key-file "$T_WORK/$name-key.json" --http 127.0.0.1:$http \
        --clients any --discovery http://127.0.0.1:9090 --public-addr "$public" >>"$T_WORK/$name.log" 2>&1 &
    T_PIDS+=("$!")
    for _ in $(seq 1 100); do ip netns exec $R curl -fsS -o /dev/null http://127.0.0.1:$http/health 2>/dev/null && break; sleep 0.1; done
    eval "RPK_$name=$(jq -r .public_key "$T_WORK/$name-key.json")"
}
# R2 is registered at the address A can reach (B is configured with its own side's address).
relay_start r1 8081 8082 10.83.1.1:8081
relay_start r2 8083 8084 10.83.1.1:8083

PKA=$(visor_config a)
PKB=$(visor_config b)
jq --arg r "$RPK_r1" '.transport.dmsg_servers = [{"pk": $r, "addr": "10.83.1.1:8081"}] | .transport.discovery = "http://10.83.1.1:9090"' \
    "$T_WORK/a.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/a.json"
jq --arg r "$RPK_r2" --arg a "$PKA" '.transport.dmsg_servers = [{"pk": $r, "addr": "10.83.2.1:8083"}] | .transport.discovery = "http://10.83.2.1:9090"
    | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a])' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start a $A
visor_start b $B
ip netns exec $A ping -c1 -W1 10.83.2.2 >/dev/null 2>&1 && die "A reaches B directly (test topology broken)"

# --- 1. the relays in each visor's discovery entry
entry() { ip netns exec $R curl -fsS -m 2 "http://127.0.0.1:9090/v1/transports/$1" 2>/dev/null; }
listed=""
for _ in $(seq 1 50); do
    [ "$(entry "$PKA" | jq -c .dmsg)" = "[\"$RPK_r1\"]" ] && [ "$(entry "$PKB" | jq -c .dmsg)" = "[\"$RPK_r2\"]" ] && { listed=1; break; }
    sleep 0.2
done
[ -n "$listed" ] && pass "each visor's discovery entry lists its relay (dmsg)" \
    || fail "entries: A $(entry "$PKA" | jq -c .dmsg), B $(entry "$PKB" | jq -c .dmsg)"

# --- 2. A reaches B, which is only on R2
expect_ok "A: tp add B -t dmsg (B only on the other relay)" cli a tp add "$PKB" -t dmsg
tp=$(cli a tp ls --json | jq -c '.[0]')
[ "$(jq -r .type <<<"$tp")" = dmsg ] && [ "$(jq -r .relay_pk <<<"$tp")" = "$RPK_r2" ] && [ "$(jq -r .state <<<"$tp")" = up ] \
    && pass "the transport goes through B's relay R2: $tp" || fail "tp ls: $tp"
grep -q "on-demand session to a peer's relay" "$T_WORK/a.log" && pass "A opened an on-demand session to R2" || fail "A log: $(grep -i relay "$T_WORK/a.log" | tail -3)"
[ "$(ip netns exec $R curl -fsS http://127.0.0.1:8084/health | jq .clients)" = 2 ] && pass "R2 serves A and B" \
    || fail "R2 /health: $(ip netns exec $R curl -fsS http://127.0.0.1:8084/health)"
[ "$(entry "$PKA" | jq -c .dmsg)" = "[\"$RPK_r1\"]" ] && pass "A's entry still lists only its configured relay" || fail "A entry: $(entry "$PKA")"
expect_ok "proxy start -k B (over the dmsg transport through R2)" cli a proxy start -k "$PKB" -t 20
got=$(ip netns exec $A curl -fsS --max-time 120 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2:8080/big.bin | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass "4 MB over SOCKS5 through R2 match their checksum" || fail "checksum: $got != $want"
expect_ok "proxy stop" cli a proxy stop
expect_ok "tp rm" cli a tp rm "$PKB"

# --- 3. B's entry gone: A only tries its own relay, and says so
kill "$PID_b"; wait "$PID_b" 2>/dev/null || true
for _ in $(seq 1 50); do entry "$PKB" >/dev/null || break; sleep 0.2; done
out=$(cli a tp add "$PKB" -t dmsg 2>&1) && fail "tp add to a stopped visor succeeded: $out" \
    || { echo "$out" | grep -q "no dmsg relay reaches $PKB: relay ${RPK_r1:0:8}" && pass "the error names the relay tried: $out" || fail "error: $out"; }

finish
