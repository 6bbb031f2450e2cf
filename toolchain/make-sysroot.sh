#!/usr/bin/env bash
# Builds (once) the target sysroot for ARCH:
#   $SKYWIRE_CACHE/sysroot-trixie-<debarch>-<hash>/
#       root/                  trixie libraries + headers, sid Swift target runtime
#       debs.sha256            the exact .deb files it was made from
#       .complete              written last
# (The Swift SDK bundle that points at it is written by build.sh on every build.)
# Every package is pinned (toolchain/pins/); nothing is configured or executed for the target
# (packages are only unpacked with dpkg-deb -x), so no emulation is needed.
# Prints the entry path on stdout.
source "$(dirname "$0")/common.sh"
arch_vars "${1:?usage: make-sysroot.sh ARCH}"
require_root

cache_lock
ENTRY="$(sysroot_path)"
if [ -f "$ENTRY/$STAMP" ]; then log "sysroot cached: $ENTRY"; echo "$ENTRY"; exit 0; fi
mkdir -p "$CACHE_DIR"
TMP="$(mktemp -d "$CACHE_DIR/.tmp-sysroot-$DEB_ARCH.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
ROOT="$TMP/root"; mkdir -p "$ROOT" "$TMP/debs"

step "sysroot-download-$TARGET_SUITE-$DEB_ARCH" "a pinned version is missing from $DEBIAN_MIRROR (trixie point release?): run toolchain/update-pins.sh $ARCH and commit the pins, or set SKYWIRE_DEBIAN_MIRROR to a snapshot.debian.org URL that has them"
apt_setup "$TMP/apt-target" "$TARGET_SUITE" "$DEB_ARCH"
mapfile -t pkgs < <(pin_words "$(sysroot_pins)")
(cd "$TMP/debs" && apt_run "$TMP/apt-target" apt-get -qq download "${pkgs[@]/=/:$DEB_ARCH=}") \
    || die "apt-get download of the pinned $TARGET_SUITE packages failed"

step "sysroot-download-swift-$DEB_ARCH" "swiftlang/libswiftlang for $DEB_ARCH at the pinned version are missing from $DEBIAN_MIRROR: set SKYWIRE_DEBIAN_MIRROR to a snapshot.debian.org URL that has them, or update toolchain/pins/ (compiler and target runtime must match)"
apt_setup "$TMP/apt-swift" "$COMPILER_SUITE" "$DEB_ARCH"
mapfile -t spkgs < <(pin_words "$(swift_pins)")
mkdir -p "$TMP/swiftdebs"
(cd "$TMP/swiftdebs" && apt_run "$TMP/apt-swift" apt-get -qq download "${spkgs[@]/=/:$DEB_ARCH=}") \
    || die "apt-get download of swiftlang:$DEB_ARCH failed"
(cd "$TMP" && sha256sum debs/*.deb swiftdebs/*.deb > debs.sha256)

step "sysroot-extract" "a downloaded .deb is corrupt; delete $TMP and rerun"
for d in "$TMP"/debs/*.deb; do dpkg-deb -x "$d" "$ROOT"; done
# Swift target runtime only: stdlib/Foundation modules, shims, static libraries, clang headers.
# (The compiler binaries, lldb, sourcekit, embedded and host-plugin trees are not needed.)
lx=./usr/libexec/swift/lib
for d in "$TMP"/swiftdebs/*.deb; do
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$ROOT" --wildcards \
        --exclude="$lx/swift/host" --exclude="$lx/swift/embedded" --exclude="$lx/swift_static/embedded" \
        --exclude="$lx/swift/pm" --exclude="$lx/swift/FrameworkABIBaseline" --exclude="$lx/swift/migrator" \
        --exclude='*.swiftdoc' --exclude='*.abi.json' \
        "$lx/swift" "$lx/swift_static" "$lx/clang/*/include" \
        "$lx/clang/*/lib/linux/libclang_rt.builtins-*" "$lx/clang/*/lib/linux/clang_rt.crt*" \
        2>"$TMP/tar.err" || true
    # libswiftlang has no clang tree: "Not found in archive" is expected, anything else is not.
    if grep -vE 'Not found in archive|Exiting with failure status' "$TMP/tar.err" >&2; then
        die "extracting $(basename "$d") failed"
    fi
done
[ -f "$ROOT/usr/libexec/swift/lib/swift_static/linux/libswiftCore.a" ] || die "libswiftCore.a missing after extraction"

step "sysroot-layout" ""
# Merged /usr like an installed trixie system, and the static Swift tree where the driver looks.
ln -sfn usr/lib "$ROOT/lib"
[ "$DEB_ARCH" = amd64 ] && { mkdir -p "$ROOT/usr/lib64"; ln -sfn usr/lib64 "$ROOT/lib64"; }
ln -sfn ../libexec/swift/lib/swift "$ROOT/usr/lib/swift"
ln -sfn ../libexec/swift/lib/swift_static "$ROOT/usr/lib/swift_static"
# Absolute symlinks would point into the build host; make them relative to the sysroot.
while IFS= read -r -d '' l; do
    t=$(readlink "$l"); ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$ROOT$t")" "$l"
done < <(find "$ROOT" -type l -lname '/*' -print0)

step "sysroot-trim" ""
rm -rf "$ROOT"/usr/share/{doc,man,info,locale,lintian,bug,gcc,gdb} "$ROOT"/usr/bin "$ROOT"/usr/sbin \
       "$ROOT"/etc "$ROOT"/usr/lib/"$GNU_TRIPLE"/gconv "$ROOT"/usr/libexec/gcc
# Sanitizer/OpenMP/TM runtimes come in as dependencies of libgcc-14-dev; nothing links them.
rm -f "$ROOT"/usr/lib/"$GNU_TRIPLE"/lib{asan,lsan,tsan,ubsan,hwasan,gomp,itm}.so* \
      "$ROOT"/usr/lib/gcc/"$GNU_TRIPLE"/*/lib{asan,lsan,tsan,ubsan,hwasan,gomp,itm}*
# Link libstdc++ statically (the Swift runtime's -lstdc++ then resolves to libstdc++.a),
# so the binary does not need libstdc++.so.6 on the target.
rm -f "$ROOT"/usr/lib/gcc/"$GNU_TRIPLE"/*/libstdc++.so
# Drop the other architectures' clang runtimes (none should be present) and unused Swift bits.
rm -rf "$ROOT"/usr/libexec/swift/lib/swift/linux/lib_InternalSwiftStaticMirror.so \
       "$ROOT"/usr/libexec/swift/lib/swift/linux/{XCTest,Testing}.swiftmodule \
       "$ROOT"/usr/libexec/swift/lib/swift/linux/lib{XCTest,Testing,swiftRemoteMirror}.so
# The dynamic Swift runtime (*.so in lib/swift/linux) is not used with --static-swift-stdlib
# (that is why libswiftlang, which holds only those, is not in the pins).
rm -f "$ROOT"/usr/libexec/swift/lib/swift/linux/*.so

# Keep only the sysroot and the list of .deb files it came from (the .debs are ~0.8 GB).
rm -rf "$TMP"/{debs,swiftdebs,apt-target,apt-swift,tar.err}
du -sh "$ROOT" | awk '{print "sysroot size: "$1}' >&2
finish_cache "$TMP" "$ENTRY"
trap - EXIT
log "sysroot ready: $ENTRY"
echo "$ENTRY"
