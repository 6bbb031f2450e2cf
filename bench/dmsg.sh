#!/usr/bin/env bash
# dmsg relay benchmark (issue 18, docs/dmsg.md): what one relay server costs. A relay in
# namespace skwbR$$, clients in skwbC$$ (a veth pair between them): an echo client and a sender
# (`skywire-hostile dmsg-pipe`, the project's DmsgClientSession) measure
#   1. bulk: DMSG_BYTES through one stream and back (the relay forwards 2 x DMSG_BYTES), with the
#      relay's CPU seconds over the transfer, as CPU seconds per Gbit forwarded;
#   2. streams per second: DMSG_STREAMS streams opened one after the other, 100 bytes echoed on each;
#   3. memory: RSS per idle authenticated client with DMSG_IDLE_CLIENTS clients.
# The direct path (two visors over stcpr, no relay) is measured by bench/socks.sh and vpn.sh;
# the visor's own dmsg transport (issue 18's other half) is not part of this script.
# Runs as root; kills what it starts by PID, deletes its namespaces. One JSON object on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
DMSG=${DMSG_BIN:-$(dirname "$BIN")/skywire-dmsg}
HOSTILE=${HOSTILE_BIN:-$(dirname "$BIN")/skywire-hostile}
BYTES=${DMSG_BYTES:-200000000}
STREAMS=${DMSG_STREAMS:-1000}
IDLE_CLIENTS=${DMSG_IDLE_CLIENTS:-1000}
[ "$(id -u)" = 0 ] || { echo "bench/dmsg.sh: run as root" >&2; exit 1; }
[ -x "$DMSG" ] && [ -x "$HOSTILE" ] || { echo "bench/dmsg.sh: need $DMSG and $HOSTILE" >&2; exit 1; }

work=$(mktemp -d /tmp/skwdmsg.XXXXXX)
R=skwbR$$ C=skwbC$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    ip netns del $R 2>/dev/null || true
    ip netns del $C 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[dmsg-bench $(date +%T)] $*" >&2; }

ip netns add $R; ip netns add $C
ip -n $R link set lo up; ip -n $C link set lo up
ip link add skwbr$$ netns $R type veth peer name skwbc$$ netns $C
ip -n $R addr add 10.233.0.1/24 dev skwbr$$; ip -n $R link set skwbr$$ up
ip -n $C addr add 10.233.0.2/24 dev skwbc$$; ip -n $C link set skwbc$$ up

ip netns exec $R "$DMSG" --listen 0.0.0.0:8081 --http 127.0.0.1:8082 --key-file "$work/key.json" --log-level warning --clients any \
    --max-connections-per-address $((IDLE_CLIENTS + 100)) >"$work/relay.log" 2>&1 &
RELAY=$!; PIDS+=("$RELAY")
health() { ip netns exec $R curl -sf http://127.0.0.1:8082/health; }
for _ in $(seq 1 100); do health >/dev/null 2>&1 && break; sleep 0.1; done
RPK=$(jq -r .public_key "$work/key.json")
pipe() { ip netns exec $C "$HOSTILE" dmsg-pipe --addr 10.233.0.1:8081 --relay "$RPK" "$@"; }
pipe --mode echo --seconds 3600 >"$work/echo.out" 2>"$work/echo.log" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$work/echo.out" ] && break; sleep 0.1; done
EPK=$(head -1 "$work/echo.out" | jq -r .pk)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

log "bulk: $BYTES bytes each way"
t0=$(ticks $RELAY)
bulk=$(pipe --mode send --to "$EPK" --bytes "$BYTES" --seconds 600 | tail -1)
t1=$(ticks $RELAY)
cpu=$(echo "scale=3; ($t1 - $t0) / $hz" | bc)
log "bulk: $bulk, relay CPU $cpu s"

log "streams: $STREAMS one after the other"
streams=$(pipe --mode send --to "$EPK" --bytes 100 --streams "$STREAMS" --seconds 600 | tail -1)
log "streams: $streams"

log "memory: $IDLE_CLIENTS idle clients"
h=$(health); rss0=$(echo "$h" | jq .rss_kib); c0=$(echo "$h" | jq .clients)
ip netns exec $C "$HOSTILE" dmsg-clients --addr 10.233.0.1:8081 --relay "$RPK" --count "$IDLE_CLIENTS" --rate 400 --hold 30 \
    >"$work/idle.out" 2>&1 &
IC=$!; PIDS+=("$IC")
# Until (nearly) all are in, or the load generator has given up.
for _ in $(seq 1 240); do
    [ "$(health | jq .clients)" -ge $((c0 + IDLE_CLIENTS * 99 / 100)) ] && break
    kill -0 $IC 2>/dev/null || break
    sleep 0.5
done
sleep 2
h=$(health); clients=$(( $(echo "$h" | jq .clients) - c0 )); rss1=$(echo "$h" | jq .rss_kib)
wait $IC || true

jq -n --argjson bulk "$bulk" --argjson streams "$streams" --arg cpu "$cpu" --argjson bytes "$BYTES" \
      --argjson clients "$clients" --argjson rss0 "$rss0" --argjson rss1 "$rss1" '{
    kind: "dmsg-relay",
    bulk: ($bulk + {relay_cpu_s: ($cpu | tonumber),
                    forwarded_gbit: ($bytes * 2 * 8 / 1e9),
                    relay_cpu_s_per_gbit: (if $bytes > 0 then ($cpu | tonumber) / ($bytes * 2 * 8 / 1e9) else null end)}),
    streams: $streams,
    idle: {clients: $clients, rss_before_kib: $rss0, rss_after_kib: $rss1,
           bytes_per_client: (if $clients > 0 then (($rss1 - $rss0) * 1024 / $clients | floor) else null end)}
}'
