#!/usr/bin/env bash
# image/build.sh: builds a ready-to-flash skywire image for one board.
#
#   BOARD=qemu-arm64 OVERLAYS=base,vpn-exit,socks-proxy image/build.sh
#
# Steps: host packages -> board config -> skywire binary -> base rootfs
# (mmdebstrap, cached) -> stage rootfs -> overlays -> boot partition ->
# filesystems -> disk image -> compress + checksums + manifest.
# No loop mounts: filesystems are made with mkfs.ext4 -d and mtools, then
# copied into the disk image with dd. See docs/boards.md.
set -euo pipefail
# The whole script is one compound command, so bash parses it completely before running:
# editing this file while a build runs cannot change the running build.
{
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

REPO=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${BOARD:-qemu-arm64}
CACHE_DIR=${SKYWIRE_BUILD_CACHE:-/var/cache/skywire-build}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-trixie}
OUT_DIR=${OUT_DIR:-$REPO/out/$BOARD}
# Bumped whenever the way the base rootfs is made changes (invalidates the cache).
ROOTFS_RECIPE=4
# Archive components of every base rootfs (boards pick theirs among these with COMPONENTS).
BASE_COMPONENTS="main non-free-firmware"
# Installed on top of the base on A/B boards (docs/update.md): the update engine (rauc-service: its
# D-Bus service, which `rauc install` and `rauc status` talk to).
UPDATE_PACKAGES="rauc rauc-service"
# The fleet's update keyring (X.509 PEM, the public half of the fleet key) built into A/B images;
# default: the development key under the cache (image/update-key.sh makes it). docs/update.md.
UPDATE_KEYRING=${UPDATE_KEYRING:-}
# Timestamp for the files of the cached base rootfs (2025-11-23T12:13:20Z).
DEFAULT_ROOTFS_EPOCH=1763900000
# Sizes and offsets are in MiB; the disk image adds this much after the last partition
# (GPT keeps a backup header there).
TAIL_MIB=1
# How long systemd waits for the boot partition's device (fstab x-systemd.device-timeout; its
# default is 90 s). The boards boot from that partition and the root is on the same disk, so the
# device is there: the wait only covers a late udevd (first boot: it starts after
# systemd-sysusers and systemd-tmpfiles-setup-dev). Under QEMU's raspi4b on a loaded host udevd
# started 2 min, then over 5 min after the wait began (docs/boards.md).
BOOT_DEVICE_TIMEOUT=15min
XZ_LEVEL=${XZ_LEVEL:-6}

STEP=start
HINT=""
step() { STEP=$1; HINT=${3:-}; echo "==> [$STEP] $2" >&2; }
die() { echo "image/build.sh: step '$STEP' failed: $*" >&2; exit 1; }
on_exit() {
    local rc=$?
    if ((rc != 0)); then
        echo "image/build.sh: FAILED in step '$STEP' (exit $rc).${HINT:+ What to do: $HINT}" >&2
    fi
    [ -n "${WORK:-}" ] && [ -d "$WORK" ] && [ -z "${KEEP_WORK:-}" ] && rm -rf "$WORK"
    return $rc
}
trap on_exit EXIT

. "$REPO/image/board-conf.sh"

# Reads a packages file: one name per line, '#' comments.
read_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$' || true; }

# Deterministic UUID from a label (so two builds of the same inputs match).
det_uuid() {
    local h
    h=$(printf '%s' "$1" | sha256sum | cut -c1-32)
    printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}

# ---------------------------------------------------------------------------
step host-deps "installing host packages" "run 'image/host-deps.sh' by hand and read its output"
"$REPO/image/host-deps.sh"

step board-config "reading board-configs/$BOARD.conf" "pick one of: $(cd "$REPO/board-configs" && ls | sed 's/\.conf$//' | tr '\n' ' ')"
CONF_FILE=$REPO/board-configs/$BOARD.conf
[ -f "$CONF_FILE" ] || die "no board config $CONF_FILE"
board_conf_defaults
load_conf "$CONF_FILE"
for k in DEB_ARCH SKYWIRE_ARCH BOOTLOADER CONSOLE PARTITION_TABLE FIRST_PARTITION_OFFSET_MIB \
         BOOT_SIZE_MIB ROOT_SIZE_MIB DEFAULT_OVERLAYS; do
    v="CONF_$k"; [ -n "${!v:-}" ] || die "$CONF_FILE: $k is not set"
done
case $CONF_BOOTLOADER in systemd-boot|rpi-firmware|u-boot-extlinux|u-boot-script) ;;
    *) die "$CONF_FILE: unknown BOOTLOADER '$CONF_BOOTLOADER' (systemd-boot, rpi-firmware, u-boot-extlinux, u-boot-script)";; esac
case $CONF_PARTITION_TABLE in gpt|dos) ;; *) die "$CONF_FILE: PARTITION_TABLE must be gpt or dos";; esac
# A/B root slots and signed updates (docs/update.md): systemd-boot (GPT) and U-Boot script boards
# (GPT, or MBR for the Pi, whose firmware reads only MBR).
case $CONF_AB_SLOTS in no) ;; yes) [[ ($CONF_BOOTLOADER == systemd-boot && $CONF_PARTITION_TABLE == gpt) || $CONF_BOOTLOADER == u-boot-script ]] \
        || die "$CONF_FILE: AB_SLOTS=yes needs BOOTLOADER=u-boot-script, or systemd-boot with PARTITION_TABLE=gpt (docs/update.md)";;
    *) die "$CONF_FILE: AB_SLOTS must be yes or no";; esac
# UBOOT_LOADER: what starts U-Boot: empty (the SoC's boot ROM, UBOOT_BLOBS on raw sectors, or QEMU's
# -bios) or rpi-firmware (the Pi's GPU firmware, config.txt kernel=u-boot.bin; image/ab-uboot.sh).
case $CONF_UBOOT_LOADER in "") ;; rpi-firmware) [ "$CONF_BOOTLOADER" = u-boot-script ] && [ "$CONF_PARTITION_TABLE" = dos ] \
        || die "$CONF_FILE: UBOOT_LOADER=rpi-firmware needs BOOTLOADER=u-boot-script and PARTITION_TABLE=dos";;
    *) die "$CONF_FILE: UBOOT_LOADER must be empty or rpi-firmware";; esac
# u-boot-script: U-Boot runs the A/B boot script (image/ab-uboot.sh), so only with A/B slots.
[ "$CONF_BOOTLOADER" != u-boot-script ] || [ "$CONF_AB_SLOTS" = yes ] || die "$CONF_FILE: BOOTLOADER=u-boot-script needs AB_SLOTS=yes"
case $CONF_DEB_ARCH in arm64) QEMU_ARCH=aarch64; ELF_MACHINE=AArch64;; amd64) QEMU_ARCH=x86_64; ELF_MACHINE=X86-64;;
    *) die "$CONF_FILE: DEB_ARCH '$CONF_DEB_ARCH' not supported (arm64, amd64)";; esac
ROOT_SIZE_MIB=${ROOT_SIZE_MIB:-$CONF_ROOT_SIZE_MIB}

OVERLAYS=${OVERLAYS:-$CONF_DEFAULT_OVERLAYS}
IFS=, read -r -a OVERLAY_LIST <<<"$OVERLAYS"
[ "${OVERLAY_LIST[0]:-}" = base ] || die "OVERLAYS must start with 'base' (got '$OVERLAYS')"
for o in "${OVERLAY_LIST[@]}"; do
    [ -d "$REPO/overlays/$o" ] || die "unknown overlay '$o' (have: $(ls "$REPO/overlays" | tr '\n' ' '))"
done

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || stat -c %Y "$CONF_FILE")
fi
export SOURCE_DATE_EPOCH
VERSION=${VERSION:-$(git -C "$REPO" describe --tags --always --dirty 2>/dev/null || echo 0)}
VERSION=${VERSION//\//-}
echo "    board=$BOARD arch=$CONF_DEB_ARCH overlays=$OVERLAYS version=$VERSION SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" >&2

if [ "$CONF_DEB_ARCH" != "$(dpkg --print-architecture)" ]; then
    step binfmt "enabling qemu-$QEMU_ARCH in binfmt_misc" \
        "as root: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-$QEMU_ARCH"
    "$REPO/image/host-deps.sh" --binfmt "$QEMU_ARCH"
    arch-test "$CONF_DEB_ARCH" >/dev/null || die "arch-test cannot run $CONF_DEB_ARCH binaries through binfmt_misc"
fi

# ---------------------------------------------------------------------------
step rootfs "base rootfs for $SUITE/$CONF_DEB_ARCH" \
    "check network access to $MIRROR; remove $CACHE_DIR/rootfs/*.partial; rerun. mmdebstrap's log is printed above"
# One base rootfs per architecture: the base overlay's packages and the board's kernel (the
# same kernel package for every board of an architecture). Everything else (the other overlays'
# packages, firmware, bootloader, EXTRA_PACKAGES) is installed on top of a copy of it in the
# stage step, so boards and overlay sets share one cached mmdebstrap.
BASE_PACKAGES=$( { read_packages "$REPO/overlays/base/packages"; for p in $CONF_KERNEL_PACKAGES; do echo "$p"; done
                } | LC_ALL=C sort -u | tr '\n' ' ')
BASE_PACKAGES=${BASE_PACKAGES% }
ALL_PACKAGES=$( { for o in "${OVERLAY_LIST[@]}"; do [ -f "$REPO/overlays/$o/packages" ] && read_packages "$REPO/overlays/$o/packages"; done
                 for p in $CONF_KERNEL_PACKAGES $CONF_FIRMWARE_PACKAGES $CONF_BOOTLOADER_PACKAGES $CONF_EXTRA_PACKAGES; do echo "$p"; done
                 [ "$CONF_AB_SLOTS" = no ] || for p in $UPDATE_PACKAGES; do echo "$p"; done
               } | LC_ALL=C sort -u)
# Packages installed on top of the base: ALL minus BASE.
TOP_PACKAGES=$(comm -23 <(echo "$ALL_PACKAGES") <(tr ' ' '\n' <<<"$BASE_PACKAGES" | LC_ALL=C sort -u) | tr '\n' ' ')
TOP_PACKAGES=${TOP_PACKAGES% }
# The base's apt sources carry every component a board may need, so that firmware from
# non-free-firmware can be installed on top; a board's COMPONENTS must be among them.
for c in $CONF_COMPONENTS; do
    [[ " $BASE_COMPONENTS " == *" $c "* ]] || die "$CONF_FILE: COMPONENTS '$c' is not in the base rootfs's components ($BASE_COMPONENTS)"
done
# The rootfs gets its own fixed epoch (a constant, part of the cache key) so that image
# version bumps reuse the cached rootfs; every file added later is clamped to SOURCE_DATE_EPOCH.
ROOTFS_EPOCH=${ROOTFS_EPOCH:-$DEFAULT_ROOTFS_EPOCH}
ROOTFS_KEY=$(printf 'recipe=%s\nsuite=%s\narch=%s\nmirror=%s\ncomponents=%s\nepoch=%s\npackages=%s\n' \
    "$ROOTFS_RECIPE" "$SUITE" "$CONF_DEB_ARCH" "$MIRROR" "$BASE_COMPONENTS" "$ROOTFS_EPOCH" "$BASE_PACKAGES" \
    | sha256sum | cut -c1-16)
ROOTFS_TAR=$CACHE_DIR/rootfs/$SUITE-$CONF_DEB_ARCH-base-$ROOTFS_KEY.tar.zst
mkdir -p "$CACHE_DIR/rootfs"
exec 9>"$CACHE_DIR/rootfs/.lock-$ROOTFS_KEY"
flock -w 3600 9 || die "timed out waiting for another build of the same rootfs (lock $CACHE_DIR/rootfs/.lock-$ROOTFS_KEY)"
if [ -f "$ROOTFS_TAR" ]; then
    echo "    cached: $ROOTFS_TAR" >&2
else
    partial=$ROOTFS_TAR.partial
    rm -f "$partial" "$partial.tar"
    echo "    building $ROOTFS_TAR (packages: $BASE_PACKAGES)" >&2
    # initramfs: all storage drivers (the image must boot on any board of the family), zstd.
    SOURCE_DATE_EPOCH=$ROOTFS_EPOCH mmdebstrap \
        --mode=root --variant=apt --arch="$CONF_DEB_ARCH" --format=tar \
        --components="${BASE_COMPONENTS// /,}" \
        --include="${BASE_PACKAGES// /,}" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/boot/firmware"' \
        --essential-hook='printf "MODULES=most\nCOMPRESS=zstd\n" > "$1/etc/initramfs-tools/conf.d/skywire.conf"' \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub' \
        --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages "$1"/var/lib/apt/lists/*_Sources' \
        "$SUITE" "$partial.tar" "$MIRROR"
    zstd -q -T2 -12 --rm "$partial.tar" -o "$partial"
    sync "$partial"
    mv -f "$partial" "$ROOTFS_TAR"        # atomic: a tarball under its final name is complete
fi
exec 9>&-

[ "${STOP_AFTER:-}" = rootfs ] && { STEP=done; echo "==> rootfs ready: $ROOTFS_TAR" >&2; exit 0; }

# ---------------------------------------------------------------------------
step skywire-binary "getting the $CONF_SKYWIRE_ARCH skywire binary" \
    "build it with 'make cross ARCH=$CONF_SKYWIRE_ARCH' and read its errors, or pass SKYWIRE_BIN=/path/to/skywire"
if [ -z "${SKYWIRE_BIN:-}" ]; then
    make -C "$REPO" cross ARCH="$CONF_SKYWIRE_ARCH"
    SKYWIRE_BIN=$REPO/out/$CONF_SKYWIRE_ARCH/skywire
fi
[ -f "$SKYWIRE_BIN" ] || die "no skywire binary at $SKYWIRE_BIN"
if head -c 4 "$SKYWIRE_BIN" | grep -q 'ELF'; then
    machine=$(readelf -h "$SKYWIRE_BIN" | sed -n 's/^ *Machine: *//p')
    [[ $machine == *"$ELF_MACHINE"* || ($ELF_MACHINE == X86-64 && $machine == *X86-64*) ]] \
        || die "$SKYWIRE_BIN is built for '$machine', board $BOARD needs $ELF_MACHINE"
else
    echo "    warning: $SKYWIRE_BIN is not an ELF binary (a test stand-in?)" >&2
fi

# The finished image is reused when none of its inputs changed (FORCE=1 rebuilds).
BASENAME=skywire-$BOARD-$VERSION
if [ "$CONF_AB_SLOTS" = yes ]; then
    step update-keyring "the update keyring" "UPDATE_KEYRING=/path/to/fleet-cert.pem, or image/update-key.sh for the dev key"
    [ -n "$UPDATE_KEYRING" ] || UPDATE_KEYRING=$("$REPO/image/update-key.sh" cert)
    grep -q -- '-----BEGIN CERTIFICATE-----' "$UPDATE_KEYRING" 2>/dev/null || die "UPDATE_KEYRING $UPDATE_KEYRING is not a PEM certificate"
fi
IMAGE_KEY=$( { echo "$ROOTFS_KEY $OVERLAYS $VERSION $SOURCE_DATE_EPOCH ${ROOT_SIZE_MIB} ${BUNDLE:-}"
               [ "$CONF_AB_SLOTS" = no ] || sha256sum "$UPDATE_KEYRING" | cut -d' ' -f1
               sha256sum "$SKYWIRE_BIN" | cut -d' ' -f1
               # (the QEMU test scripts image/*test*.sh are not inputs of the image)
               (cd "$REPO" && find image overlays "board-configs/$BOARD.conf" docs/boards.md docs/update.md -type f \
                   ! -path 'image/*test*.sh' 2>/dev/null \
                   | LC_ALL=C sort | xargs sha256sum); } | sha256sum | cut -c1-16)
# BUNDLE=1 (image/bundle.sh) makes the root filesystem only, not the compressed disk image.
CACHED_OUTPUT=$OUT_DIR/$BASENAME.img.xz
[ "$XZ_LEVEL" != none ] || CACHED_OUTPUT=$OUT_DIR/$BASENAME.img
[ -z "${BUNDLE:-}" ] || CACHED_OUTPUT=$OUT_DIR/$BASENAME.rootfs.ext4
if [ -z "${FORCE:-}" ] && [ -f "$CACHED_OUTPUT" ] && [ "$(cat "$OUT_DIR/.image-key" 2>/dev/null)" = "$IMAGE_KEY" ]; then
    STEP=done
    echo "==> cached: $CACHED_OUTPUT (inputs unchanged; FORCE=1 rebuilds)" >&2
    exit 0
fi

# ---------------------------------------------------------------------------
step stage "unpacking the rootfs" "free space under $CACHE_DIR/work; KEEP_WORK=1 keeps the work directory for inspection"
mkdir -p "$CACHE_DIR/work"
WORK=$(mktemp -d "$CACHE_DIR/work/$BOARD.XXXXXX")
ROOT=$WORK/root BOOT=$WORK/boot
mkdir -p "$ROOT" "$BOOT"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -xpf "$ROOTFS_TAR" --zstd

if [ -n "$TOP_PACKAGES" ]; then
    step packages "installing on top of the base rootfs: $TOP_PACKAGES" \
        "check network access to $MIRROR and the package names in $CONF_FILE / overlays/*/packages; apt's output is above"
    # apt runs inside the copy (foreign architectures through qemu-user/binfmt) with its package
    # lists and downloaded .debs kept in the cache, bind-mounted (so neither lands in the image).
    APT_CACHE=$CACHE_DIR/apt/$SUITE-$CONF_DEB_ARCH
    mkdir -p "$APT_CACHE/lists/partial" "$APT_CACHE/archives/partial"
    # dpkg and apt logs of this step would differ on every build: the base's are kept.
    saved_logs=$WORK/saved-logs
    mkdir -p "$saved_logs"
    for f in var/log/dpkg.log var/log/alternatives.log var/log/apt/history.log var/log/apt/term.log; do
        [ -f "$ROOT/$f" ] && install -D -m 0644 "$ROOT/$f" "$saved_logs/$f"
    done
    printf '#!/bin/sh\n# image/build.sh: no service starts while packages are installed\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    resolv_saved=$WORK/resolv.conf.saved
    cp -a "$ROOT/etc/resolv.conf" "$resolv_saved" 2>/dev/null || rm -f "$resolv_saved"
    rm -f "$ROOT/etc/resolv.conf"      # may be a dangling link to systemd-resolved's file
    exec 8>"$CACHE_DIR/apt/.lock-$SUITE-$CONF_DEB_ARCH"
    flock -w 3600 8 || die "timed out waiting for another build using $APT_CACHE"
    IN_CHROOT_BINDS="$APT_CACHE/lists:/var/lib/apt/lists $APT_CACHE/archives:/var/cache/apt/archives" \
    IN_CHROOT_ENV="DEBIAN_FRONTEND=noninteractive" \
        "$REPO/toolchain/in-chroot.sh" "$ROOT" /bin/sh -ec "
            apt-get -q update
            apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends install $TOP_PACKAGES" \
        || die "apt-get install $TOP_PACKAGES failed in the rootfs copy"
    exec 8>&-
    rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
    rm -f "$ROOT/etc/resolv.conf"
    [ -e "$resolv_saved" ] || [ -L "$resolv_saved" ] && cp -a "$resolv_saved" "$ROOT/etc/resolv.conf"
    for f in var/log/dpkg.log var/log/alternatives.log var/log/apt/history.log var/log/apt/term.log; do
        if [ -f "$saved_logs/$f" ]; then cp "$saved_logs/$f" "$ROOT/$f"; else rm -f "$ROOT/$f"; fi
    done
    rm -f "$ROOT/var/log/apt/eipp.log.xz"
    STEP=stage
fi
install -D -m 0755 -o root -g root "$SKYWIRE_BIN" "$ROOT/usr/bin/skywire"

KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
[ -n "$KVER" ] && [ -f "$ROOT/boot/vmlinuz-$KVER" ] || die "no kernel in the rootfs (KERNEL_PACKAGES='$CONF_KERNEL_PACKAGES')"
[ -f "$ROOT/boot/initrd.img-$KVER" ] || die "no initrd for kernel $KVER (initramfs-tools failed inside mmdebstrap?)"

# Partition identities: deterministic from board + version so rebuilds are identical.
ID_SEED="skywire:$BOARD:$VERSION:$SOURCE_DATE_EPOCH"
DISK_UUID=$(det_uuid "$ID_SEED:disk")
BOOT_PARTUUID=$(det_uuid "$ID_SEED:boot-part")
ROOT_PARTUUID=$(det_uuid "$ID_SEED:root-part")
ROOT_B_PARTUUID=$(det_uuid "$ID_SEED:root-b-part")
ROOT_FS_UUID=$(det_uuid "$ID_SEED:root-fs")
ROOT_HASH_SEED=$(det_uuid "$ID_SEED:root-hash")
BOOT_VOLID=$(printf '%s' "$ID_SEED:boot-fs" | sha256sum | cut -c1-8)
DOS_DISK_ID=0x$(printf '%s' "$ID_SEED:dos" | sha256sum | cut -c1-8)
if [ "$CONF_PARTITION_TABLE" = dos ]; then
    # MBR partitions are named <disk id>-<partition number>; MBR has no partition names, so rauc
    # finds the slots by these too.
    ROOT_REF="PARTUUID=${DOS_DISK_ID#0x}-02"
    BOOT_REF="PARTUUID=${DOS_DISK_ID#0x}-01"
    SLOT_A_DEV=/dev/disk/by-partuuid/${DOS_DISK_ID#0x}-02 SLOT_B_DEV=/dev/disk/by-partuuid/${DOS_DISK_ID#0x}-03
else
    ROOT_REF="PARTUUID=$ROOT_PARTUUID"
    BOOT_REF="PARTUUID=$BOOT_PARTUUID"
    SLOT_A_DEV=/dev/disk/by-partlabel/root-a SLOT_B_DEV=/dev/disk/by-partlabel/root-b
fi
KERNEL_CMDLINE="root=$ROOT_REF rw rootwait fsck.repair=yes"
for c in $CONF_CONSOLE; do KERNEL_CMDLINE+=" console=$c"; done
KERNEL_CMDLINE+=" ${CONF_KERNEL_ARGS:-}"
# A/B: the slot for rauc (which slot is booted), and a reboot 10 s after a panic, so that a
# kernel that cannot mount its root falls back to the other slot (docs/update.md).
[ "$CONF_AB_SLOTS" = no ] || KERNEL_CMDLINE+=" rauc.slot=A panic=10"
KERNEL_CMDLINE=${KERNEL_CMDLINE% }

# ---------------------------------------------------------------------------
. "$REPO/image/ab-slots.sh"
. "$REPO/image/ab-uboot.sh"
step overlays "applying overlays: $OVERLAYS" "the overlay named in the step log above failed; see its build.sh"
REPO_DOCS=$REPO/docs
export ROOT BOOT BOARD CONF_FILE KVER OVERLAYS SOURCE_DATE_EPOCH REPO_DOCS
for o in "${OVERLAY_LIST[@]}"; do
    STEP="overlay:$o"
    echo "    overlay $o" >&2
    if [ -d "$REPO/overlays/$o/rootfs" ]; then
        # Copy as root:root whatever the checkout's owner; modes come from the tree.
        (cd "$REPO/overlays/$o/rootfs" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z \
            | tar --null --no-recursion -T - --owner=0 --group=0 --numeric-owner -cf -) \
            | tar -C "$ROOT" --no-overwrite-dir -xpf -
    fi
    if [ -x "$REPO/overlays/$o/build.sh" ]; then
        "$REPO/overlays/$o/build.sh" || die "overlays/$o/build.sh failed"
    fi
done
printf '%s\n' "${OVERLAY_LIST[@]}" >"$ROOT/etc/skywire/overlays"
printf 'BOARD=%s\nVERSION=%s\nOVERLAYS=%s\n' "$BOARD" "$VERSION" "$OVERLAYS" >"$ROOT/etc/skywire/image-release"
[ "$CONF_AB_SLOTS" = no ] || ab_install_update_files

# ---------------------------------------------------------------------------
step board "board files: fstab, hostname, boot partition ($CONF_BOOTLOADER)" \
    "check KERNEL_PACKAGES/BOOTLOADER_PACKAGES/DEVICE_TREE in $CONF_FILE"
STEP=board
# The boot partition by PARTUUID, as the root (and as Raspberry Pi OS does): a label is not
# unique (a second Skywire card in a USB reader also has SKYBOOT; its provisioning file must not
# be applied). nofail: a board whose FAT partition is gone still boots (skywire-setup warns);
# the device timeout: skywire-setup (so the visor) waits for this mount, and on a slow first
# boot udev may start late (docs/boards.md, "Raspberry Pi 4 under QEMU").
BOOT_MOUNT_OPTIONS="defaults,noatime,umask=0077,nofail,x-systemd.device-timeout=$BOOT_DEVICE_TIMEOUT"
cat >"$ROOT/etc/fstab" <<EOF
# <file system>        <mount point>   <type> <options>                         <dump> <pass>
$ROOT_REF  /               ext4   defaults,noatime,commit=60        0      1
$BOOT_REF  /boot/firmware  vfat   $BOOT_MOUNT_OPTIONS 0      2
EOF
echo "skywire-$BOARD" >"$ROOT/etc/hostname"; chmod 644 "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tskywire-%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$BOARD" >"$ROOT/etc/hosts"
: >"$ROOT/etc/machine-id"               # systemd generates one at first boot
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT/var/lib/systemd/random-seed"
rm -f "$ROOT"/etc/ssh/ssh_host_*_key "$ROOT"/etc/ssh/ssh_host_*_key.pub

# /boot/firmware is the FAT partition's mount point: whatever packages put there in the
# chroot (raspi-firmware hooks) would be hidden and waste space.
find "$ROOT/boot/firmware" -mindepth 1 -delete
if [ "$CONF_AB_SLOTS" = no ]; then
    cp "$ROOT/boot/vmlinuz-$KVER" "$BOOT/vmlinuz"
    cp "$ROOT/boot/initrd.img-$KVER" "$BOOT/initrd.img"
fi
copy_dtbs() {
    local d
    for d in $CONF_DEVICE_TREE; do
        [ -f "$ROOT/usr/lib/linux-image-$KVER/$d" ] || die "device tree $d not in linux-image-$KVER"
        install -D -m 0644 "$ROOT/usr/lib/linux-image-$KVER/$d" "$BOOT/$1${1:+/}$( [ -n "$1" ] && echo "$d" || basename "$d")"
    done
}
case $CONF_BOOTLOADER in
systemd-boot)
    [ -n "$CONF_EFI_ARCH" ] || die "$CONF_FILE: EFI_ARCH is required for systemd-boot"
    sdboot=$ROOT/usr/lib/systemd/boot/efi/systemd-boot$CONF_EFI_ARCH.efi
    [ -f "$sdboot" ] || die "$sdboot missing: add systemd-boot-efi to BOOTLOADER_PACKAGES"
    install -D -m 0644 "$sdboot" "$BOOT/EFI/BOOT/BOOT${CONF_EFI_ARCH^^}.EFI"
    if [ "$CONF_AB_SLOTS" = yes ]; then
        # One entry per slot, skywire-<generation>-<slot>[+tries].conf; the default glob picks the
        # first in systemd-boot's order (highest generation first, entries with no tries left
        # last): docs/update.md. Slot A's kernel and initrd live in /slot-a.
        ab_install_boot_files
    else
        install -D -m 0644 /dev/stdin "$BOOT/loader/loader.conf" <<EOF
default skywire.conf
timeout 0
editor no
EOF
        install -D -m 0644 /dev/stdin "$BOOT/loader/entries/skywire.conf" <<EOF
title   skywire $VERSION ($BOARD)
linux   /vmlinuz
initrd  /initrd.img
options $KERNEL_CMDLINE
EOF
    fi
    ;;
rpi-firmware)
    fw=$ROOT/usr/lib/raspi-firmware
    [ -d "$fw" ] || die "$fw missing: add raspi-firmware to FIRMWARE_PACKAGES (component non-free-firmware)"
    cp -r "$fw"/. "$BOOT/"
    copy_dtbs ""
    cat >"$BOOT/config.txt" <<EOF
# skywire $VERSION ($BOARD): Raspberry Pi firmware settings
arm_64bit=1
enable_uart=1
upstream_kernel=1
kernel=vmlinuz
initramfs initrd.img followkernel
disable_overscan=1
EOF
    echo "$KERNEL_CMDLINE" >"$BOOT/cmdline.txt"
    # raspi-firmware's kernel hooks regenerate cmdline.txt on kernel upgrades from this file.
    printf 'ROOTPART=%s\nCONSOLES="%s"\n' "$ROOT_REF" "$CONF_CONSOLE" >"$ROOT/etc/default/raspi-firmware"
    ;;
u-boot-extlinux)
    copy_dtbs dtbs
    dtb_first=${CONF_DEVICE_TREE%% *}
    install -D -m 0644 /dev/stdin "$BOOT/extlinux/extlinux.conf" <<EOF
# skywire $VERSION ($BOARD), read by U-Boot's distro boot
default skywire
timeout 1
label skywire
    kernel /vmlinuz
    initrd /initrd.img
    fdt /dtbs/$dtb_first
    append $KERNEL_CMDLINE
EOF
    ;;
u-boot-script) ab_uboot_files ;;
esac
if [ "$CONF_BOOTLOADER" != rpi-firmware ]; then
    # Kernel upgrades copy the new kernel and initrd onto the boot partition.
    install -D -m 0755 "$REPO/image/files/zz-skywire-boot-partition" "$ROOT/etc/kernel/postinst.d/zz-skywire-boot-partition"
    install -D -m 0755 "$REPO/image/files/zz-skywire-boot-partition" "$ROOT/etc/initramfs/post-update.d/zz-skywire-boot-partition"
fi

# ---------------------------------------------------------------------------
step manifest "package manifest" ""
mkdir -p "$OUT_DIR"
dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' \
    | LC_ALL=C sort >"$WORK/packages.tsv"
{
    echo "# skywire image manifest"
    echo "board=$BOARD"
    echo "version=$VERSION"
    echo "overlays=$OVERLAYS"
    echo "suite=$SUITE"
    echo "arch=$CONF_DEB_ARCH"
    echo "kernel=$KVER"
    echo "source_date_epoch=$SOURCE_DATE_EPOCH"
    echo "rootfs_tarball=$(basename "$ROOTFS_TAR")"
    echo "skywire_sha256=$(sha256sum "$SKYWIRE_BIN" | cut -d' ' -f1)"
    echo "root_partuuid=$ROOT_PARTUUID"
    echo "kernel_cmdline=$KERNEL_CMDLINE"
    echo "# package<TAB>version<TAB>arch"
    cat "$WORK/packages.tsv"
} >"$OUT_DIR/$BASENAME.manifest"
# The same package list as SPDX 2.3 JSON (with source packages and maintainers), checked.
"$REPO/image/sbom.py" --manifest "$OUT_DIR/$BASENAME.manifest" --admindir "$ROOT/var/lib/dpkg" -o "$OUT_DIR/$BASENAME.spdx.json"
"$REPO/image/testing/validate-spdx.py" "$OUT_DIR/$BASENAME.spdx.json" --admindir "$ROOT/var/lib/dpkg" >&2 \
    || die "the SPDX document fails its structure check"

# ---------------------------------------------------------------------------
step filesystems "making the ext4 root and FAT boot filesystems" \
    "if the root does not fit, raise ROOT_SIZE_MIB (env or $CONF_FILE)"
# Clamp every timestamp to SOURCE_DATE_EPOCH (files from overlays and the steps above).
find "$ROOT" "$BOOT" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
used_mib=$(( $(du -sm --apparent-size "$ROOT" | cut -f1) ))
if ((used_mib * 115 / 100 > ROOT_SIZE_MIB)); then
    die "root tree is ${used_mib} MiB, does not fit with 15% headroom in ROOT_SIZE_MIB=$ROOT_SIZE_MIB"
fi
boot_used=$(du -sm --apparent-size "$BOOT" | cut -f1)
((boot_used + 8 < CONF_BOOT_SIZE_MIB)) || die "boot files are ${boot_used} MiB, BOOT_SIZE_MIB=$CONF_BOOT_SIZE_MIB is too small"

# A pinned mke2fs.conf so the host's defaults do not leak into the image.
rm -f "$WORK/root.ext4"
MKE2FS_CONFIG=$REPO/image/files/mke2fs.conf E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH \
    mkfs.ext4 -q -F -T skywire -L skyroot -U "$ROOT_FS_UUID" \
    -E "hash_seed=$ROOT_HASH_SEED,root_owner=0:0,lazy_itable_init=0,nodiscard" \
    -d "$ROOT" "$WORK/root.ext4" "${ROOT_SIZE_MIB}M"

# mke2fs -d copies each file's ctime and atime from the staging tree (extraction time):
# set both to SOURCE_DATE_EPOCH on every used inode (2 = root dir, 11+ = files).
dumpe2fs "$WORK/root.ext4" 2>/dev/null | awk -v t="$SOURCE_DATE_EPOCH" '
    /^Inodes per group:/ { ipg = $4 }
    /^Group [0-9]+:/ { g = $2 + 0 }
    /^  Free inodes:/ {
        delete fr; s = $0; sub(/^  Free inodes: */, "", s); n = split(s, parts, /, */)
        for (i = 1; i <= n; i++) {
            if (parts[i] == "") continue
            if (split(parts[i], ab, "-") == 2) { for (k = ab[1]; k <= ab[2]; k++) fr[k] = 1 } else fr[parts[i]] = 1
        }
        for (ino = g * ipg + 1; ino <= (g + 1) * ipg; ino++)
            if (!(ino in fr) && (ino == 2 || ino >= 11)) printf "sif <%d> ctime @%d\nsif <%d> atime @%d\n", ino, t, ino, t
    }' >"$WORK/clamp-times.debugfs"
[ -s "$WORK/clamp-times.debugfs" ] || die "could not list the inodes of the root filesystem (dumpe2fs)"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$WORK/clamp-times.debugfs" "$WORK/root.ext4" >/dev/null 2>"$WORK/debugfs.log" \
    || die "debugfs could not clamp inode times: $(tail -n 3 "$WORK/debugfs.log")"
e2fsck -fn "$WORK/root.ext4" >"$WORK/e2fsck.log" 2>&1 || die "the root filesystem fails e2fsck: $(tail -n 5 "$WORK/e2fsck.log")"

rm -f "$WORK/boot.vfat"
mkfs.vfat -C -F 32 -n SKYBOOT -i "$BOOT_VOLID" --invariant "$WORK/boot.vfat" $((CONF_BOOT_SIZE_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
(cd "$BOOT" && find . -mindepth 1 -type d -printf '%P\n' | LC_ALL=C sort | while read -r d; do
     mmd -i "$WORK/boot.vfat" "::/$d"; done
 find . -type f -printf '%P\n' | LC_ALL=C sort | while read -r f; do
     mcopy -m -i "$WORK/boot.vfat" "$f" "::/$f"; done)

# ---------------------------------------------------------------------------
step disk "partitioning the disk image" "sfdisk's message above names the problem"
off=$CONF_FIRST_PARTITION_OFFSET_MIB
ROOT_SLOTS=1 ROOT_PARTNAME=root
[ "$CONF_AB_SLOTS" = no ] || ROOT_SLOTS=2 ROOT_PARTNAME=root-a
total_mib=$((off + CONF_BOOT_SIZE_MIB + ROOT_SLOTS * ROOT_SIZE_MIB + TAIL_MIB))
IMG=$WORK/$BASENAME.img
rm -f "$IMG"
truncate -s "${total_mib}M" "$IMG"
SECTORS_PER_MIB=2048
boot_start=$((off * SECTORS_PER_MIB))
root_start=$(((off + CONF_BOOT_SIZE_MIB) * SECTORS_PER_MIB))
if [ "$CONF_PARTITION_TABLE" = gpt ]; then
    esp_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
    case $CONF_DEB_ARCH in arm64) root_type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE;;
                           amd64) root_type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709;; esac
    layout="label: gpt
label-id: $DISK_UUID
first-lba: 64
start=$boot_start, size=$((CONF_BOOT_SIZE_MIB * SECTORS_PER_MIB)), type=$esp_type, uuid=$BOOT_PARTUUID, name=\"boot\", attrs=\"LegacyBIOSBootable\"
start=$root_start, size=$((ROOT_SIZE_MIB * SECTORS_PER_MIB)), type=$root_type, uuid=$ROOT_PARTUUID, name=\"$ROOT_PARTNAME\""
    [ "$CONF_AB_SLOTS" = no ] || layout+="
start=$((root_start + ROOT_SIZE_MIB * SECTORS_PER_MIB)), size=$((ROOT_SIZE_MIB * SECTORS_PER_MIB)), type=$root_type, uuid=$ROOT_B_PARTUUID, name=\"root-b\""
else
    layout="label: dos
label-id: $DOS_DISK_ID
start=$boot_start, size=$((CONF_BOOT_SIZE_MIB * SECTORS_PER_MIB)), type=c, bootable
start=$root_start, size=$((ROOT_SIZE_MIB * SECTORS_PER_MIB)), type=83"
    [ "$CONF_AB_SLOTS" = no ] || layout+="
start=$((root_start + ROOT_SIZE_MIB * SECTORS_PER_MIB)), size=$((ROOT_SIZE_MIB * SECTORS_PER_MIB)), type=83"
fi
echo "$layout" >"$OUT_DIR/$BASENAME.sfdisk"
echo "$layout" | sfdisk --quiet --no-reread --no-tell-kernel "$IMG"
dd if="$WORK/boot.vfat" of="$IMG" bs=1M seek="$off" conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMG" bs=1M seek=$((off + CONF_BOOT_SIZE_MIB)) conv=notrunc,sparse status=none
if [ -n "$CONF_UBOOT_BLOBS" ]; then
    udir=$ROOT/usr/lib/u-boot/$CONF_UBOOT_TARGET
    for blob in $CONF_UBOOT_BLOBS; do
        f=${blob%%:*} sector=${blob##*:}
        [ -f "$udir/$f" ] || die "$udir/$f missing (UBOOT_TARGET=$CONF_UBOOT_TARGET, package u-boot-rockchip?)"
        dd if="$udir/$f" of="$IMG" bs=512 seek="$sector" conv=notrunc status=none
    done
fi

# ---------------------------------------------------------------------------
step check "checking the image (image/check-image.sh)" "the FAIL lines above name what is wrong on the disk image"
TMPDIR=$WORK MANIFEST=$OUT_DIR/$BASENAME.manifest BOARD_CONF=$CONF_FILE "$REPO/image/check-image.sh" "$IMG" >"$WORK/check.log" 2>&1 \
    || { cat "$WORK/check.log" >&2; die "image check failed"; }
grep -c '^check-image: ok' "$WORK/check.log" | sed 's/^/    image check: /; s/$/ checks passed/' >&2
cp "$WORK/check.log" "$OUT_DIR/$BASENAME.check"
# BUNDLE=1 (make bundle): the root filesystem alone, the payload of an update bundle (image/bundle.sh).
if [ -n "${BUNDLE:-}" ]; then
    rm -f "$OUT_DIR"/*.rootfs.ext4
    cp --sparse=always "$WORK/root.ext4" "$OUT_DIR/$BASENAME.rootfs.ext4.partial"
    mv -f "$OUT_DIR/$BASENAME.rootfs.ext4.partial" "$OUT_DIR/$BASENAME.rootfs.ext4"
    echo "$IMAGE_KEY" >"$OUT_DIR/.image-key"
    STEP=done
    echo "==> done: $OUT_DIR/$BASENAME.rootfs.ext4 (root filesystem for a bundle)" >&2
    exit 0
fi

# ---------------------------------------------------------------------------
step compress "compressing and checksumming" "check free space in $OUT_DIR"
rm -f "$OUT_DIR/$BASENAME.img" "$OUT_DIR/$BASENAME.img.xz" "$OUT_DIR/$BASENAME.img.bmap"
# XZ_LEVEL=none: a disk only booted by the tests (image/update-test.sh), never flashed: the raw
# image alone, no xz (minutes of test time on a loaded 2-core host).
if [ "$XZ_LEVEL" = none ]; then
    mv -f "$IMG" "$OUT_DIR/$BASENAME.img"
    (cd "$OUT_DIR" && sha256sum "$BASENAME.img" >"$BASENAME.img.sha256")
    echo "$IMAGE_KEY" >"$OUT_DIR/.image-key"
    STEP=done
    echo "==> done: $OUT_DIR/$BASENAME.img (raw ${total_mib} MiB, not compressed: XZ_LEVEL=none)" >&2
    exit 0
fi
if command -v bmaptool >/dev/null; then
    bmaptool create -o "$OUT_DIR/$BASENAME.img.bmap" "$IMG" 2>/dev/null \
        || echo "    warning: bmaptool create failed; no .bmap" >&2
fi
xz -T2 -"$XZ_LEVEL" --block-size=16MiB -c "$IMG" >"$OUT_DIR/$BASENAME.img.xz.partial"
mv -f "$OUT_DIR/$BASENAME.img.xz.partial" "$OUT_DIR/$BASENAME.img.xz"
if [ -n "${KEEP_RAW:-}" ]; then mv -f "$IMG" "$OUT_DIR/$BASENAME.img"; fi
(cd "$OUT_DIR" && sha256sum "$BASENAME.img.xz" >"$BASENAME.img.xz.sha256"
 { [ ! -f "$BASENAME.img" ] || sha256sum "$BASENAME.img"; } >"$BASENAME.img.sha256"
 [ -s "$BASENAME.img.sha256" ] || rm -f "$BASENAME.img.sha256")
raw_sha=$(xz -dc "$OUT_DIR/$BASENAME.img.xz" | sha256sum | cut -d' ' -f1)
echo "$raw_sha  $BASENAME.img" >"$OUT_DIR/$BASENAME.img.sha256"
ln -sfn "$BASENAME.img.xz" "$OUT_DIR/skywire-$BOARD-latest.img.xz"
printf 'raw_bytes=%s\nxz_bytes=%s\n' "$(stat -c %s "$IMG" 2>/dev/null || stat -c %s "$OUT_DIR/$BASENAME.img")" \
    "$(stat -c %s "$OUT_DIR/$BASENAME.img.xz")" >"$OUT_DIR/$BASENAME.sizes"
echo "$IMAGE_KEY" >"$OUT_DIR/.image-key"
STEP=done
echo "==> done: $OUT_DIR/$BASENAME.img.xz ($(du -h "$OUT_DIR/$BASENAME.img.xz" | cut -f1), raw ${total_mib} MiB)" >&2
exit
}
