#!/usr/bin/env bash
# make cross-test ARCH=<arch>: checks out/<arch>/skywire from `make cross`:
#   1. ELF machine matches ARCH, binary is stripped, sha256 file matches, size under the budget,
#      no FoundationEssentials / _StringProcessing linked;
#   2. NEEDED libraries are only glibc's and libsodium / libcrypto (OpenSSL) / libnl-3 / libnl-route-3 / libmnl;
#   3. no GLIBC_ symbol version above 2.38 (runs on Debian trixie, glibc 2.41);
#   4. runs on the target libraries: `skywire --version`, `skywire config gen -o /tmp/x.json`
#      (aarch64: qemu-aarch64-static -L <trixie sysroot>; x86_64: chroot into the trixie sysroot).
# Prints PASS/FAIL per check; exits 1 if any check failed.
source "$(dirname "$0")/common.sh"
arch_vars "${1:?usage: test-cross.sh ARCH}"
require_root
host_need binutils jq
[ -z "$QEMU" ] || host_need qemu-user-static binfmt-support

OUT="$REPO_DIR/out/$ARCH"; BIN="$OUT/skywire"
ENTRY="$(sysroot_path)"; ROOT="$ENTRY/root"
step "test-prerequisites" "run 'make cross ARCH=$ARCH' first"
[ -f "$BIN" ] || die "$BIN missing"
[ -f "$ENTRY/$STAMP" ] || die "sysroot $ENTRY missing (it is built by make cross)"

failures=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures+1)); }
CURRENT_STEP="cross-test-$ARCH"; CURRENT_HINT=""

# 1. ELF header, stripped, checksum.
case "$ARCH" in aarch64) want_machine=AArch64 ;; x86_64) want_machine="X86-64" ;; esac
machine=$(readelf -h "$BIN" | awk -F: '/Machine:/{gsub(/^ +/,"",$2); print $2}')
[[ "$machine" == *"$want_machine"* ]] && pass "ELF machine: $machine" || fail "ELF machine is '$machine', want $want_machine"
if readelf -S -W "$BIN" | grep -qE '\.symtab|\.debug_'; then fail "binary is not stripped"; else pass "stripped ($(stat -c %s "$BIN") bytes)"; fi
(cd "$OUT" && sha256sum --quiet -c skywire.sha256) && pass "skywire.sha256 matches" || fail "skywire.sha256 does not match"

# 1b. Size budget (issue 17: the stripped binary under 20 MB; docs/cross-compiling.md "Binary size"), and
# none of the libraries that cost most of it when something pulls them in again: FoundationEssentials
# (through an unpatched argument parser, Vendor/swift-argument-parser/PATCHES.md) or _StringProcessing
# (String.firstRange(of:), contains(String)). Mangled module names in the unstripped build's symbols.
SIZE_BUDGET_BYTES=20000000
size=$(stat -c %s "$BIN")
[ "$size" -lt "$SIZE_BUDGET_BYTES" ] && pass "size $size B, under the budget of $SIZE_BUDGET_BYTES B" \
    || fail "size $size B is over the budget of $SIZE_BUDGET_BYTES B (docs/cross-compiling.md)"
UNSTRIPPED="$REPO_DIR/.build-cross-$ARCH/$TRIPLE/release/skywire"
if [ -f "$UNSTRIPPED" ]; then
    linked=$(nm "$UNSTRIPPED" 2>/dev/null | grep -c -E '20FoundationEssentials|17_StringProcessing' || true)
    [ "$linked" = 0 ] && pass "links neither FoundationEssentials nor _StringProcessing" \
        || fail "links FoundationEssentials or _StringProcessing ($linked symbols; docs/cross-compiling.md)"
fi

# 2. NEEDED libraries.
mapfile -t needed < <(readelf -d -W "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
allowed_re='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|libresolv\.so\.2|ld-linux-[a-z0-9_-]+\.so\.[0-9]+|libsodium\.so\.[0-9]+|libcrypto\.so\.3|libnl-3\.so\.200|libnl-route-3\.so\.200|libmnl\.so\.0)$'
bad=()
for l in "${needed[@]}"; do [[ "$l" =~ $allowed_re ]] || bad+=("$l"); done
if ((${#bad[@]})); then fail "unexpected NEEDED: ${bad[*]} (all: ${needed[*]})"
else pass "NEEDED only glibc + C libraries: ${needed[*]}"; fi
readelf -l -W "$BIN" | grep -q "Requesting program interpreter: /lib.*/$LD_SO" \
    && pass "interpreter $LD_SO" || fail "interpreter is not /lib*/$LD_SO"

# 3. Highest GLIBC_ version needed (version-needs section; same data as objdump -T).
maxv=$(readelf -V -W "$BIN" | grep -oE 'Name: GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/Name: GLIBC_//' | sort -uV | tail -n1)
if [ -z "$maxv" ]; then fail "no GLIBC_ versions found (not dynamically linked against glibc?)"
elif [ "$(printf '%s\n%s\n' "$maxv" "$MAX_GLIBC" | sort -V | tail -n1)" = "$MAX_GLIBC" ]; then pass "max GLIBC_$maxv <= $MAX_GLIBC"
else
    fail "needs GLIBC_$maxv > $MAX_GLIBC; newest symbols: $(readelf --dyn-syms -W "$BIN" \
        | grep -oE '[A-Za-z0-9_]+@GLIBC_[0-9.]+' | sort -t_ -k2 -V | tail -n5 | tr '\n' ' ')"
fi

# 4. Run it against trixie's libraries. Each run is bounded in time.
RUN_TIMEOUT=60
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/tmp"
run_target() {   # run_target ARGS...: the binary on the target libraries; its /tmp is $TMP/tmp
    if [ -n "$QEMU" ]; then
        # /tmp/x.json must exist on the host as well: map the target's /tmp via the argument.
        timeout "$RUN_TIMEOUT" "$QEMU" -L "$ROOT" "$BIN" "${@//\/tmp\//$TMP/tmp/}"
    else
        # Private mount namespace: /proc, /dev and /tmp inside the trixie sysroot, unmounted on exit.
        timeout "$RUN_TIMEOUT" unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
            root=$1; bin=$2; tmp=$3; shift 3
            mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root/opt/skywire-test"
            mount -t proc proc "$root/proc"; mount --rbind /dev "$root/dev"
            mount --bind "$tmp" "$root/tmp"; mount -t tmpfs tmpfs "$root/opt/skywire-test"
            cp "$bin" "$root/opt/skywire-test/skywire"
            exec chroot "$root" /opt/skywire-test/skywire "$@"' run "$ROOT" "$BIN" "$TMP/tmp" "$@"
    fi
}
how=$([ -n "$QEMU" ] && echo "$QEMU -L <trixie sysroot>" || echo "trixie chroot")
if run_target --help >"$TMP/help.out" 2>&1; then pass "runs ($how): skywire --help"
else fail "skywire --help failed ($how): $(head -c 400 "$TMP/help.out")"; fi
if run_target --version >"$TMP/ver.out" 2>&1 && grep -qE "[0-9]+\.[0-9]+" "$TMP/ver.out"; then pass "skywire --version: $(head -n1 "$TMP/ver.out")"
else fail "skywire --version failed: $(head -c 300 "$TMP/ver.out")"; fi
if run_target config gen -o /tmp/x.json >"$TMP/gen.out" 2>&1 && jq -e . "$TMP/tmp/x.json" >/dev/null 2>&1; then
    pass "skywire config gen -o /tmp/x.json wrote valid JSON"
else fail "skywire config gen -o /tmp/x.json failed: $(head -c 300 "$TMP/gen.out")"; fi

echo "cross-test $ARCH: $failures failure(s)"
exit $((failures > 0))
