#!/usr/bin/env bash
# dmsg relay benchmark (issue 18, docs/dmsg.md): what one relay server costs. A relay in
# namespace skwbR$$, clients in skwbC$$ (a veth pair between them): an echo client and a sender
# (`skywire-hostile dmsg-pipe`, the project's DmsgClientSession) measure
#   1. bulk: DMSG_BYTES through one stream and back (the relay forwards 2 x DMSG_BYTES), with the
#      relay's CPU seconds over the transfer, as CPU seconds per Gbit forwarded;
#   2. streams per second: DMSG_STREAMS streams opened one after the other, 100 bytes echoed on each;
#   3. memory: RSS per idle authenticated client with DMSG_IDLE_CLIENTS clients;
#   4. two visors (A in skwbC$$, B in skwbV$$, each with a session to the relay and a direct veth
#      between them), first over a dmsg transport through the relay, then over stcpr on the
#      direct link, in the same run: throughput (`visor ping --size DMSG_VISOR_BYTES`: one stream,
#      echoed, so the bytes go each way) and requests/s (DMSG_REQUESTS HTTP requests one after the
#      other through the SOCKS proxy A -> B, a new SOCKS connection, hence a new stream, each).
# Runs as root; kills what it starts by PID, deletes its namespaces. One JSON object on stdout;
# progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
DMSG=${DMSG_BIN:-$(dirname "$BIN")/skywire-dmsg}
HOSTILE=${HOSTILE_BIN:-$(dirname "$BIN")/skywire-hostile}
BYTES=${DMSG_BYTES:-200000000}
STREAMS=${DMSG_STREAMS:-1000}
IDLE_CLIENTS=${DMSG_IDLE_CLIENTS:-1000}
VISOR_BYTES=${DMSG_VISOR_BYTES:-100000000}
REQUESTS=${DMSG_REQUESTS:-500}
[ "$(id -u)" = 0 ] || { echo "bench/dmsg.sh: run as root" >&2; exit 1; }
[ -x "$DMSG" ] && [ -x "$HOSTILE" ] || { echo "bench/dmsg.sh: need $DMSG and $HOSTILE" >&2; exit 1; }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/skwdmsg.XXXXXX)
R=skwbR$$ C=skwbC$$ V=skwbV$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    ip netns del $R 2>/dev/null || true
    ip netns del $C 2>/dev/null || true
    ip netns del $V 2>/dev/null || true
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

# --- 4. two visors: dmsg through the relay, then stcpr on a direct link, same run.
ip netns add $V; ip -n $V link set lo up
ip link add skwbv$$ netns $R type veth peer name skwbw$$ netns $V
ip -n $R addr add 10.233.1.1/24 dev skwbv$$; ip -n $R link set skwbv$$ up
ip -n $V addr add 10.233.1.2/24 dev skwbw$$; ip -n $V link set skwbw$$ up
ip link add skwbd$$ netns $C type veth peer name skwbe$$ netns $V
ip -n $C addr add 10.233.2.1/24 dev skwbd$$; ip -n $C link set skwbd$$ up
ip -n $V addr add 10.233.2.2/24 dev skwbe$$; ip -n $V link set skwbe$$ up
for side in a b; do
    "$BIN" config gen -o "$work/$side.json" --cli-addr "$work/$side.sock" --state-dir "$work/$side" >"$work/$side.pk"
done
PKA=$(cat "$work/a.pk"); PKB=$(cat "$work/b.pk")
jq --arg r "$RPK" '.log_level="warning" | .transport.dmsg_servers=[{"pk":$r,"addr":"10.233.0.1:8081"}]
    | (.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=false)' "$work/a.json" >"$work/t" && install -m600 "$work/t" "$work/a.json"
# The exit fetches from an HTTP server on its own loopback: --secure=false (a bench, not an exit).
jq --arg r "$RPK" --arg a "$PKA" '.log_level="warning" | .transport.dmsg_servers=[{"pk":$r,"addr":"10.233.1.1:8081"}]
    | .launcher.apps += [{"name":"echo","args":[],"auto_start":true,"port":7}]
    | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a,"--secure=false"])' \
    "$work/b.json" >"$work/t" && install -m600 "$work/t" "$work/b.json"
ip netns exec $V python3 -m http.server --bind 127.0.0.1 8080 --directory "$work" >"$work/http.log" 2>&1 &
PIDS+=("$!")
echo ok >"$work/small.txt"
cli() { local side=$1; shift; "$BIN" cli --rpc "$work/$side.sock" "$@"; }
ip netns exec $C "$BIN" visor -c "$work/a.json" >"$work/a.log" 2>&1 & PIDS+=("$!")
ip netns exec $V "$BIN" visor -c "$work/b.json" >"$work/b.log" 2>&1 & PIDS+=("$!")
for side in a b; do
    for _ in $(seq 1 150); do
        [ "$(cli $side visor info --json 2>/dev/null | jq -r '.dmsg_relays[0] // empty')" = "$RPK" ] && break
        sleep 0.2
    done
done
# One curl run, $REQUESTS requests one after the other (the server closes each connection).
for i in $(seq 1 "$REQUESTS"); do printf 'url = "http://127.0.0.1:8080/small.txt?%d"\noutput = "/dev/null"\n' "$i"; done >"$work/requests.curl"
# visor_row TYPE UP: throughput and requests/s over TYPE while the types UP (sorted, joined with
# commas) are up; new streams take TYPE (stcpr before dmsg). One JSON object.
visor_row() {
    local type=$1 ping t0 t1 n
    [ "$(cli a tp ls --json | jq -r '[.[] | select(.state=="up") | .type] | sort | join(",")')" = "$2" ] \
        || { log "visors: expected $2 up: $(cli a tp ls --json)"; return 1; }
    ping=$(cli a visor ping "$PKB" --size "$VISOR_BYTES" -t 600 --json)
    t0=$(date +%s.%N)
    n=$(ip netns exec $C curl -s -w '%{http_code}\n' --socks5-hostname 127.0.0.1:1080 -K "$work/requests.curl" \
        | grep -c '^200$' || true)
    t1=$(date +%s.%N)
    jq -n --arg type "$type" --argjson ping "$ping" --argjson n "$n" --arg s "$(echo "$t1 - $t0" | bc)" '{
        transport: $type, ping_bytes: $ping.bytes, ping_elapsed_ms: $ping.elapsed_ms,
        mbit_per_s_each_way: (if $ping.elapsed_ms > 0 then ($ping.bytes * 8 / 1e6) / ($ping.elapsed_ms / 1000) else null end),
        requests: $n, requests_seconds: ($s | tonumber),
        requests_per_s: (if ($s | tonumber) > 0 then $n / ($s | tonumber) else null end)}'
}
log "visors: over dmsg"
cli a tp add "$PKB" -t dmsg >/dev/null
cli a proxy start -k "$PKB" -t 30 >/dev/null
t0=$(ticks $RELAY)
over_dmsg=$(visor_row dmsg dmsg)
t1=$(ticks $RELAY)
visor_relay_cpu=$(echo "scale=3; ($t1 - $t0) / $hz" | bc)
log "visors: dmsg $over_dmsg, relay CPU $visor_relay_cpu s"
log "visors: over stcpr (direct link)"
cli a tp add "$PKB" -t stcpr --addr 10.233.2.2:7777 >/dev/null
over_stcpr=$(visor_row stcpr dmsg,stcpr)
log "visors: stcpr $over_stcpr"

jq -n --argjson bulk "$bulk" --argjson streams "$streams" --arg cpu "$cpu" --argjson bytes "$BYTES" \
      --argjson clients "$clients" --argjson rss0 "$rss0" --argjson rss1 "$rss1" \
      --argjson dmsg "$over_dmsg" --argjson stcpr "$over_stcpr" --arg vcpu "$visor_relay_cpu" \
      --arg load0 "$load0" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '{
    kind: "dmsg-relay",
    load_average: {start: $load0, end: $load},
    bulk: ($bulk + {relay_cpu_s: ($cpu | tonumber),
                    forwarded_gbit: ($bytes * 2 * 8 / 1e9),
                    relay_cpu_s_per_gbit: (if $bytes > 0 then ($cpu | tonumber) / ($bytes * 2 * 8 / 1e9) else null end)}),
    streams: $streams,
    idle: {clients: $clients, rss_before_kib: $rss0, rss_after_kib: $rss1,
           bytes_per_client: (if $clients > 0 then (($rss1 - $rss0) * 1024 / $clients | floor) else null end)},
    visors: {dmsg: ($dmsg + {relay_cpu_s: ($vcpu | tonumber)}), stcpr: $stcpr}
}'
