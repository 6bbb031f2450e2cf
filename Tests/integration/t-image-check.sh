#!/usr/bin/env bash
# image/check-image.sh against small synthetic disk images (a U-Boot board and a Raspberry Pi
# board, made here in seconds with sfdisk, mkfs.vfat + mcopy and mkfs.ext4 -d, no loop devices):
# each correct image passes, and each fault is caught with its own FAIL line: a changed byte
# in the bootloader at its sector, a blob overlapping the first partition, an extlinux.conf naming
# a missing device tree, a root= that is not the root partition, a missing Pi firmware file,
# a changed device tree, a cmdline.txt naming another partition.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
CHECK=$repo/image/check-image.sh
export MTOOLS_SKIP_CHECK=1
KVER=1.0-test
MIB=2048                                  # sectors per MiB

# tree ROOTDIR: the root filesystem files the checks read.
root_tree() {
    local r=$1
    mkdir -p "$r/boot" "$r/etc" "$r/usr/lib/linux-image-$KVER/rockchip" "$r/usr/lib/linux-image-$KVER/broadcom" \
        "$r/usr/lib/u-boot/test-rk3328" "$r/usr/lib/raspi-firmware"
    head -c 70000 /dev/urandom >"$r/boot/vmlinuz-$KVER"
    head -c 30000 /dev/urandom >"$r/boot/initrd.img-$KVER"
    head -c 2000 /dev/urandom >"$r/usr/lib/linux-image-$KVER/rockchip/rk3328-test.dtb"
    head -c 2000 /dev/urandom >"$r/usr/lib/linux-image-$KVER/broadcom/bcm2711-rpi-4-b.dtb"
    head -c 50000 /dev/urandom >"$r/usr/lib/u-boot/test-rk3328/idbloader.img"
    head -c 90000 /dev/urandom >"$r/usr/lib/u-boot/test-rk3328/u-boot.itb"
    for f in start4.elf fixup4.dat bootcode.bin start.elf fixup.dat; do head -c 3000 /dev/urandom >"$r/usr/lib/raspi-firmware/$f"; done
}

# mkimg NAME TABLE ROOT_REF FIRST_MIB: $T_WORK/NAME.img from $T_WORK/NAME.boot and $T_WORK/NAME.root
# (8 MiB each), with the root tree's fstab naming ROOT_REF; blobs from $T_WORK/NAME.blobs ("file sector").
mkimg() {
    local n=$1 table=$2 ref=$3 first=$4 img=$T_WORK/$1.img
    # The boot partition by PARTUUID with nofail and a device timeout, as image/build.sh writes it.
    local boot_ref=PARTUUID=1234abcd-01
    [ "$table" = dos ] || boot_ref=PARTUUID=99999999-8888-4777-8666-555555555555
    printf '%s / ext4 defaults 0 1\n%s /boot/firmware vfat defaults,nofail,x-systemd.device-timeout=15min 0 2\n' \
        "$ref" "$boot_ref" >"$T_WORK/$n.root/etc/fstab"
    rm -f "$img" "$T_WORK/$n.vfat" "$T_WORK/$n.ext4"
    truncate -s $((first + 8 + 8 + 1))M "$img"
    if [ "$table" = gpt ]; then
        printf 'label: gpt\nlabel-id: 11111111-2222-4333-8444-555555555555\nfirst-lba: 64\nstart=%d, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=99999999-8888-4777-8666-555555555555\nstart=%d, size=%d, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, uuid=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\n' \
            $((first * MIB)) $((8 * MIB)) $(((first + 8) * MIB)) $((8 * MIB)) | sfdisk --quiet "$img"
    else
        printf 'label: dos\nlabel-id: 0x1234abcd\nstart=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\n' \
            $((first * MIB)) $((8 * MIB)) $(((first + 8) * MIB)) $((8 * MIB)) | sfdisk --quiet "$img"
    fi
    mkfs.vfat -C -n SKYBOOT "$T_WORK/$n.vfat" 8192 >/dev/null
    (cd "$T_WORK/$n.boot" && find . -mindepth 1 -type d -printf '%P\n' | sort | while read -r d; do mmd -i "$T_WORK/$n.vfat" "::/$d"; done
     find . -type f -printf '%P\n' | sort | while read -r f; do mcopy -i "$T_WORK/$n.vfat" "$f" "::/$f"; done)
    mkfs.ext4 -q -F -L skyroot -d "$T_WORK/$n.root" "$T_WORK/$n.ext4" 8M >/dev/null 2>&1
    dd if="$T_WORK/$n.vfat" of="$img" bs=1M seek="$first" conv=notrunc status=none
    dd if="$T_WORK/$n.ext4" of="$img" bs=1M seek=$((first + 8)) conv=notrunc status=none
    if [ -f "$T_WORK/$n.blobs" ]; then
        while read -r f s; do dd if="$T_WORK/$n.root/usr/lib/u-boot/test-rk3328/$f" of="$img" bs=512 seek="$s" conv=notrunc status=none; done <"$T_WORK/$n.blobs"
    fi
    printf 'board=test\nkernel=%s\n' "$KVER" >"$T_WORK/$n.manifest"
}

# expect_pass NAME CONF / expect_fail NAME CONF PATTERN: runs the check.
run_check() { BOARD_CONF=$2 "$CHECK" "$T_WORK/$1.img" >"$T_WORK/$1.out" 2>&1; }
expect_pass() {
    if run_check "$1" "$2"; then pass "$1: every check passes ($(grep -c '^check-image: ok' "$T_WORK/$1.out") ok lines)"
    else fail "$1: expected to pass:"; grep FAIL "$T_WORK/$1.out" >&2 || tail -n 5 "$T_WORK/$1.out" >&2; fi
}
expect_fail() {
    local rc=0
    run_check "$1" "$2" || rc=$?
    if [ "$rc" = 1 ] && grep -q "FAIL.*$3" "$T_WORK/$1.out"; then pass "$1: caught ($(grep -m1 "FAIL.*$3" "$T_WORK/$1.out" | sed 's/^check-image: //'))"
    else fail "$1: expected exit 1 and a FAIL line matching '$3', got exit $rc:"; cat "$T_WORK/$1.out" >&2; fi
}

# ---------------------------------------------------------------------------
# U-Boot board (Rockchip layout: idbloader at sector 64, u-boot.itb at 16384, partitions at 16 MiB).
cat >"$T_WORK/uboot.conf" <<'EOF'
DEB_ARCH=arm64
BOOTLOADER=u-boot-extlinux
UBOOT_TARGET=test-rk3328
UBOOT_BLOBS="idbloader.img:64 u-boot.itb:16384"
DEVICE_TREE="rockchip/rk3328-test.dtb"
PARTITION_TABLE=gpt
FIRST_PARTITION_OFFSET_MIB=16
EOF
GPT_REF=PARTUUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee
uboot_case() {   # uboot_case NAME ROOT_REF_IN_EXTLINUX FDT
    local n=$1
    cp -a "$T_WORK/tree" "$T_WORK/$n.root"
    mkdir -p "$T_WORK/$n.boot/extlinux" "$T_WORK/$n.boot/dtbs/rockchip"
    cp "$T_WORK/tree/boot/vmlinuz-$KVER" "$T_WORK/$n.boot/vmlinuz"
    cp "$T_WORK/tree/boot/initrd.img-$KVER" "$T_WORK/$n.boot/initrd.img"
    cp "$T_WORK/tree/usr/lib/linux-image-$KVER/rockchip/rk3328-test.dtb" "$T_WORK/$n.boot/dtbs/rockchip/"
    printf 'default skywire\ntimeout 1\nlabel other\n    kernel /nothing\nlabel skywire\n    kernel /vmlinuz\n    initrd /initrd.img\n    fdt %s\n    append root=%s rw rootwait\n' \
        "$3" "$2" >"$T_WORK/$n.boot/extlinux/extlinux.conf"
    printf 'idbloader.img 64\nu-boot.itb 16384\n' >"$T_WORK/$n.blobs"
}
root_tree "$T_WORK/tree"

uboot_case uboot-good "$GPT_REF" /dtbs/rockchip/rk3328-test.dtb
mkimg uboot-good gpt "$GPT_REF" 16
expect_pass uboot-good "$T_WORK/uboot.conf"

# One byte of u-boot.itb changed on the disk (sector 16384 + 1000 bytes).
cp "$T_WORK/uboot-good.img" "$T_WORK/uboot-flip.img"; cp "$T_WORK/uboot-good.manifest" "$T_WORK/uboot-flip.manifest"
orig=$(dd if="$T_WORK/uboot-flip.img" bs=1 skip=$((16384 * 512 + 1000)) count=1 status=none | od -An -tx1 | tr -d ' \n')
printf "\\x$(printf '%02x' $((0x$orig ^ 0xff)))" | dd of="$T_WORK/uboot-flip.img" bs=1 seek=$((16384 * 512 + 1000)) conv=notrunc status=none
expect_fail uboot-flip "$T_WORK/uboot.conf" "at sector 16384 differ from /usr/lib/u-boot/test-rk3328/u-boot.itb"

# A board config whose u-boot.itb sector runs into the first partition (16 MiB = sector 32768).
sed 's/u-boot.itb:16384/u-boot.itb:32700/' "$T_WORK/uboot.conf" >"$T_WORK/uboot-overlap.conf"
uboot_case uboot-overlap "$GPT_REF" /dtbs/rockchip/rk3328-test.dtb
printf 'idbloader.img 64\n' >"$T_WORK/uboot-overlap.blobs"
mkimg uboot-overlap gpt "$GPT_REF" 16
dd if="$T_WORK/tree/usr/lib/u-boot/test-rk3328/u-boot.itb" of="$T_WORK/uboot-overlap.img" bs=512 seek=32700 conv=notrunc status=none
expect_fail uboot-overlap "$T_WORK/uboot-overlap.conf" "inside the first partition"

# extlinux.conf names a device tree that is not on the boot partition.
uboot_case uboot-nodtb "$GPT_REF" /dtbs/rockchip/rk3328-other.dtb
mkimg uboot-nodtb gpt "$GPT_REF" 16
expect_fail uboot-nodtb "$T_WORK/uboot.conf" "extlinux fdt: /dtbs/rockchip/rk3328-other.dtb missing"

# root= names another partition.
uboot_case uboot-root "PARTUUID=00000000-0000-4000-8000-000000000000" /dtbs/rockchip/rk3328-test.dtb
mkimg uboot-root gpt "$GPT_REF" 16
expect_fail uboot-root "$T_WORK/uboot.conf" "root=PARTUUID=00000000-0000-4000-8000-000000000000, but the root partition is $GPT_REF"

# ---------------------------------------------------------------------------
# Raspberry Pi (MBR, firmware files, config.txt, cmdline.txt, flat device trees).
cat >"$T_WORK/pi.conf" <<'EOF'
DEB_ARCH=arm64
BOOTLOADER=rpi-firmware
DEVICE_TREE="broadcom/bcm2711-rpi-4-b.dtb"
PARTITION_TABLE=dos
FIRST_PARTITION_OFFSET_MIB=4
EOF
DOS_REF=PARTUUID=1234abcd-02
pi_case() {     # pi_case NAME CMDLINE_ROOT
    local n=$1
    cp -a "$T_WORK/tree" "$T_WORK/$n.root"
    mkdir -p "$T_WORK/$n.boot"
    cp "$T_WORK/tree/usr/lib/raspi-firmware/"* "$T_WORK/$n.boot/"
    cp "$T_WORK/tree/boot/vmlinuz-$KVER" "$T_WORK/$n.boot/vmlinuz"
    cp "$T_WORK/tree/boot/initrd.img-$KVER" "$T_WORK/$n.boot/initrd.img"
    cp "$T_WORK/tree/usr/lib/linux-image-$KVER/broadcom/bcm2711-rpi-4-b.dtb" "$T_WORK/$n.boot/"
    printf 'arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n' >"$T_WORK/$n.boot/config.txt"
    printf 'root=%s rw rootwait console=ttyS1,115200\n' "$2" >"$T_WORK/$n.boot/cmdline.txt"
}
pi_case pi-good "$DOS_REF"
mkimg pi-good dos "$DOS_REF" 4
expect_pass pi-good "$T_WORK/pi.conf"

pi_case pi-nofw "$DOS_REF"
rm "$T_WORK/pi-nofw.boot/start4.elf"
mkimg pi-nofw dos "$DOS_REF" 4
expect_fail pi-nofw "$T_WORK/pi.conf" "Pi firmware: /start4.elf missing"

pi_case pi-dtb "$DOS_REF"
head -c 2000 /dev/urandom >"$T_WORK/pi-dtb.boot/bcm2711-rpi-4-b.dtb"
mkimg pi-dtb dos "$DOS_REF" 4
expect_fail pi-dtb "$T_WORK/pi.conf" "Pi device tree: /bcm2711-rpi-4-b.dtb differs"

pi_case pi-root "PARTUUID=1234abcd-01"
mkimg pi-root dos "$DOS_REF" 4
expect_fail pi-root "$T_WORK/pi.conf" "Pi cmdline.txt: root=PARTUUID=1234abcd-01, but the root partition is $DOS_REF"

# The same Pi image checked as a GPT board: the table type is named.
sed 's/PARTITION_TABLE=dos/PARTITION_TABLE=gpt/' "$T_WORK/pi.conf" >"$T_WORK/pi-gpt.conf"
expect_fail pi-good "$T_WORK/pi-gpt.conf" "partition table is 'dos', board config says gpt"

[ "$T_FAILS" -eq 0 ] || exit 1
