#!/usr/bin/env bash
# Runs the integration tests (tests/integration/t-*.sh) against the given skywire binary: all of
# them, or only those named after it (e.g. run.sh .build/debug/skywire t-socks.sh t-vpn.sh).
set -euo pipefail
bin=${1:?usage: run.sh PATH/TO/skywire [t-NAME.sh ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
tests=()
if [ $# -eq 0 ]; then
    tests=("$here"/t-*.sh)
else
    for name in "$@"; do
        t=$here/$(basename "$name")
        [ -f "$t" ] || { echo "run.sh: no test $name in $here" >&2; exit 2; }
        tests+=("$t")
    done
fi
fail=0
for t in "${tests[@]}"; do
    [ -e "$t" ] || continue
    echo "=== $(basename "$t")"
    if SKYWIRE_BIN="$bin" bash "$t"; then echo "--- PASS $(basename "$t")"; else echo "--- FAIL $(basename "$t")"; fail=1; fi
done
exit $fail
