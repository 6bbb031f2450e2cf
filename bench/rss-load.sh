#!/usr/bin/env bash
# RSS of the visor (docs/architecture.md "Memory per visor"), two builds measured alternately in
# the same minutes: an idle visor (default `config gen` config, no transport) after IDLE_S s, then
# per transport the exit and the client visor of bench/visor-load.sh (VPN and SOCKS apps) with the
# tunnel up and idle for IDLE_S s, and after one round of load (SOCKS requests and a bulk
# download, iperf3 through the tunnel up and down with 1 and 4 streams): VmRSS, VmHWM and the
# bench/rss-breakdown.sh rows (kB).
# Env: SKYWIRE_BIN (required), SKYWIRE_BIN_BASE (optional: the other build, rows "base"),
# RUNS=3 (rotating which build goes first), TRANSPORTS="sudph stcpr", IDLE_S=5, and
# visor-load.sh's. Progress on stderr; stdout: one JSON line per measurement, then the medians.
set -euo pipefail
: "${SKYWIRE_BIN:?set SKYWIRE_BIN to a release build of skywire}"
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3} TRANSPORTS=${TRANSPORTS:-sudph stcpr} IDLE_S=${IDLE_S:-5}
. "$here/visor-load.sh"
trap vl_cleanup EXIT
builds=(new)
declare -A bins=([new]=$(readlink -f "$SKYWIRE_BIN"))
[ -z "${SKYWIRE_BIN_BASE:-}" ] || { builds+=(base); bins[base]=$(readlink -f "$SKYWIRE_BIN_BASE"); }

snapshot() {  # snapshot PID: {rss, hwm, breakdown: {kind: kB}}
    jq -cn --argjson rss "$(awk '/^VmRSS:/{print $2}' "/proc/$1/status")" \
        --argjson hwm "$(awk '/^VmHWM:/{print $2}' "/proc/$1/status")" \
        --argjson b "$("$here/rss-breakdown.sh" "$1" | awk 'NR > 1 && $1 != "total" {
            k = substr($0, 1, 34); sub(/ +$/, "", k); printf "%s\"%s\":%d", (n++ ? "," : "{"), k, $(NF - 1) }
            END { print (n ? "}" : "{}") }')" '{rss: $rss, hwm: $hwm, breakdown: $b}'
}

idle_line() {  # idle_line PID: the idle visor's line ($b: the build, $run)
    jq -cn --arg b "$b" --argjson r "$run" --argjson s "$(snapshot "$1")" '{build: $b, run: $r, phase: "idle", visor: $s}'
}

vl_setup "${bins[new]}" "$TRANSPORTS"
n=${#builds[@]}
for run in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((n - 1))); do
        b=${builds[$(( (i + run - 1) % n ))]}; bin=${bins[$b]}
        vl_log "run $run/$RUNS: $b: idle visor"
        VL_IDLE_SNAPSHOT=idle_line vl_idle "$IDLE_S" "$bin"
        for t in $TRANSPORTS; do
            vl_log "run $run/$RUNS: $b: $t"
            vl_start "$t" "$bin"
            vl_ready "$t"
            sleep "$IDLE_S"
            jq -cn --arg b "$b" --argjson r "$run" --arg t "$t" --argjson s "$(snapshot $VL_SRV)" --argjson c "$(snapshot $VL_CLI)" \
                '{build: $b, run: $r, phase: ("tunnel-idle " + $t), srv: $s, cli: $c}'
            vl_load "$t"
            jq -cn --arg b "$b" --argjson r "$run" --arg t "$t" --argjson s "$(snapshot $VL_SRV)" --argjson c "$(snapshot $VL_CLI)" \
                '{build: $b, run: $r, phase: ("load " + $t), srv: $s, cli: $c}'
            vl_stop
        done
    done
done | tee "$vl_work/lines"
jq -sc '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    group_by([.build, .phase]) | map({build: .[0].build, phase: .[0].phase} +
        (if .[0].visor then {visor_rss: map(.visor.rss) | median, visor_hwm: map(.visor.hwm) | median,
            visor_breakdown: (map(.visor.breakdown | to_entries) | add | group_by(.key) | map({key: .[0].key, value: (map(.value) | median)}) | from_entries)}
         else {srv_rss: map(.srv.rss) | median, srv_hwm: map(.srv.hwm) | median, cli_rss: map(.cli.rss) | median, cli_hwm: map(.cli.hwm) | median,
            srv_breakdown: (map(.srv.breakdown | to_entries) | add | group_by(.key) | map({key: .[0].key, value: (map(.value) | median)}) | from_entries),
            cli_breakdown: (map(.cli.breakdown | to_entries) | add | group_by(.key) | map({key: .[0].key, value: (map(.value) | median)}) | from_entries)} end))
    | {medians: .}' "$vl_work/lines"
