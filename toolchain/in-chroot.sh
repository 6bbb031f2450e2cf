#!/usr/bin/env bash
# toolchain/in-chroot.sh ROOT CMD...: runs CMD in the chroot ROOT inside a private mount
# namespace, so every mount made here disappears when CMD ends (no cleanup to forget).
# Used by toolchain/common.sh (in_chroot: the sid compiler chroot) and image/build.sh
# (packages installed on top of the cached base rootfs).
#
# Environment: IN_CHROOT_BINDS="src:dst ..." extra bind mounts (dst relative to ROOT);
# IN_CHROOT_ENV="NAME=value ..." extra environment (no spaces inside values).
#
# /proc: a new proc instance is mounted first (mount -t proc, as chroot tools expect). On a
# fresh machine that mount once failed with "mount(2) system call failed: File name too long"
# and passed on the next run; when it fails, the error is reported and the host's /proc is
# bind-mounted instead (same mount namespace's view of the same PID namespace, so the chroot
# sees the same processes). Only when both fail does the command not run, with both causes.
set -euo pipefail
root=${1:?usage: in-chroot.sh ROOT CMD...}
shift
[ $# -gt 0 ] || { echo "in-chroot.sh: no command given" >&2; exit 2; }
[ -d "$root" ] || { echo "in-chroot.sh: $root is not a directory" >&2; exit 2; }

exec unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
    root=$1; shift
    mkdir -p "$root/proc" "$root/dev" "$root/tmp"
    if ! err=$(mount -t proc proc "$root/proc" 2>&1); then
        echo "in-chroot.sh: mounting a new /proc in $root failed (${err:-no message}); bind-mounting the host /proc instead" >&2
        if ! err2=$(mount --rbind /proc "$root/proc" 2>&1); then
            echo "in-chroot.sh: cannot provide /proc in $root: mount -t proc: ${err:-?}; mount --rbind /proc: ${err2:-?}" >&2
            exit 1
        fi
    fi
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/tmp"
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    for b in ${IN_CHROOT_BINDS:-}; do
        src=${b%%:*}; dst=$root${b#*:}
        mkdir -p "$dst"; mount --bind "$src" "$dst"
    done
    exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        LANG=C.UTF-8 TERM=dumb ${IN_CHROOT_ENV:-} "$@"
' in_chroot "$root" "$@"
