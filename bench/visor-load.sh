# Sourced by bench/symbol-order.sh and bench/rss-load.sh: an exit and a client visor in network
# namespaces (client -> exit -> an "internet" namespace with nginx and iperf3), the VPN
# (vpn-client/vpn-server) and SOCKS (skysocks-client/skysocks) apps on both (otherwise the
# `config gen` defaults, as on a board: info log level), and one round of load through them.
# Namespaces and links carry "skwo" and the sourcing shell's PID; vl_cleanup (the EXIT trap)
# removes them and stops, by PID, what was started.
# Env: IPERF_S=4 (each iperf3 test), RPS_COUNT=200 (SOCKS requests, a new connection each),
# BULK_MB=16 (SOCKS download).
. "$(dirname "${BASH_SOURCE[0]}")/netns3.sh"
IPERF_S=${IPERF_S:-4} RPS_COUNT=${RPS_COUNT:-200} BULK_MB=${BULK_MB:-16}
# Bounds: a visor under valgrind runs ~50x slower than native; these stay far above what it needs.
VL_READY_TRIES=300 VL_REQUEST_TIMEOUT_S=20 VL_BULK_TIMEOUT_S=300 VL_EXIT_WAIT_S=120
VL_IPERF_TIMEOUT_S=$((IPERF_S + 60))
VL_C=skwoC$$ VL_S=skwoS$$ VL_N=skwoN$$
vl_work=$(mktemp -d /tmp/skwload.XXXXXX)
vl_pids=()
vl_log() { echo "$(basename "$0"): $*" >&2; }
vl_cleanup() {
    local p ns
    for p in "${vl_pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${vl_pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    for ns in $VL_C $VL_S $VL_N; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$vl_work"
}

# vl_setup BIN TRANSPORTS: the namespaces, nginx and iperf3 in the "internet" namespace, the keys,
# $vl_work/srv.json, one $vl_work/cli-T.json per transport T and $vl_work/idle.json (the `config
# gen` defaults: no transport, no app started).
vl_setup() {
    local bin=$1 transports=$2 t port side
    netns3_up $VL_C $VL_S $VL_N skwo$$ 10.78.1

    nginx_www "$vl_work" $VL_N 203.0.113.2
    vl_pids+=("$NGINX_PID")
    head -c $((BULK_MB * 1048576)) /dev/urandom >"$vl_work/www/big.bin"
    chmod 644 "$vl_work/www"/*
    ip netns exec $VL_N iperf3 -s -B 203.0.113.2 >"$vl_work/iperf3-server.log" 2>&1 &
    vl_pids+=($!)

    for side in srv cli idle; do
        "$bin" config gen -o "$vl_work/$side.json" --cli-addr "$vl_work/$side.sock" --state-dir "$vl_work/$side" >"$vl_work/$side.pk"
    done
    local srv cli
    srv=$(cat "$vl_work/srv.pk") cli=$(cat "$vl_work/cli.pk")
    jq --arg c "$cli" --arg x "skwo$$x" '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$c])
        | (.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["-i",$x,"--whitelist",$c])' \
        "$vl_work/srv.json" >"$vl_work/t" && install -m600 "$vl_work/t" "$vl_work/srv.json"
    for t in $transports; do
        case $t in sudph) port=7778 ;; stcpr) port=7777 ;; *) vl_log "unknown transport $t"; return 2 ;; esac
        jq --arg s "$srv" --arg t "$t" --arg a "10.78.1.2:$port" '(.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=true | .args=["-k",$s,"--addr","127.0.0.1:1080"])
            | (.launcher.apps[] | select(.name=="vpn-client")) |= (.auto_start=true | .args=["-k",$s])
            | .transport.peers[$s] = {($t): $a}' "$vl_work/cli.json" >"$vl_work/t" \
            && install -m600 "$vl_work/t" "$vl_work/cli-$t.json"
    done
}

vl_socks() {  # vl_socks URL-PATH: HTTP status codes, one a line
    ip netns exec $VL_C curl -s -H 'Connection: close' --max-time "$VL_REQUEST_TIMEOUT_S" \
        --socks5-hostname 127.0.0.1:1080 -o /dev/null -w '%{http_code}\n' "http://203.0.113.2/$1" || true
}

# vl_start TRANSPORT COMMAND...: the exit, then the client visor, each run as COMMAND... visor -c
# CONFIG (e.g. the binary, or valgrind ... binary), from fresh state; sets VL_SRV and VL_CLI (pids).
vl_start() {
    local t=$1; shift
    rm -rf "$vl_work/srv" "$vl_work/cli"
    ip netns exec $VL_S "$@" visor -c "$vl_work/srv.json" >"$vl_work/srv-$t.log" 2>&1 &
    VL_SRV=$!; vl_pids+=($VL_SRV)
    sleep 1
    ip netns exec $VL_C "$@" visor -c "$vl_work/cli-$t.json" >"$vl_work/cli-$t.log" 2>&1 &
    VL_CLI=$!; vl_pids+=($VL_CLI)
}

# vl_ready TRANSPORT: waits until SOCKS answers and the tunnel carries a ping.
vl_ready() {
    local i
    for i in $(seq 1 $VL_READY_TRIES); do
        [ "$(vl_socks small.txt)" = 200 ] && ip netns exec $VL_C ping -c1 -W2 203.0.113.2 >/dev/null 2>&1 && return 0
        kill -0 "$VL_SRV" 2>/dev/null && kill -0 "$VL_CLI" 2>/dev/null || break
        sleep 0.5
    done
    vl_log "$1: SOCKS or the tunnel did not come up"; tail "$vl_work"/*-"$1".log >&2
    return 1
}

# vl_idle SECONDS COMMAND...: a visor with idle.json in the exit's namespace for SECONDS, then, if
# VL_IDLE_SNAPSHOT names a function, that function with its pid, then SIGTERM (waited for).
vl_idle() {
    local s=$1 p; shift
    rm -rf "$vl_work/idle"
    ip netns exec $VL_S "$@" visor -c "$vl_work/idle.json" >"$vl_work/idle.log" 2>&1 &
    p=$!; vl_pids+=($p)
    sleep "$s"
    kill -0 $p 2>/dev/null || { vl_log "the idle visor exited"; tail "$vl_work/idle.log" >&2; return 1; }
    [ -z "${VL_IDLE_SNAPSHOT:-}" ] || "$VL_IDLE_SNAPSHOT" $p
    vl_term $p "the idle visor"
}

vl_iperf() {  # vl_iperf ARGS...: through the tunnel (the client has no other route to 203.0.113.0/24)
    ip netns exec $VL_C timeout "$VL_IPERF_TIMEOUT_S" iperf3 -c 203.0.113.2 -t "$IPERF_S" "$@" >>"$vl_work/iperf3.log" 2>&1 \
        || vl_log "iperf3 $* failed (see $vl_work/iperf3.log)"
}

# vl_load TRANSPORT: SOCKS requests and a bulk download, iperf3 up/down with 1 and 4 streams.
vl_load() {
    local ok
    ok=$(vl_socks "small.txt?i=[1-$RPS_COUNT]" | grep -c '^200$' || true)
    [ "$ok" = "$RPS_COUNT" ] || vl_log "$1: only $ok of $RPS_COUNT SOCKS requests answered"
    ip netns exec $VL_C curl -s --max-time "$VL_BULK_TIMEOUT_S" --socks5-hostname 127.0.0.1:1080 -o /dev/null \
        http://203.0.113.2/big.bin || vl_log "$1: the SOCKS download failed"
    vl_iperf; vl_iperf -R; vl_iperf -P 4; vl_iperf -R -P 4
}

# vl_term PID NAME: SIGTERM, waited for (VL_EXIT_WAIT_S s at most); 1 if PID did not exit.
vl_term() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 "$VL_EXIT_WAIT_S"); do kill -0 "$1" 2>/dev/null || return 0; sleep 1; done
    vl_log "$2 $1 did not exit in ${VL_EXIT_WAIT_S} s"; return 1
}

# vl_stop: SIGTERM to the client, then the exit, each waited for (bounded).
vl_stop() {
    vl_term "$VL_CLI" visor && vl_term "$VL_SRV" visor
}
