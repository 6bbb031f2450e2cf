#!/usr/bin/env bash
# make cross ARCH=<arch>: release build of `skywire` for ARCH with the pinned Debian Swift 6.2.3,
# Swift standard library linked statically, stripped, into out/<arch>/skywire (+ .sha256).
# The target needs only glibc (<= 2.38 symbols) and libsodium, libcrypto (OpenSSL 3), libnl-3, libnl-route-3, libmnl.
source "$(dirname "$0")/common.sh"
arch_vars "${1:?usage: build.sh ARCH}"
require_root
t0=$(date +%s)

step "toolchain" "see the FAILED message of the inner step above"
CHROOT="$("$TOOLCHAIN_DIR/make-chroot.sh")"
ENTRY="$("$TOOLCHAIN_DIR/make-sysroot.sh" "$ARCH")"
t1=$(date +%s)

OUT="$REPO_DIR/out/$ARCH"
SCRATCH=".build-cross-$ARCH"            # inside the source tree; ignored by .gitignore
PCDIRS="/cross/root/usr/lib/$GNU_TRIPLE/pkgconfig:/cross/root/usr/share/pkgconfig"
mkdir -p "$OUT" "$REPO_DIR/$SCRATCH/home"
rm -f "$OUT/skywire" "$OUT/skywire.sha256"   # a failed build must not leave an old binary behind
# SWIFT_RELEASE_FLAGS: the Makefile's release flags (run without make: read from the Makefile,
# the one place they are kept).
RELEASE_FLAGS=${SWIFT_RELEASE_FLAGS-$(make -s --no-print-directory -C "$REPO_DIR" release-flags)}
# Paths in them (the symbol ordering file) name the checkout, which the chroot sees at /src.
RELEASE_FLAGS=${RELEASE_FLAGS//"$(cd "$REPO_DIR" && pwd -P)"//src}
RELEASE_FLAGS=${RELEASE_FLAGS//"$REPO_DIR"//src}
# The chroot and sysroot are always mounted at the same paths, so SwiftPM cannot see that they
# changed, nor does the Swift driver recompile a module when only a -Xfrontend flag changed:
# start the scratch directory afresh (keeping only the git clones) when either did.
TOOLCHAIN_ID="$(basename "$CHROOT") $(basename "$ENTRY") $RELEASE_FLAGS"
if [ "$(cat "$REPO_DIR/$SCRATCH/toolchain-id" 2>/dev/null)" != "$TOOLCHAIN_ID" ]; then
    log "toolchain changed: clean rebuild in $SCRATCH"
    find "$REPO_DIR/$SCRATCH" -mindepth 1 -maxdepth 1 ! -name repositories ! -name home -exec rm -rf {} +
    echo "$TOOLCHAIN_ID" > "$REPO_DIR/$SCRATCH/toolchain-id"
fi
[ -d /opt/swift-packages ] || { CURRENT_HINT="create the local package mirrors (see /etc/gitconfig insteadOf rules)"; die "/opt/swift-packages missing"; }

step "sdk-bundle" ""
# Swift SDK bundle (SE-0387), regenerated each build; the sysroot is bind-mounted at /cross/root.
ID="skywire-$ARCH"
SDKS="$REPO_DIR/$SCRATCH/sdks"; B="$SDKS/$ID.artifactbundle"
rm -rf "$SDKS"; mkdir -p "$B/$ID"
cat > "$B/info.json" <<EOJ
{ "schemaVersion": "1.0",
  "artifacts": { "$ID": { "type": "swiftSDK", "version": "6.2.3",
                          "variants": [ { "path": "$ID" } ] } } }
EOJ
cat > "$B/$ID/swift-sdk.json" <<EOJ
{ "schemaVersion": "4.0",
  "targetTriples": { "$TRIPLE": {
      "sdkRootPath": "/cross/root",
      "swiftResourcesPath": "/cross/root/usr/lib/swift",
      "swiftStaticResourcesPath": "/cross/root/usr/lib/swift_static",
      "toolsetPaths": [ "toolset.json" ] } } }
EOJ
# ld.lld from the compiler; libgcc linked statically too (no libgcc_s.so.1 on the target).
cat > "$B/$ID/toolset.json" <<EOJ
{ "schemaVersion": "1.0",
  "linker": { "path": "/usr/libexec/swift/bin/ld.lld" },
  "swiftCompiler": { "extraCLIOptions": [ "-use-ld=lld", "-Xclang-linker", "-static-libgcc" ] } }
EOJ

# SwiftPM does not know the symbol ordering file and the linker script (Makefile,
# SWIFT_RELEASE_LINK_FLAGS) as inputs: a binary older than either is removed, so that the build
# links it again.
BIN="$REPO_DIR/$SCRATCH/$TRIPLE/release/skywire"
[ ! -f "$BIN" ] || { [ "$BIN" -nt "$REPO_DIR/bench/symbol-order.txt" ] && [ "$BIN" -nt "$REPO_DIR/bench/text-unnamed.ld" ]; } \
    || rm -f "$BIN"

step "compile-$ARCH" "read the compiler errors above; the code must compile with Swift 6.2.3 (no 6.3-only features). Full log: $OUT/build.log"
export IN_CHROOT_BINDS="$REPO_DIR:/src $ENTRY:/cross /opt/swift-packages:/opt/swift-packages"
export IN_CHROOT_ENV="HOME=/src/$SCRATCH/home PKG_CONFIG_PATH=$PCDIRS PKG_CONFIG_LIBDIR=$PCDIRS PKG_CONFIG_SYSROOT_DIR=/cross/root"
log "swift build -c release --static-swift-stdlib $RELEASE_FLAGS for $TRIPLE (log: $OUT/build.log)"
if ! in_chroot "$CHROOT/root" /bin/sh -c "cd /src && swift build -c release --static-swift-stdlib $RELEASE_FLAGS \
        --swift-sdks-path /src/$SCRATCH/sdks --swift-sdk skywire-$ARCH \
        --scratch-path /src/$SCRATCH --product skywire" >"$OUT/build.log" 2>&1; then
    grep -E 'error:|warning: .*unable|failed' "$OUT/build.log" | head -n 40 >&2 || tail -n 40 "$OUT/build.log" >&2
    die "swift build failed for $ARCH"
fi
t2=$(date +%s)

step "strip-$ARCH" ""
[ -f "$BIN" ] || die "build succeeded but $BIN is missing"
in_chroot "$CHROOT/root" /usr/libexec/swift/bin/llvm-objcopy --strip-all \
    "/src/$SCRATCH/$TRIPLE/release/skywire" "/src/out/$ARCH/skywire.tmp"
mv -f "$OUT/skywire.tmp" "$OUT/skywire"
(cd "$OUT" && sha256sum skywire > skywire.sha256)
{
  echo "arch: $ARCH ($TRIPLE)"
  echo "compiler: $(head -n1 "$CHROOT/swift-version.txt")"
  echo "chroot: $(basename "$CHROOT")   sysroot: $(basename "$ENTRY")"
  echo "source: $(git -C "$REPO_DIR" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$REPO_DIR" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "sysroot pins:"; sed 's/^/  /' "$(sysroot_pins)"
  echo "swift pins:"; sed 's/^/  /' "$(swift_pins)"
  echo "chroot packages:"; sed 's/^/  /' "$CHROOT/manifest.txt"
} > "$OUT/build-info.txt"
log "toolchain $((t1-t0)) s, compile $((t2-t1)) s; $(stat -c %s "$OUT/skywire") bytes: $OUT/skywire"
cat "$OUT/skywire.sha256"
