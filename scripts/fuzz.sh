#!/usr/bin/env bash
# libFuzzer harnesses of FuzzTesting/ (docs/fuzzing.md).
#   scripts/fuzz.sh build                  build every harness (release, -sanitize=fuzzer,address)
#   scripts/fuzz.sh seeds                  regenerate FuzzTesting/corpus/<harness>/ from the encoders
#   scripts/fuzz.sh run [HARNESS...]       fuzz each for FUZZ_SECONDS (default 60), one after another
#   scripts/fuzz.sh short [HARNESS...]     the short pass of `make test`: FUZZ_SHORT_SECONDS (default 6) each
#   scripts/fuzz.sh list                   the harness names
# A crash or invariant failure makes the run fail (after the other harnesses ran); the reproducer is
# left in out/fuzz/artifacts/<harness>/ and can be replayed with `<binary> <file>`. New coverage is
# kept in out/fuzz/corpus/<harness>/ (not committed; the committed seeds are read, never written).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pkg=$root/FuzzTesting
swift=${SWIFT:-swift}
flags=(-c release --package-path "$pkg" -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
out=$root/out/fuzz

harnesses() { (cd "$pkg/Sources" && ls -d fuzz-* | sort); }

check_runtime() {
    # libFuzzer and ASan ship with the swift.org Linux toolchain (lib/clang/*/lib/linux).
    local swiftc dir
    swiftc=$(command -v swiftc) || { echo "fuzz: swiftc not on PATH" >&2; exit 1; }
    dir=$(dirname "$(readlink -f "$swiftc")")/../lib
    if ! compgen -G "$dir/clang/*/lib/linux/libclang_rt.fuzzer-$(uname -m).a" >/dev/null \
       && ! compgen -G "$dir/swift/clang/lib/linux/libclang_rt.fuzzer-$(uname -m).a" >/dev/null; then
        echo "fuzz: this Swift toolchain ($swiftc) has no libFuzzer runtime (libclang_rt.fuzzer); use a swift.org toolchain" >&2
        exit 1
    fi
}

build() {
    check_runtime
    "$swift" build "${flags[@]}" >&2
}

bin_path() { "$swift" build "${flags[@]}" --show-bin-path; }

symbolizer() {
    local s
    s=$(dirname "$(readlink -f "$(command -v swiftc)")")/llvm-symbolizer
    [ -x "$s" ] && echo "$s" || true
}

seeds() {
    build
    local bin h dir
    bin=$(bin_path)
    for h in $(harnesses); do
        dir=$pkg/corpus/$h
        mkdir -p "$dir"
        # Generated seeds are replaced; regression-* reproducers stay.
        find "$dir" -maxdepth 1 -type f ! -name 'regression-*' -delete
        SKYWIRE_FUZZ_WRITE_SEEDS=$dir "$bin/$h" >/dev/null 2>&1 || { echo "fuzz: $h could not write its seeds" >&2; exit 1; }
        echo "$h: $(find "$dir" -maxdepth 1 -type f | wc -l) seeds" >&2
    done
}

# run SECONDS HARNESS...: fuzz each harness; prints one summary line per harness.
run() {
    local seconds=$1; shift
    build
    local bin h failed=() sym
    bin=$(bin_path)
    sym=$(symbolizer)
    [ $# -gt 0 ] || set -- $(harnesses)
    for h in "$@"; do
        [ -x "$bin/$h" ] || { echo "fuzz: no harness $h (have: $(harnesses | tr '\n' ' '))" >&2; exit 2; }
        local work=$out/corpus/$h art=$out/artifacts/$h log=$out/logs/$h.log
        mkdir -p "$work" "$art" "$(dirname "$log")"
        local args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=8192
                    -print_final_stats=1 -artifact_prefix="$art/")
        [ -f "$pkg/dict/$h.dict" ] && args+=(-dict="$pkg/dict/$h.dict")
        local rc=0
        # SWIFT_BACKTRACE: the runtime's crash handler reads raw stack memory, which ASan reports.
        env ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" SWIFT_BACKTRACE=enable=no ${sym:+ASAN_SYMBOLIZER_PATH="$sym"} \
            "$bin/$h" "${args[@]}" "$work" "$pkg/corpus/$h" >"$log" 2>&1 || rc=$?
        local execs cov
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
        if [ "$rc" -ne 0 ]; then
            failed+=("$h")
            echo "FAIL $h after ${execs:-?} runs (exit $rc); log $log; reproducer:" $(ls -t "$art" | head -1 | sed "s|^|$art/|")
            grep -m3 -E 'invariant violated|Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer' "$log" || true
        else
            echo "ok   $h: ${execs:-?} runs in ${seconds}s, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l)"
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "fuzz: ${#failed[@]} harness(es) failed: ${failed[*]}" >&2
        return 1
    fi
}

case "${1:-}" in
    build) build ;;
    seeds) seeds ;;
    run) shift; run "${FUZZ_SECONDS:-60}" "$@" ;;
    short) shift; run "${FUZZ_SHORT_SECONDS:-6}" "$@" ;;
    list) harnesses ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
