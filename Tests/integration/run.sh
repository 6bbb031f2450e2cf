#!/usr/bin/env bash
# Runs every integration test (tests/integration/t-*.sh) against the given skywire binary.
set -euo pipefail
bin=${1:?usage: run.sh PATH/TO/skywire}
here=$(cd "$(dirname "$0")" && pwd)
fail=0
for t in "$here"/t-*.sh; do
    [ -e "$t" ] || continue
    echo "=== $(basename "$t")"
    if SKYWIRE_BIN="$bin" bash "$t"; then echo "--- PASS $(basename "$t")"; else echo "--- FAIL $(basename "$t")"; fail=1; fi
done
exit $fail
