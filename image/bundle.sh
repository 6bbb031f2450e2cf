#!/usr/bin/env bash
# image/bundle.sh: a signed rauc update bundle for one board (docs/update.md). `make bundle BOARD=...`.
#
#   BOARD=qemu-arm64-ab [VERSION=...] [OVERLAYS=...] [SKYWIRE_BIN=...] [OUT_DIR=out/BOARD-bundle] image/bundle.sh
#   BOARD=... VERSION=... ROOTFS=root.ext4 OUT_DIR=... image/bundle.sh      (an existing root filesystem)
#
# Builds the board's image with BUNDLE=1 (image/build.sh: the same rootfs cache, steps and checks;
# it also leaves the root filesystem as <name>.rootfs.ext4), then the bundle OUT_DIR/<name>.raucb:
# rauc's "verity" format (a squashfs with the manifest and the root filesystem image, a dm-verity
# hash tree, a CMS signature), compatible "skywire-BOARD", version VERSION, signed with
# UPDATE_CERT/UPDATE_KEY (default: the development key of image/update-key.sh).
# MKSQUASHFS_ARGS: passed to rauc's mksquashfs (update-test: "-comp lzo", faster than the default xz).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
board=${BOARD:-qemu-arm64-ab}
export OUT_DIR=${OUT_DIR:-$REPO/out/$board-bundle}
if [ -n "${ROOTFS:-}" ]; then
    # An existing root filesystem (ROOTFS=path VERSION=v): bundled as it is, no build.
    rootfs=$ROOTFS version=${VERSION:?VERSION= is needed with ROOTFS=}
    name=skywire-$board-$version
    mkdir -p "$OUT_DIR"
else
    BOARD=$board BUNDLE=1 "$REPO/image/build.sh"
    rootfs=$(ls -t "$OUT_DIR"/skywire-"$board"-*.rootfs.ext4 2>/dev/null | head -n1)
    [ -n "$rootfs" ] || { echo "bundle: image/build.sh left no root filesystem in $OUT_DIR" >&2; exit 1; }
    name=$(basename "$rootfs" .rootfs.ext4)
    version=${name#skywire-"$board"-}
fi
out=$OUT_DIR/$name.raucb
cert=${UPDATE_CERT:-$("$REPO/image/update-key.sh" cert)}
key=${UPDATE_KEY:-$("$REPO/image/update-key.sh" key)}
command -v rauc >/dev/null || { echo "bundle: rauc missing: run image/host-deps.sh" >&2; exit 1; }
[ -f "$rootfs" ] || { echo "bundle: no root filesystem $rootfs" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/skywire-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
cp --sparse=always "$rootfs" "$work/content/rootfs.ext4"
cat >"$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=skywire-$board
version=$version
description=skywire $version for $board

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out" "$out.partial"
t0=$(date +%s)
rauc bundle --cert="$cert" --key="$key" ${MKSQUASHFS_ARGS:+--mksquashfs-args="$MKSQUASHFS_ARGS"} "$work/content" "$out.partial" >"$work/rauc.log" 2>&1 \
    || { cat "$work/rauc.log" >&2; echo "bundle: rauc bundle failed" >&2; exit 1; }
mv -f "$out.partial" "$out"
ln -sfn "$name.raucb" "$OUT_DIR/skywire-$board-latest.raucb"
echo "bundle: $out ($(stat -c %s "$out") bytes, compatible skywire-$board, version $version, signed by $(openssl x509 -in "$cert" -noout -subject | sed 's/^subject=//'), $(($(date +%s) - t0)) s)" >&2
