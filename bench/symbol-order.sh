#!/usr/bin/env bash
# Regenerates bench/symbol-order.txt, the release link's lld --symbol-ordering-file (Makefile,
# SWIFT_RELEASE_LINK_FLAGS; docs/architecture.md "Memory per visor"): the visor's functions that
# ran, most instructions first, so that the linker packs them at the start of .text and the code
# a visor never runs (CLI commands, other apps, error paths) stays in pages never faulted in.
# Profile: valgrind's callgrind (every function that runs, not a sample) over the exit and the
# client visor of bench/visor-load.sh, once per transport: start, the VPN tunnel and SOCKS up,
# SOCKS requests and a bulk download, iperf3 through the tunnel up and down with 1 and 4 streams,
# IDLE_S seconds idle (timers, keepalives), shutdown; before them a visor with the `config gen`
# defaults (no transport, no app) for IDLE_S seconds. The log level is the default (info), as on
# a board: what it logs at start runs too.
# valgrind 3.19 cannot read the DWARF 5 that swiftc writes: it runs a copy without debug info
# (`objcopy --strip-debug`; the symbol table is kept; the work directory's path has no spaces).
# Env: SKYWIRE_BIN (required: a release build of the source the file is for), OUT (default
# bench/symbol-order.txt), TRANSPORTS="sudph stcpr", IDLE_S=20, KEEP_PROFILE=DIR (the callgrind
# files are copied there, for callgrind_annotate), and visor-load.sh's.
# A symbol the file names that a later build no longer has costs nothing (the link passes
# --no-warn-symbol-ordering); a new function missing from it is laid out after the listed ones,
# so regenerate the file when the datapath changes.
# Needs valgrind, nginx, iperf3, curl, jq (scripts/install-deps.sh --bench).
set -euo pipefail
: "${SKYWIRE_BIN:?set SKYWIRE_BIN to a release build of skywire}"
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(readlink -f "$SKYWIRE_BIN")
OUT=${OUT:-$here/symbol-order.txt}
TRANSPORTS=${TRANSPORTS:-sudph stcpr}
IDLE_S=${IDLE_S:-20}
. "$here/visor-load.sh"
trap vl_cleanup EXIT

vl_setup "$BIN" "$TRANSPORTS"
objcopy --strip-debug "$BIN" "$vl_work/skywire"
callgrind() {  # callgrind NAME: the command that runs the stripped copy under callgrind
    mkdir -p "$vl_work/cg-$1"
    echo valgrind --tool=callgrind --demangle=no --dump-instr=no --dump-line=no \
        --callgrind-out-file="$vl_work/cg-$1/cg.%p" "$vl_work/skywire"
}
vl_log "idle visor (config gen defaults) under callgrind, $IDLE_S s"
vl_idle "$IDLE_S" $(callgrind idle)
for t in $TRANSPORTS; do
    vl_log "$t: the exit and the client visor under callgrind"
    vl_start "$t" $(callgrind "$t")
    vl_ready "$t"
    vl_log "$t: load (SOCKS $RPS_COUNT requests, $BULK_MB MiB; iperf3 up/down 1 and 4 streams, $IPERF_S s each)"
    vl_load "$t"
    vl_log "$t: idle $IDLE_S s"
    sleep "$IDLE_S"
    vl_stop
    ls "$vl_work/cg-$t"/cg.* >/dev/null || { vl_log "$t: no callgrind output"; exit 1; }
done

python3 "$here/symbol-order.py" skywire "$vl_work"/cg-*/cg.* >"$vl_work/order"
n=$(wc -l <"$vl_work/order")
[ "$n" -gt 1000 ] || { vl_log "only $n functions: the profile did not run"; exit 1; }
{
    echo "# lld --symbol-ordering-file of the skywire visor, written by bench/symbol-order.sh"
    echo "# ($(date -u +%Y-%m-%d)): the $n functions that ran in an idle visor and in the exit and the"
    echo "# client visor over ${TRANSPORTS// /, } (VPN and SOCKS load, idle), most instructions first."
    cat "$vl_work/order"
} >"$OUT"
vl_log "wrote $OUT ($n symbols)"
if [ -n "${KEEP_PROFILE:-}" ]; then
    mkdir -p "$KEEP_PROFILE" && cp -r "$vl_work"/cg-* "$KEEP_PROFILE"/ && vl_log "callgrind files in $KEEP_PROFILE"
fi
