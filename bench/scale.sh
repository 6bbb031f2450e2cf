#!/usr/bin/env bash
# Scale benchmark (issue 17, docs/scale.md): how one visor's memory and CPU grow with the number
# of idle stcpr transports and open streams. For each level a fresh visor V runs in namespace
# skwbV$$; `skywire-hostile many-transports` in skwbX$$ opens the transports, each from its own
# key, from many addresses (StcprAdmission admits 64 sockets per address), keeps them alive with
# PINGs and optionally opens streams to V's echo app. Per level: V's RSS before and with the load
# (VmRSS, and VmHWM), its CPU while establishing, and its CPU per second while the load idles.
# Runs as root; everything it starts is killed by PID, the namespaces deleted on exit.
# Prints one JSON object on stdout (progress on stderr).
#   SCALE_LEVELS="1 100 1000 10000 1000:10000": transports[:streams] per level
#   SCALE_IDLE=20: seconds of idle CPU measured per level;  SKYWIRE_BIN, HOSTILE_BIN
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
HOSTILE=${HOSTILE_BIN:-$(dirname "$BIN")/skywire-hostile}
LEVELS=${SCALE_LEVELS:-1 100 1000 10000 1000:10000}
IDLE=${SCALE_IDLE:-20}
# Seconds allowed for establishing one level (10,000 handshakes on a loaded 2-core machine).
ESTABLISH_MAX=${SCALE_ESTABLISH_MAX:-300}
# Sockets per source address the visor admits (StcprAdmission.Limits.perAddress).
PER_ADDRESS=64
# The visor admits more than its default 4,096 stcpr sockets for the 10,000 level
# (TransportSettings.stcprMaxConnections); it needs a descriptor for each.
MAX_CONNECTIONS=${SCALE_MAX_CONNECTIONS:-12000}
[ "$(id -u)" = 0 ] || { echo "bench/scale.sh: run as root" >&2; exit 1; }
[ -x "$BIN" ] && [ -x "$HOSTILE" ] || { echo "bench/scale.sh: need $BIN and $HOSTILE" >&2; exit 1; }

work=$(mktemp -d /tmp/skwscale.XXXXXX)
V=skwbV$$ X=skwbX$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    ip netns del $V 2>/dev/null || true
    ip netns del $X 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[scale $(date +%T)] $*" >&2; }

# Topology: V 10.80.0.1/16 ─skwbv0══skwbx0─ X 10.80.1.1 .. 10.80.1.N/16 (one address per 64 sockets).
max_count=1
for level in $LEVELS; do n=${level%%:*}; [ "$n" -gt "$max_count" ] && max_count=$n; done
addresses=$(((max_count + PER_ADDRESS - 1) / PER_ADDRESS + 1))
[ "$addresses" -le 250 ] || { echo "bench/scale.sh: at most 250 source addresses ($((250 * PER_ADDRESS)) transports)" >&2; exit 1; }
for ns in $V $X; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add skwbv0 netns $V type veth peer name skwbx0 netns $X
ip -n $V addr add 10.80.0.1/16 dev skwbv0
sources=""
for i in $(seq 1 "$addresses"); do ip -n $X addr add 10.80.1.$i/16 dev skwbx0; sources+="${sources:+,}10.80.1.$i"; done
ip -n $V link set skwbv0 up
ip -n $X link set skwbx0 up

"$BIN" config gen -o "$work/v.json" --cli-addr "$work/v.sock" --state-dir "$work/v" >"$work/v.pk"
PKV=$(cat "$work/v.pk")
jq '.log_level = "warning" | .launcher.apps += [{"name":"echo","args":[],"auto_start":true,"port":7}]' \
    "$work/v.json" >"$work/t" && install -m600 "$work/t" "$work/v.json"

ticks=$(getconf CLK_TCK)
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy_ticks: the whole machine's busy CPU ticks so far (/proc/stat: all but idle and iowait).
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }

run_level() {  # run_level TRANSPORTS STREAMS: one JSON line
    local n=$1 streams=$2 vpid gen base est_t0 est_t1 ready up rss hwm idle0 idle1 m0 m1 out
    ip netns exec $V bash -c "ulimit -n $((MAX_CONNECTIONS + 1024)) && SKYWIRE_STCPR_MAX_CONNECTIONS=$MAX_CONNECTIONS exec $BIN visor -c $work/v.json" \
        >>"$work/v.log" 2>&1 &
    vpid=$!
    PIDS+=("$vpid")
    for _ in $(seq 1 100); do "$BIN" cli --rpc "$work/v.sock" visor info >/dev/null 2>&1 && break; sleep 0.1; done
    sleep 2
    base=$(status_kib "$vpid" VmRSS)
    est_t0=$(cpu_ticks "$vpid")
    rm -f "$work/ready.json"
    local start=$SECONDS
    ip netns exec $X bash -c "ulimit -n $((n + 1024)) && exec $HOSTILE many-transports --addr 10.80.0.1:7777 --pk $PKV \
        --count $n --streams $streams --sources $sources --seconds $ESTABLISH_MAX --hold $((IDLE + 30)) \
        --ready-file $work/ready.json" >"$work/gen.json" 2>"$work/gen.log" &
    gen=$!
    PIDS+=("$gen")
    while [ ! -s "$work/ready.json" ] && kill -0 "$gen" 2>/dev/null && [ $((SECONDS - start)) -le $((ESTABLISH_MAX + 10)) ]; do
        sleep 0.2
    done
    est_t1=$(cpu_ticks "$vpid")
    local est_s=$((SECONDS - start))
    ready=$(cat "$work/ready.json" 2>/dev/null || echo '{}')
    sleep 5   # OPEN_OKs and the first PINGs settle
    up=$("$BIN" cli --rpc "$work/v.sock" tp ls --json 2>/dev/null | jq '[.[] | select(.state == "up")] | length' || echo 0)
    local vstreams
    vstreams=$("$BIN" cli --rpc "$work/v.sock" tp ls --json 2>/dev/null | jq '[.[] | .streams] | add // 0' || echo 0)
    m0=$(busy_ticks)
    idle0=$(cpu_ticks "$vpid")
    sleep "$IDLE"
    idle1=$(cpu_ticks "$vpid")
    m1=$(busy_ticks)
    rss=$(status_kib "$vpid" VmRSS)
    hwm=$(status_kib "$vpid" VmHWM)
    kill "$gen" 2>/dev/null || true
    wait "$gen" 2>/dev/null || true
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    jq -nc --argjson n "$n" --argjson s "$streams" --argjson up "$up" --argjson vs "$vstreams" \
        --argjson base "$base" --argjson rss "$rss" --argjson hwm "$hwm" --argjson ready "$ready" \
        --argjson est_cpu "$(((est_t1 - est_t0) * 100 / ticks))" --argjson est_s "$est_s" \
        --argjson idle_ticks "$((idle1 - idle0))" --argjson ticks "$ticks" --argjson idle "$IDLE" \
        --argjson mticks "$((m1 - m0))" '{
            transports: $n, streams: $s, up_at_visor: $up, streams_at_visor: $vs,
            rss_kib_before: $base, rss_kib: $rss, vm_hwm_kib: $hwm,
            rss_bytes_per_transport: (if $n > 0 then (($rss - $base) * 1024 / $n | floor) else null end),
            establish_seconds: $est_s, establish_cpu_seconds: ($est_cpu / 100),
            idle_cpu_pct: ($idle_ticks * 100 / $ticks / $idle * 10 | round / 10),
            machine_busy_pct: ($mticks / $ticks / $idle / ('"$(nproc)"') * 100 | round),
            generator: $ready }'
}

for level in $LEVELS; do
    n=${level%%:*}
    streams=0; [ "$level" != "$n" ] && streams=${level#*:}
    log "level: $n transports, $streams streams"
    line=$(run_level "$n" "$streams")
    log "$line"
    echo "$line"
done | jq -s --arg host "$(uname -r)" --arg cpus "$(nproc)" --arg bin "$BIN" \
    '{kind: "scale-bench", kernel: $host, cpus: ($cpus | tonumber), binary: $bin, levels: .}'
