# Shared by bench/vpn.sh and bench/socks.sh: paths, the two visor configs, the JSON report.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
H=${SKYWIRE_BENCH_HARNESS:-$root/../shared/bench}
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
export TRANSPORT
work=$(mktemp -d /tmp/skwbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The harness's exit (pfsrv) address on the underlay.
BENCH_SRV_IP=10.231.1.1

need_harness() {  # need_harness SCRIPT
    [ -x "$H/$1" ] || { echo "bench: harness not found at $H (set SKYWIRE_BENCH_HARNESS)" >&2; exit 1; }
    # The harness sums the daemons' CPU over /proc/[0-9]*/stat with awk. mawk and gawk both stop
    # with a fatal error when one of those processes exits during the scan, which on a busy
    # machine loses whole process trees: CPU-s/GB came out negative or several times too high.
    # So the harness's awk is gawk with a BEGINFILE rule that skips files it cannot open.
    if command -v gawk >/dev/null; then
        mkdir -p "$work/bin"
        cat >"$work/bin/awk" <<'AWK'
#!/usr/bin/env bash
# awk for the bench harness: gawk, skipping input files that vanished (bench/lib.sh).
args=() program=
while [ $# -gt 0 ]; do
    case $1 in
    -v|-F) args+=("$1" "$2"); shift 2 ;;
    -f) program=file; args+=("$1" "$2"); shift 2 ;;
    --) shift; break ;;
    -*) args+=("$1"); shift ;;
    *) break ;;
    esac
done
if [ -z "$program" ] && [ $# -gt 0 ]; then args+=(-e "$1"); shift; fi
# Only with input files: a BEGINFILE rule would make a BEGIN-only program read stdin.
[ $# -gt 0 ] && args=(-e 'BEGINFILE { if (ERRNO != "") nextfile }' "${args[@]}")
exec gawk "${args[@]}" -- "$@"
AWK
        chmod +x "$work/bin/awk"
        export PATH="$work/bin:$PATH"
    else
        echo "bench: gawk not installed (scripts/install-deps.sh --bench): CPU figures may be wrong" >&2
    fi
}

# bench_configs SERVER_JQ CLIENT_JQ: writes $work/srv.json (exit, in pfsrv) and $work/cli.json
# (client, in pfcli, with the exit in its peers table over $TRANSPORT); the filters get $s = the
# exit's public key and $c = the client's (an exit refuses every key it does not list). Sets SRV.
bench_configs() {
    local side
    for side in srv cli; do
        "$BIN" config gen -o "$work/$side.json" --cli-addr "$work/$side.sock" --state-dir "$work/$side" >"$work/$side.pk"
    done
    SRV=$(cat "$work/srv.pk")
    jq --arg s "$SRV" --arg c "$(cat "$work/cli.pk")" "$1 | .log_level=\"warning\"" "$work/srv.json" >"$work/t" && install -m600 "$work/t" "$work/srv.json"
    jq --arg s "$SRV" --arg c "$(cat "$work/cli.pk")" --arg ip "$BENCH_SRV_IP" "$2
        | .transport.peers[\$s] = (if env.TRANSPORT == \"sudph\" then {\"sudph\":(\$ip+\":7778\")} else {\"stcpr\":(\$ip+\":7777\")} end)
        | .log_level=\"warning\"" "$work/cli.json" >"$work/t" && install -m600 "$work/t" "$work/cli.json"
}

# bench_report KIND: the harness lines on stdin (one per peer, tagged with .peer) as one object.
bench_report() {
    jq -s --arg kind "$1" '{
        kind: $kind,
        transport: env.TRANSPORT,
        peers: .,
        summary: (map({key: .peer, value: ((.summary // {error: .error})
            + (if .peak_rss_kb then {peak_rss_kb: .peak_rss_kb} else {} end))}) | from_entries)
    }'
}
