#!/usr/bin/env bash
# image/qemu-trixie.sh: a QEMU newer than the host's, for machines the host's QEMU lacks
# (`-M raspi4b` needs QEMU 9.0 or later; bookworm has 7.2, trixie 10.0).
#
#   image/qemu-trixie.sh path                  prints the cached chroot's directory (builds it once)
#   image/qemu-trixie.sh run DIR -- CMD ARGS   runs CMD (e.g. qemu-system-aarch64) in the chroot,
#                                              with DIR bind-mounted at the same path inside
#
# The chroot is a minimal Debian trixie amd64 tree (mmdebstrap, variant apt) with
# qemu-system-arm (and fdtput), cached as $SKYWIRE_BUILD_CACHE/qemu-trixie-amd64-<key>
# (key: suite, mirror and the package list below). It is built in a *.partial directory under a
# lock and renamed when complete, so a half-made tree is never used. Nothing is installed on the
# host; the command runs in a private mount namespace, so its mounts disappear with it.
set -euo pipefail
{
export LC_ALL=C.UTF-8
CACHE_DIR=${SKYWIRE_BUILD_CACHE:-/var/cache/skywire-build}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
QEMU_SUITE=trixie
# device-tree-compiler: fdtput, for the test-only device tree changes of image/boot-test-rpi4.sh.
QEMU_PACKAGES="qemu-system-arm device-tree-compiler"
# Bumped when the way the tree is made changes.
QEMU_RECIPE=1
die() { echo "qemu-trixie: $*" >&2; exit 1; }

chroot_dir() {
    local key
    key=$(printf 'recipe=%s\nsuite=%s\nmirror=%s\npackages=%s\n' "$QEMU_RECIPE" "$QEMU_SUITE" "$MIRROR" "$QEMU_PACKAGES" \
        | sha256sum | cut -c1-16)
    echo "$CACHE_DIR/qemu-$QEMU_SUITE-amd64-$key"
}

ensure_chroot() {
    local dir partial
    dir=$(chroot_dir)
    [ -x "$dir/usr/bin/qemu-system-aarch64" ] && [ -f "$dir/.complete" ] && { echo "$dir"; return 0; }
    [ "$(id -u)" = 0 ] || die "building $dir needs root (mmdebstrap --mode=root)"
    command -v mmdebstrap >/dev/null || die "mmdebstrap missing: run image/host-deps.sh"
    mkdir -p "$CACHE_DIR"
    exec 8>"$dir.lock"
    flock -w 3600 8 || die "timed out waiting for another build of $dir"
    if ! [ -f "$dir/.complete" ]; then
        partial=$dir.partial
        rm -rf "$partial"
        echo "qemu-trixie: building $dir ($QEMU_PACKAGES from $QEMU_SUITE)" >&2
        mmdebstrap --mode=root --variant=apt --arch=amd64 --format=directory \
            --include="${QEMU_PACKAGES// /,}" \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages' \
            "$QEMU_SUITE" "$partial" "$MIRROR" >&2 \
            || die "mmdebstrap of $QEMU_SUITE with $QEMU_PACKAGES failed (network access to $MIRROR?)"
        date -u +%Y-%m-%dT%H:%M:%SZ >"$partial/.complete"
        rm -rf "$dir"
        mv -T "$partial" "$dir"
        # Older trees (another package list or recipe) are not used any more.
        for old in "$CACHE_DIR/qemu-$QEMU_SUITE-amd64-"*; do
            [ "$old" = "$dir" ] || [[ $old == *.partial || $old == *.lock ]] || rm -rf "$old"
        done
    fi
    exec 8>&-
    echo "$dir"
}

case ${1:-} in
path)
    ensure_chroot
    ;;
run)
    shift
    bind=${1:?run needs a directory to bind}; shift
    [ "${1:-}" = -- ] && shift
    root=$(ensure_chroot)
    bind=$(cd "$bind" && pwd)
    # /dev is bind-mounted for /dev/null, /dev/urandom and the pty of -serial; /proc for QEMU's
    # own use. The work directory appears at the same path inside, so file names need no mapping.
    exec unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
        root=$1 bind=$2; shift 2
        mount --bind /proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mkdir -p "$root$bind"; mount --bind "$bind" "$root$bind"
        cd "$root$bind"
        exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
            /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$bind" "$@"
    ' qemu-trixie "$root" "$bind" "$@"
    ;;
*)
    echo "usage: $0 path | run DIR -- CMD [ARGS...]" >&2; exit 2 ;;
esac
exit
}
