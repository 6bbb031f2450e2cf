#!/usr/bin/env bash
# Per-request cost of the two skysocks visors, counted in a way the machine's load does not change:
# the bench's three-namespace shape (client visor with skysocks-client -> exit visor with skysocks
# -> an "internet" namespace with nginx serving 1 KiB), WARM sequential requests first, then COUNT
# measured ones, each a new connection and SOCKS handshake (curl --socks5-hostname, Connection: close).
#   MODE=callgrind  instructions (Ir) and malloc calls per request, per visor (valgrind's callgrind,
#                   counters zeroed after the warm-up with callgrind_control)
#   MODE=strace     system calls per request per visor (strace -c -f, attached after the warm-up)
#   MODE=none       requests/s only (no tool; load-dependent)
# Needs valgrind, strace, binutils, nginx (scripts/install-deps.sh --bench).
# valgrind 3.19 cannot read the DWARF 5 that swiftc writes: give it a copy without debug info
# (`objcopy --strip-debug`; the symbol table is kept, so functions keep their names).
# Env: SKYWIRE_BIN (required), TRANSPORT=stcpr|sudph, COUNT=300, WARM=50, FILE_KB=1 (the size of
# each response: FILE_KB=4096 COUNT=4 counts a bulk transfer's cost per KiB, `ir_per_kib`).
# Prints one JSON line.
# Namespaces, links and processes carry "skwc" and this shell's PID; the EXIT trap removes them.
set -euo pipefail
: "${SKYWIRE_BIN:?set SKYWIRE_BIN to the skywire binary}"
BIN=$(readlink -f "$SKYWIRE_BIN")
MODE=${MODE:-callgrind} TRANSPORT=${TRANSPORT:-stcpr} COUNT=${COUNT:-300} WARM=${WARM:-50} FILE_KB=${FILE_KB:-1}
# Bounds: a whole run under valgrind (~50x slower than native) stays far below these.
READY_TRIES=${READY_TRIES:-300} REQUEST_TIMEOUT_S=20 LOOP_TIMEOUT_S=900
C=skwcC$$ S=skwcS$$ N=skwcN$$
work=$(mktemp -d /tmp/skwcount.XXXXXX)
pids=() tracers=()
cleanup() {
    for p in "${tracers[@]:-}" "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${tracers[@]:-}" "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    for ns in $C $S $N; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
. "$(dirname "$0")/netns3.sh"
netns3_up $C $S $N skwc$$ 10.78.0

nginx_www "$work" $N 203.0.113.2 "$FILE_KB"
pids+=("$NGINX_PID")

for side in srv cli; do
    "$BIN" config gen -o "$work/$side.json" --cli-addr "$work/$side.sock" --state-dir "$work/$side" >"$work/$side.pk"
done
SRV=$(cat "$work/srv.pk") CLI=$(cat "$work/cli.pk")
jq --arg c "$CLI" '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$c])
    | .log_level="warning"' "$work/srv.json" >"$work/t" && install -m600 "$work/t" "$work/srv.json"
jq --arg s "$SRV" '(.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=true | .args=["-k",$s,"--addr","127.0.0.1:1080"])
    | .transport.peers[$s] = (if env.TRANSPORT == "sudph" then {"sudph":"10.78.0.2:7778"} else {"stcpr":"10.78.0.2:7777"} end)
    | .log_level="warning"' "$work/cli.json" >"$work/t" && install -m600 "$work/t" "$work/cli.json"

wrap=()
[ "$MODE" = callgrind ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no --collect-atstart=yes)
start_visor() {  # start_visor SIDE NS
    ip netns exec "$2" "${wrap[@]}" "$BIN" visor -c "$work/$1.json" >"$work/$1.log" 2>&1 &
    pids+=($!)
    eval "PID_$1=$!"
}
start_visor srv $S
sleep 1
start_visor cli $C
fetch() {  # fetch FIRST LAST
    ip netns exec $C timeout "$LOOP_TIMEOUT_S" curl -s -H 'Connection: close' --max-time "$REQUEST_TIMEOUT_S" \
        --socks5-hostname 127.0.0.1:1080 -o /dev/null -w '%{http_code}\n' "http://203.0.113.2/small.txt?i=[$1-$2]" || true
}
for i in $(seq 1 $READY_TRIES); do
    [ "$(fetch 1 1)" = 200 ] && break
    kill -0 "$PID_srv" 2>/dev/null && kill -0 "$PID_cli" 2>/dev/null || i=$READY_TRIES
    [ "$i" = $READY_TRIES ] && { echo "socks-count: the proxy did not answer" >&2; tail "$work"/*.log "$work"/nginx/error.log >&2; ip netns exec $C curl -sv --max-time 5 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2/small.txt -o /dev/null >&2; exit 1; }
    sleep 0.2
done
ok=$(fetch 1 "$WARM" | grep -c '^200$' || true)
[ "$ok" = "$WARM" ] || { echo "socks-count: warm-up: $ok of $WARM ok" >&2; exit 1; }

# The visor's pid: `ip netns exec` and valgrind exec, so it is the one started.
vpid() { eval echo "\$PID_$1"; }
case $MODE in
callgrind)
    for side in srv cli; do callgrind_control -z "$(vpid $side)" >/dev/null; done ;;
strace)
    for side in srv cli; do
        strace -c -f -o "$work/strace.$side" -p "$(vpid $side)" 2>/dev/null &
        tracers+=($!)
    done
    sleep 1 ;;
esac
t0=$(date +%s.%N)
ok=$(fetch 1 "$COUNT" | grep -c '^200$' || true)
t1=$(date +%s.%N)
[ "$ok" = "$COUNT" ] || { echo "socks-count: $ok of $COUNT ok" >&2; exit 1; }
result=$(jq -cn --arg m "$MODE" --arg t "$TRANSPORT" --argjson n "$COUNT" --arg el "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '{mode: $m, transport: $t, requests: $n, elapsed_s: ($el|tonumber),
    rps: ($n / ($el|tonumber) * 10 | round / 10), loadavg: $load}')
case $MODE in
callgrind)
    for side in srv cli; do
        p=$(vpid $side)
        callgrind_control -d "$p" >/dev/null
        sleep 2
        f=$(ls -t "$work"/cg."$p"* | grep -v "cg.$p\$" | head -n1)
        # Events of the dump and the calls to malloc-family functions (callgrind's calls= lines).
        counts=$(python3 "$(dirname "$0")/callgrind-counts.py" "$f")
        result=$(jq -c --arg s "$side" --argjson c "$counts" --argjson n "$COUNT" \
            --argjson kb "$FILE_KB" \
            '.[$s] = {ir_per_request: ($c.ir / $n | round), ir_per_kib: ($c.ir / $n / $kb | round),
                      mallocs_per_request: ($c.mallocs / $n * 10 | round / 10),
                      frees_per_request: ($c.frees / $n * 10 | round / 10)}' <<<"$result")
        cp "$f" "/tmp/skwcount-$side-$TRANSPORT.callgrind" 2>/dev/null || true
    done ;;
strace)
    for t in "${tracers[@]}"; do kill -INT "$t" 2>/dev/null || true; done
    sleep 1
    for side in srv cli; do
        calls=$(awk '$NF=="total"{print $(NF-2)}' "$work/strace.$side")
        result=$(jq -c --arg s "$side" --argjson c "${calls:-0}" --argjson n "$COUNT" \
            '.[$s] = {syscalls_per_request: ($c / $n * 10 | round / 10)}' <<<"$result")
        cp "$work/strace.$side" "/tmp/skwcount-$side-$TRANSPORT.strace" 2>/dev/null || true
    done ;;
esac
echo "$result"
