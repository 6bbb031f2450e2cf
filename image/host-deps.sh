#!/usr/bin/env bash
# Installs the host packages image/build.sh and image/boot-test.sh need, and
# enables binfmt_misc for foreign-architecture chroots. Idempotent: apt-get
# runs only when something is missing.
set -euo pipefail
pkgs=(mmdebstrap debian-archive-keyring qemu-user-static binfmt-support arch-test
      qemu-system-arm qemu-system-x86 qemu-efi-aarch64 ovmf qemu-utils
      mtools dosfstools e2fsprogs fdisk xz-utils zstd bmap-tools jq openssl
      binutils coreutils tar git xxd python3 curl openssh-client rauc squashfs-tools
      u-boot-tools u-boot-qemu)  # mkimage (boot.scr); the U-Boot of QEMU virt (qemu-arm64-uboot)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "host-deps: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq || { echo "host-deps: apt-get update failed: check network access to the Debian mirror" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || { echo "host-deps: apt-get install ${missing[*]} failed: see the apt output above" >&2; exit 1; }
fi

# binfmt_misc lets mmdebstrap run foreign (e.g. arm64) maintainer scripts via qemu-user.
if [ "${1:-}" = "--binfmt" ] && [ -n "${2:-}" ]; then
    qemu_arch=$2
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || { echo "host-deps: cannot mount binfmt_misc (container without privileges?): run 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc' as root on the host" >&2; exit 1; }
    fi
    update-binfmts --enable "qemu-$qemu_arch" >/dev/null 2>&1 || true
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$qemu_arch" ] \
        || { echo "host-deps: binfmt for qemu-$qemu_arch is not registered: reinstall qemu-user-static and binfmt-support" >&2; exit 1; }
fi
