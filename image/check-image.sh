#!/usr/bin/env bash
# image/check-image.sh: checks a built board image without hardware and without loop devices.
#
#   image/check-image.sh out/rock64/skywire-rock64-latest.img.xz       # board from the .manifest
#   BOARD=rpi4 image/check-image.sh disk.img                           # or named
#   BOARD_CONF=path/to/board.conf image/check-image.sh disk.img        # or any config file
#
# The image (.img or .img.xz) is read through its partition table (sfdisk --json): the FAT boot
# partition with mtools at its byte offset (img@@offset), the ext4 root copied out (sparse) and
# read with debugfs. Checked, for every board: partition table type, first partition's start,
# labels SKYBOOT/skyroot, the kernel command line's root= names the root partition (PARTUUID of
# the GPT entry, or <MBR disk id>-02), /etc/fstab's root line the same, its /boot/firmware line the
# boot partition's PARTUUID with nofail and a device timeout, the boot partition's kernel
# and initrd equal to the root's /boot/vmlinuz-<kver> and initrd.img-<kver> (kver from the manifest
# or the only one in /boot). Then per BOOTLOADER:
#   u-boot-extlinux  every UBOOT_BLOBS file read back at its sector equals the u-boot package's
#                    file in the image (/usr/lib/u-boot/UBOOT_TARGET/), the blobs end before the
#                    first partition and do not overlap; extlinux/extlinux.conf's default label
#                    names a kernel, initrd and device tree that exist on the boot partition, the
#                    device tree equal to the kernel package's.
#   u-boot-script    (A/B, image/ab-uboot.sh) the UBOOT_BLOBS as above; /boot.scr holds
#                    image/files/update/boot.cmd, no extlinux.conf; abstate.txt/.bak boot slot A;
#                    slot-a/ has the root's kernel, initrd and device tree and slot.env a command line
#                    naming the root with rauc.slot=A; the root has the U-Boot rauc backend.
#   rpi-firmware     MBR with a bootable FAT partition; config.txt (arm_64bit=1, its kernel= and
#                    initramfs files present), cmdline.txt (one line), every file of raspi-firmware
#                    (/usr/lib/raspi-firmware) present and equal, every DEVICE_TREE present.
#   systemd-boot     EFI/BOOT/BOOT<EFI_ARCH>.EFI equal to systemd-boot-efi's; loader.conf's default
#                    entry names a linux and initrd that exist.
# Prints one "ok"/"FAIL" line per check and exits 1 if any failed (2: the image cannot be read).
set -euo pipefail
export LC_ALL=C MTOOLS_SKIP_CHECK=1
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/image/board-conf.sh"
. "$REPO/image/ab-uboot.sh"

SECTOR=512
SECTORS_PER_MIB=2048

IMAGE=${1:?usage: image/check-image.sh IMAGE.img[.xz]}
[ -f "$IMAGE" ] || { echo "check-image: no image $IMAGE" >&2; exit 2; }
FAILS=0
ok()   { echo "check-image: ok   $*"; }
fail() { echo "check-image: FAIL $*"; FAILS=$((FAILS + 1)); }
fatal() { echo "check-image: cannot check $IMAGE: $*" >&2; exit 2; }
die() { fatal "$@"; }                         # used by load_conf

TMP=$(mktemp -d "${TMPDIR:-/tmp}/check-image.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# The manifest next to the image names the board and the kernel version.
base=${IMAGE%.xz}; base=${base%.img}
MANIFEST=${MANIFEST:-$base.manifest}
[ -f "$MANIFEST" ] || MANIFEST=$(readlink -f "$IMAGE" | sed -e 's/\.xz$//' -e 's/\.img$//').manifest
manifest_value() { [ -f "$MANIFEST" ] && sed -n "s/^$1=//p" "$MANIFEST" | head -n1 || true; }
BOARD=${BOARD:-$(manifest_value board)}
if [ -z "${BOARD_CONF:-}" ]; then
    [ -n "$BOARD" ] || fatal "no manifest next to the image and no BOARD= / BOARD_CONF="
    BOARD_CONF=$REPO/board-configs/$BOARD.conf
fi
[ -f "$BOARD_CONF" ] || fatal "no board config $BOARD_CONF"
board_conf_defaults
load_conf "$BOARD_CONF"
echo "check-image: $(basename "$IMAGE") (board config $(basename "$BOARD_CONF"), bootloader $CONF_BOOTLOADER)"

# ---------------------------------------------------------------------------
# Raw image: decompressed (sparse) into the temporary directory when it is .xz.
if [[ $IMAGE == *.xz ]]; then
    IMG=$TMP/disk.img
    xz -dc "$IMAGE" | dd of="$IMG" bs=1M conv=sparse status=none || fatal "xz -dc failed"
else
    IMG=$IMAGE
fi
sfdisk --json "$IMG" >"$TMP/table.json" 2>"$TMP/sfdisk.err" || fatal "no partition table: $(cat "$TMP/sfdisk.err")"
pt() { jq -r "$1" "$TMP/table.json"; }
label=$(pt '.partitiontable.label')
[ "$label" = "$CONF_PARTITION_TABLE" ] && ok "partition table is $label" \
    || fail "partition table is '$label', board config says $CONF_PARTITION_TABLE"
nparts=$(pt '.partitiontable.partitions | length')
if [ "$CONF_AB_SLOTS" = yes ]; then
    # A/B (docs/update.md): boot, root-a, root-b; the slots the same size, named for rauc's by-partlabel paths.
    [ "$nparts" = 3 ] || fatal "expected 3 partitions (boot, root-a, root-b: AB_SLOTS=yes), found $nparts"
    if [ "$label" = gpt ]; then
        names=$(pt '[.partitiontable.partitions[].name] | join(",")')
        [ "$names" = "boot,root-a,root-b" ] && ok "A/B: partitions named boot, root-a, root-b" || fail "A/B: partition names are '$names', expected boot,root-a,root-b"
    fi
    [ "$(pt '.partitiontable.partitions[1].size')" = "$(pt '.partitiontable.partitions[2].size')" ] \
        && ok "A/B: the root slots are the same size" || fail "A/B: root-a and root-b differ in size"
else
    [ "$nparts" = 2 ] || fatal "expected 2 partitions (boot, root), found $nparts"
fi
boot_start=$(pt '.partitiontable.partitions[0].start')
boot_size=$(pt '.partitiontable.partitions[0].size')
root_start=$(pt '.partitiontable.partitions[1].start')
root_size=$(pt '.partitiontable.partitions[1].size')
want_start=$((CONF_FIRST_PARTITION_OFFSET_MIB * SECTORS_PER_MIB))
[ "$boot_start" = "$want_start" ] && ok "boot partition starts at sector $boot_start (${CONF_FIRST_PARTITION_OFFSET_MIB} MiB)" \
    || fail "boot partition starts at sector $boot_start, board config says $want_start"
if [ "$label" = gpt ]; then
    ROOT_REF="PARTUUID=$(pt '.partitiontable.partitions[1].uuid' | tr 'A-F' 'a-f')"
    BOOT_REF="PARTUUID=$(pt '.partitiontable.partitions[0].uuid' | tr 'A-F' 'a-f')"
else
    ROOT_REF="PARTUUID=$(pt '.partitiontable.id' | sed 's/^0x//' | tr 'A-F' 'a-f')-02"
    BOOT_REF="PARTUUID=$(pt '.partitiontable.id' | sed 's/^0x//' | tr 'A-F' 'a-f')-01"
fi

# Boot partition: every file copied out with mtools at its byte offset.
BOOT_IMG="$IMG@@$((boot_start * SECTOR))"
B=$TMP/boot
mkdir -p "$B"
# A boot partition that cannot be read is reported, and the checks go on (its files then
# count as missing), so that e.g. a bootloader blob written over it is also named.
if mlabel -i "$BOOT_IMG" -s :: >"$TMP/mlabel.out" 2>&1; then
    grep -q 'SKYBOOT' "$TMP/mlabel.out" && ok "boot partition label SKYBOOT" || fail "boot partition label: $(tr -d '\n' <"$TMP/mlabel.out")"
    mcopy -s -n -p -i "$BOOT_IMG" '::/*' "$B/" 2>"$TMP/mcopy.err" || fail "cannot read every file of the boot partition: $(head -n 3 "$TMP/mcopy.err" | tr '\n' ' ')"
else
    fail "boot partition (sector $boot_start) is not a FAT filesystem: $(head -n 1 "$TMP/mlabel.out")"
fi

# Root partition: copied out (sparse) for blkid and debugfs.
R=$TMP/root.ext4
dd if="$IMG" of="$R" bs=4M skip=$((root_start * SECTOR)) count=$((root_size * SECTOR)) \
    iflag=skip_bytes,count_bytes conv=sparse status=none || fatal "cannot copy the root partition out"
root_type=$(blkid -p -s TYPE -o value "$R" 2>/dev/null || true)
root_label=$(blkid -p -s LABEL -o value "$R" 2>/dev/null || true)
[ "$root_type" = ext4 ] && [ "$root_label" = skyroot ] && ok "root partition is ext4 'skyroot'" \
    || fatal "root partition is '${root_type:-unknown}' labelled '${root_label:-}', expected ext4 'skyroot'"
# root_file PATH OUT: copies a file out of the root filesystem; fails when it is missing.
root_file() {
    rm -f "$2"
    debugfs -R "dump -p \"$1\" \"$2\"" "$R" >/dev/null 2>&1 && [ -f "$2" ] \
        && debugfs -R "stat \"$1\"" "$R" 2>/dev/null | grep -q 'Type: regular'
}
# same FILE_ON_BOOT ROOT_PATH WHAT: the boot partition's file equals the root filesystem's.
same() {
    local got=$B/$1 want=$TMP/want.$RANDOM
    if [ ! -f "$got" ]; then fail "$3: /$1 missing on the boot partition"; return; fi
    if ! root_file "$2" "$want"; then fail "$3: $2 missing in the root filesystem"; return; fi
    cmp -s "$got" "$want" && ok "$3: /$1 equals $2" || fail "$3: /$1 differs from $2"
    rm -f "$want"
}

# root= on a kernel command line names the root partition.
check_root_arg() {
    local where=$1 cmdline=$2 arg
    arg=$(tr ' ' '\n' <<<"$cmdline" | sed -n 's/^root=//p' | head -n1)
    [ "$arg" = "$ROOT_REF" ] && ok "$where: root=$arg is the root partition" \
        || fail "$where: root=${arg:-(none)}, but the root partition is $ROOT_REF"
}
if root_file /etc/fstab "$TMP/fstab"; then
    fstab_root=$(awk '$2 == "/" { print $1 }' "$TMP/fstab")
    [ "$fstab_root" = "$ROOT_REF" ] && ok "/etc/fstab mounts $fstab_root on /" || fail "/etc/fstab mounts '${fstab_root:-nothing}' on /, root partition is $ROOT_REF"
    # The boot partition (provisioning file) by its PARTUUID, not by a label another card can
    # have; nofail and a device timeout (docs/boards.md, "Raspberry Pi 4 under QEMU").
    read -r fstab_boot fstab_boot_opts < <(awk '$2 == "/boot/firmware" { print $1, $4 }' "$TMP/fstab")
    [ "${fstab_boot:-}" = "$BOOT_REF" ] && ok "/etc/fstab mounts $fstab_boot on /boot/firmware" \
        || fail "/etc/fstab mounts '${fstab_boot:-nothing}' on /boot/firmware, boot partition is $BOOT_REF"
    [[ ",${fstab_boot_opts:-}," == *,nofail,* && ",${fstab_boot_opts:-}," == *,x-systemd.device-timeout=* ]] \
        && ok "/boot/firmware: nofail and a device timeout ($fstab_boot_opts)" \
        || fail "/boot/firmware options '${fstab_boot_opts:-}' lack nofail or x-systemd.device-timeout="
else
    fail "no /etc/fstab in the root filesystem"
fi

if [ "$CONF_AB_SLOTS" = yes ]; then
    root_file /etc/rauc/system.conf "$TMP/system.conf" && grep -qx "compatible=skywire-$BOARD" "$TMP/system.conf" \
        && ok "A/B: /etc/rauc/system.conf compatible=skywire-$BOARD" || fail "A/B: /etc/rauc/system.conf missing or not compatible=skywire-$BOARD"
    # The slots' devices: by partition name on GPT, by PARTUUID <disk id>-02 and -03 on MBR.
    if [ "$label" = gpt ]; then want_devs="/dev/disk/by-partlabel/root-a /dev/disk/by-partlabel/root-b"
    else want_devs="/dev/disk/by-partuuid/${ROOT_REF#PARTUUID=} /dev/disk/by-partuuid/${ROOT_REF%-02}-03"; want_devs=${want_devs/PARTUUID=/}; fi
    devs=$(sed -n 's/^device=//p' "$TMP/system.conf" 2>/dev/null | tr '\n' ' ')
    [ "${devs% }" = "$want_devs" ] && ok "A/B: rauc's slots are $want_devs" || fail "A/B: rauc's slot devices are '${devs% }', expected $want_devs"
    root_file /etc/rauc/keyring.pem "$TMP/keyring.pem" && grep -q -- '-----BEGIN CERTIFICATE-----' "$TMP/keyring.pem" \
        && ok "A/B: update keyring /etc/rauc/keyring.pem present" || fail "A/B: no update keyring /etc/rauc/keyring.pem"
fi

KVER=$(manifest_value kernel)
if [ -z "$KVER" ]; then
    KVER=$(debugfs -R 'ls -l /boot' "$R" 2>/dev/null | awk '{print $NF}' | sed -n 's/^vmlinuz-//p' | sort -V | tail -n1)
fi
[ -n "$KVER" ] || fail "cannot tell the kernel version (no manifest, no /boot/vmlinuz-* in the root)"

# file_present PATH WHAT: PATH (relative to the boot partition, leading / allowed) exists.
file_present() {
    local p=${1#/}
    [ -n "$p" ] && [ -f "$B/$p" ] && ok "$2: /$p present" || fail "$2: /${p:-(empty)} missing on the boot partition"
}

# check_uboot_blobs: the bootloader at its sectors equals the u-boot package's files; nothing overlaps.
check_uboot_blobs() {
    local prev_end=0 blob f sector pkgfile size end
    for blob in $(tr ' ' '\n' <<<"$CONF_UBOOT_BLOBS" | sort -t: -k2 -n); do
        f=${blob%%:*} sector=${blob##*:}
        pkgfile=/usr/lib/u-boot/$CONF_UBOOT_TARGET/$f
        if ! root_file "$pkgfile" "$TMP/blob"; then fail "u-boot: $pkgfile not in the image's root (u-boot-rockchip installed?)"; continue; fi
        size=$(stat -c %s "$TMP/blob")
        end=$((sector + (size + SECTOR - 1) / SECTOR))
        dd if="$IMG" of="$TMP/readback" bs=$SECTOR skip="$sector" count=$(((size + SECTOR - 1) / SECTOR)) status=none
        truncate -s "$size" "$TMP/readback"
        cmp -s "$TMP/blob" "$TMP/readback" && ok "u-boot: $f ($size bytes) at sector $sector equals $pkgfile" \
            || fail "u-boot: the $size bytes at sector $sector differ from $pkgfile"
        ((sector >= prev_end)) || fail "u-boot: $f at sector $sector overlaps the previous blob (ends at $prev_end)"
        ((end <= boot_start)) && ok "u-boot: $f ends at sector $end, before the first partition ($boot_start)" \
            || fail "u-boot: $f ends at sector $end, inside the first partition (starts at $boot_start)"
        prev_end=$end
    done
}

# check_rpi_firmware: every file of the raspi-firmware package on the boot partition, and the
# board's device trees on its top level (rpi-firmware, and U-Boot started by the Pi firmware).
check_rpi_firmware() {
    local nfw f d
    # The firmware: every file of the raspi-firmware package, present and equal.
    mkdir -p "$TMP/fw"
    debugfs -R "rdump /usr/lib/raspi-firmware \"$TMP/fw\"" "$R" >/dev/null 2>&1 || true
    nfw=0
    if [ -d "$TMP/fw/raspi-firmware" ]; then
        while IFS= read -r f; do
            nfw=$((nfw + 1))
            if [ ! -f "$B/$f" ]; then fail "Pi firmware: /$f missing on the boot partition"
            elif ! cmp -s "$B/$f" "$TMP/fw/raspi-firmware/$f"; then fail "Pi firmware: /$f differs from raspi-firmware's"
            fi
        done < <(cd "$TMP/fw/raspi-firmware" && find . -type f -printf '%P\n' | sort)
    fi
    ((nfw > 0)) || fail "Pi firmware: /usr/lib/raspi-firmware is empty or missing in the root (raspi-firmware installed?)"
    for f in start4.elf fixup4.dat bootcode.bin start.elf fixup.dat; do file_present "$f" "Pi firmware"; done
    ((nfw == 0)) || ok "Pi firmware: $nfw files of raspi-firmware checked"
    for d in $CONF_DEVICE_TREE; do
        file_present "$(basename "$d")" "Pi device tree"
        [ -z "$KVER" ] || [ ! -f "$B/$(basename "$d")" ] || same "$(basename "$d")" "/usr/lib/linux-image-$KVER/$d" "Pi device tree"
    done
}

case $CONF_BOOTLOADER in
u-boot-extlinux)
    check_uboot_blobs
    conf=$B/extlinux/extlinux.conf
    if [ ! -f "$conf" ]; then
        fail "extlinux: /extlinux/extlinux.conf missing"
    else
        # The default label's block (or the first label when there is no default).
        def=$(awk 'tolower($1) == "default" { print $2; exit }' "$conf")
        awk -v want="$def" 'tolower($1) == "label" { on = (want == "" ? !seen : $2 == want); seen = 1; next }
                            on { print }' "$conf" >"$TMP/label"
        [ -s "$TMP/label" ] || fail "extlinux: no label '${def:-}' in extlinux.conf"
        kv() { awk -v k="$1" 'tolower($1) == k { $1 = ""; sub(/^ +/, ""); print; exit }' "$TMP/label"; }
        kernel=$(kv kernel); [ -n "$kernel" ] || kernel=$(kv linux)
        initrd=$(kv initrd); fdt=$(kv fdt); [ -n "$fdt" ] || fdt=$(kv devicetree)
        append=$(kv append)
        file_present "$kernel" "extlinux kernel"
        file_present "$initrd" "extlinux initrd"
        file_present "$fdt" "extlinux fdt"
        want_dtb=${CONF_DEVICE_TREE%% *}
        [ "${fdt#/}" = "dtbs/$want_dtb" ] && ok "extlinux: fdt is the board's device tree ($want_dtb)" \
            || fail "extlinux: fdt is '${fdt:-(none)}', board config says dtbs/$want_dtb"
        [ -z "$KVER" ] || [ ! -f "$B/${fdt#/}" ] || same "${fdt#/}" "/usr/lib/linux-image-$KVER/$want_dtb" "extlinux fdt"
        check_root_arg "extlinux append" "$append"
        [ -n "$kernel" ] && [ -n "$KVER" ] && same "${kernel#/}" "/boot/vmlinuz-$KVER" "kernel"
        [ -n "$initrd" ] && [ -n "$KVER" ] && same "${initrd#/}" "/boot/initrd.img-$KVER" "initrd"
    fi
    ;;
u-boot-script)
    # A/B only (image/ab-uboot.sh): the blobs as for extlinux, then boot.scr, the state and slot A.
    check_uboot_blobs
    ab_uboot_check
    ;;
rpi-firmware)
    [ "$label" = dos ] && ok "Pi: MBR partition table" || fail "Pi: the firmware needs an MBR (dos) partition table, found $label"
    ptype=$(pt '.partitiontable.partitions[0].type'); pboot=$(pt '.partitiontable.partitions[0].bootable // false')
    [ "$ptype" = c ] && ok "Pi: boot partition type c (FAT32 LBA)" || fail "Pi: boot partition type is '$ptype', expected c"
    [ "$pboot" = true ] && ok "Pi: boot partition is bootable" || fail "Pi: boot partition is not marked bootable"
    for f in config.txt cmdline.txt; do file_present "$f" "Pi"; done
    if [ -f "$B/config.txt" ]; then
        grep -qx 'arm_64bit=1' "$B/config.txt" && ok "Pi: config.txt has arm_64bit=1" || fail "Pi: config.txt lacks arm_64bit=1"
        kernel=$(sed -n 's/^kernel=//p' "$B/config.txt" | tail -n1)
        initrd=$(awk '$1 == "initramfs" { print $2 }' "$B/config.txt" | tail -n1)
        [ -n "$kernel" ] || fail "Pi: config.txt has no kernel="
        [ -n "$initrd" ] || fail "Pi: config.txt has no initramfs line"
        [ -z "$kernel" ] || { file_present "$kernel" "Pi config.txt kernel"; [ -z "$KVER" ] || same "$kernel" "/boot/vmlinuz-$KVER" "kernel"; }
        [ -z "$initrd" ] || { file_present "$initrd" "Pi config.txt initramfs"; [ -z "$KVER" ] || same "$initrd" "/boot/initrd.img-$KVER" "initrd"; }
    fi
    if [ -f "$B/cmdline.txt" ]; then
        [ "$(wc -l <"$B/cmdline.txt")" -le 1 ] && ok "Pi: cmdline.txt is one line" || fail "Pi: cmdline.txt has more than one line (the firmware reads only the first)"
        check_root_arg "Pi cmdline.txt" "$(head -n1 "$B/cmdline.txt")"
    fi
    check_rpi_firmware
    ;;
systemd-boot)
    efi=EFI/BOOT/BOOT${CONF_EFI_ARCH^^}.EFI
    same "$efi" "/usr/lib/systemd/boot/efi/systemd-boot$CONF_EFI_ARCH.efi" "systemd-boot"
    def=$( [ -f "$B/loader/loader.conf" ] && awk '$1 == "default" { print $2; exit }' "$B/loader/loader.conf" || true)
    if [ "$CONF_AB_SLOTS" = yes ]; then
        # A/B: the glob default; the image ships one entry, slot A's, with rauc.slot=A.
        [ "$def" = 'skywire-*' ] && ok "A/B: loader.conf default is the glob skywire-*" || fail "A/B: loader.conf default is '$def', expected skywire-*"
        def=$(cd "$B/loader/entries" 2>/dev/null && ls skywire-*.conf 2>/dev/null | sort -V -r | head -n1)
        grep -q 'rauc\.slot=A' "$B/loader/entries/$def" 2>/dev/null && ok "A/B: entry $def boots slot A" || fail "A/B: entry '${def:-}' has no rauc.slot=A"
    fi
    entry=$B/loader/entries/$def
    if [ -z "$def" ] || [ ! -f "$entry" ]; then
        fail "systemd-boot: loader.conf's default entry '${def:-}' missing"
    else
        ok "systemd-boot: default entry loader/entries/$def"
        linux=$(awk '$1 == "linux" { print $2; exit }' "$entry"); initrd=$(awk '$1 == "initrd" { print $2; exit }' "$entry")
        file_present "$linux" "systemd-boot linux"; file_present "$initrd" "systemd-boot initrd"
        check_root_arg "systemd-boot options" "$(awk '$1 == "options" { $1 = ""; print; exit }' "$entry")"
        [ -z "$KVER" ] || [ -z "$linux" ] || same "${linux#/}" "/boot/vmlinuz-$KVER" "kernel"
        [ -z "$KVER" ] || [ -z "$initrd" ] || same "${initrd#/}" "/boot/initrd.img-$KVER" "initrd"
    fi
    ;;
*) fail "unknown BOOTLOADER '$CONF_BOOTLOADER'";;
esac

if ((FAILS)); then
    echo "check-image: $(basename "$IMAGE"): $FAILS check(s) FAILED"
    exit 1
fi
echo "check-image: $(basename "$IMAGE"): all checks passed"
