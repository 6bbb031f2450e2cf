# Shared helpers for the integration tests: namespaces, visors, assertions, cleanup.
# Every namespace, link and process a test creates is named with the "skwt" prefix and
# removed by the EXIT trap; processes are killed by PID only.
set -euo pipefail

: "${SKYWIRE_BIN:?set SKYWIRE_BIN to the skywire binary}"
SKYWIRE_BIN=$(readlink -f "$SKYWIRE_BIN")
T_WORK=$(mktemp -d /tmp/skwt.XXXXXX)
T_PIDS=()
T_NS=()
T_FAILS=0

log() { echo "[$(date +%T)] $*" >&2; }
fail() { echo "FAIL: $*" >&2; T_FAILS=$((T_FAILS + 1)); }
pass() { echo "ok: $*" >&2; }
die() { echo "FATAL: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    for pid in "${T_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    sleep 0.3
    for pid in "${T_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    for ns in "${T_NS[@]:-}"; do
        [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] || [ "$T_FAILS" -ne 0 ]; then
        for f in "$T_WORK"/*.log; do
            [ -e "$f" ] || continue
            echo "----- $(basename "$f") (last 40 lines)" >&2
            tail -n 40 "$f" >&2
        done
    fi
    rm -rf "$T_WORK"
}
trap cleanup EXIT

# netns_add NAME: a namespace with loopback up.
netns_add() {
    ip netns del "$1" 2>/dev/null || true
    ip netns add "$1"
    T_NS+=("$1")
    ip -n "$1" link set lo up
}

# veth_pair NS_A IF_A ADDR_A NS_B IF_B ADDR_B (addresses in CIDR form)
veth_pair() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up
    ip -n "$4" link set "$5" up
}

# visor_config NAME -> writes $T_WORK/NAME.json with an echo app and its own control socket.
visor_config() {
    local name=$1 cfg=$T_WORK/$1.json
    "$SKYWIRE_BIN" config gen -o "$cfg" >"$T_WORK/$name.pk" || die "config gen failed for $name"
    local tmp=$cfg.tmp
    jq --arg sock "$T_WORK/$name.sock" --arg state "$T_WORK/$name-state" \
        '.cli_addr = $sock | .state_dir = $state | .log_level = "debug"
         | .launcher.apps += [{"name":"echo","args":[],"auto_start":true,"port":7}]' "$cfg" >"$tmp"
    install -m 600 "$tmp" "$cfg"
    rm -f "$tmp"
    cat "$T_WORK/$name.pk"
}

# visor_start NAME NS: starts the visor in NS and waits for its control socket.
visor_start() {
    local name=$1 ns=$2
    ip netns exec "$ns" "$SKYWIRE_BIN" visor -c "$T_WORK/$name.json" >>"$T_WORK/$name.log" 2>&1 &
    local pid=$!
    T_PIDS+=("$pid")
    eval "PID_$name=$pid"
    for _ in $(seq 1 100); do
        if "$SKYWIRE_BIN" cli --rpc "$T_WORK/$name.sock" visor info >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || die "visor $name exited early"
        sleep 0.1
    done
    die "visor $name did not open its control socket within 10 s"
}

# visor_stop NAME: SIGTERM and wait (bounded).
visor_stop() {
    local pid_var="PID_$1" pid
    pid=${!pid_var}
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

# cli NAME ARGS...: runs skywire cli against visor NAME.
cli() {
    local name=$1; shift
    "$SKYWIRE_BIN" cli --rpc "$T_WORK/$name.sock" "$@"
}

# expect_ok DESC CMD...: the command must succeed.
expect_ok() {
    local desc=$1; shift
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc: $out"; fi
}

# expect_fail DESC PATTERN CMD...: the command must fail and print PATTERN.
expect_fail() {
    local desc=$1 pattern=$2; shift 2
    if out=$("$@" 2>&1); then
        fail "$desc: succeeded unexpectedly: $out"
    elif grep -qiE "$pattern" <<<"$out"; then
        pass "$desc"
    else
        fail "$desc: error did not match /$pattern/: $out"
    fi
}

finish() {
    if [ "$T_FAILS" -ne 0 ]; then
        echo "$T_FAILS check(s) failed" >&2
        exit 1
    fi
}
