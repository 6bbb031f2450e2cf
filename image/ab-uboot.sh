# shellcheck shell=bash
# image/ab-uboot.sh: A/B slots on boards booted by U-Boot's boot script (BOOTLOADER=u-boot-script,
# AB_SLOTS=yes; docs/update.md, "Boot selection: U-Boot"). Sourced by image/build.sh (uses ROOT,
# BOOT, REPO, BOARD, VERSION, KVER, KERNEL_CMDLINE, CONF_DEVICE_TREE, die) and image/check-image.sh
# (uses B, TMP, ok, fail, same, file_present, check_root_arg).
#
# Boot partition: boot.scr (image/files/update/boot.cmd), abstate.txt and abstate.bak (the A/B
# state: BOOT_ORDER "A B", slot A 3 tries, slot B 0), slot-a/ (vmlinuz, initrd.img, dtbs/, slot.env:
# sk_args= the kernel command line, sk_fdt= the device tree), rauc/ (rauc's central status).

# Tries of a good slot and the file names: the same as lib-uboot.sh's.
AB_UBOOT_GOOD_TRIES=3
AB_UBOOT_STATE_FILES="abstate.txt abstate.bak"
# The Pi (UBOOT_LOADER=rpi-firmware): U-Boot's file on the FAT partition, config.txt's kernel=.
AB_UBOOT_RPI_BINARY=u-boot.bin

# ab_uboot_state A_LEFT B_LEFT ORDER: the state file's text.
ab_uboot_state() { printf 'BOOT_ORDER=%s\nBOOT_A_LEFT=%s\nBOOT_B_LEFT=%s\n' "$3" "$1" "$2"; }

# ab_uboot_files (image/build.sh, board step): the U-Boot backend and its library in the root (in
# place of the systemd-boot backend ab_install_update_files put there), boot.scr, the state and
# slot A on the boot partition.
ab_uboot_files() {
    local u=$REPO/image/files/update d dtb_first="" f slot_dtbs=$CONF_DEVICE_TREE
    command -v mkimage >/dev/null || die "mkimage missing (u-boot-tools): run image/host-deps.sh"
    install -D -m 0755 "$u/bootloader-uboot" "$ROOT/usr/lib/skywire/update/bootloader"
    install -D -m 0644 "$u/lib-uboot.sh" "$ROOT/usr/lib/skywire/update/lib-uboot.sh"
    # The Pi: the firmware's device tree (from the FAT partition's top level) goes to the kernel; the
    # slots carry none.
    [ "$CONF_UBOOT_LOADER" != rpi-firmware ] || slot_dtbs=""
    printf '# The device tree(s) the rauc backend copies into a new slot (image/ab-uboot.sh).\nSLOT_DEVICE_TREES="%s"\n' \
        "$slot_dtbs" | install -D -m 0644 /dev/stdin "$ROOT/usr/lib/skywire/update/uboot.conf"
    install -D -m 0644 "$ROOT/boot/vmlinuz-$KVER" "$BOOT/slot-a/vmlinuz"
    install -D -m 0644 "$ROOT/boot/initrd.img-$KVER" "$BOOT/slot-a/initrd.img"
    for d in $slot_dtbs; do
        [ -f "$ROOT/usr/lib/linux-image-$KVER/$d" ] || die "device tree $d not in linux-image-$KVER"
        install -D -m 0644 "$ROOT/usr/lib/linux-image-$KVER/$d" "$BOOT/slot-a/dtbs/$d"
        [ -n "$dtb_first" ] || dtb_first=dtbs/$d
    done
    printf 'sk_args=%s\nsk_fdt=%s\n' "$KERNEL_CMDLINE" "$dtb_first" >"$BOOT/slot-a/slot.env"
    for f in $AB_UBOOT_STATE_FILES; do ab_uboot_state "$AB_UBOOT_GOOD_TRIES" 0 "A B" >"$BOOT/$f"; done
    mkimage -A arm64 -O linux -T script -C none -n "skywire $VERSION A/B boot" \
        -d "$u/boot.cmd" "$BOOT/boot.scr" >/dev/null || die "mkimage could not make boot.scr"
    mkdir -p "$BOOT/rauc"
    [ "$CONF_UBOOT_LOADER" != rpi-firmware ] || ab_uboot_rpi_files
}

# ab_uboot_rpi_files: the Pi's FAT partition: the GPU firmware (raspi-firmware), the board device
# trees on the top level (the firmware picks one, fixes it up and hands it to U-Boot), u-boot.bin
# and config.txt starting it. raspi-firmware's kernel hooks would rewrite config.txt (kernel= the
# Linux kernel) and copy the kernel to the top level on every kernel upgrade, bypassing the slots:
# they are removed (dpkg leaves a deleted conffile deleted); zz-skywire-boot-partition updates the
# booted slot's kernel instead.
ab_uboot_rpi_files() {
    local fw=$ROOT/usr/lib/raspi-firmware ub=$ROOT/usr/lib/u-boot/$CONF_UBOOT_TARGET/u-boot.bin d h
    [ -d "$fw" ] || die "$fw missing: add raspi-firmware to FIRMWARE_PACKAGES (component non-free-firmware)"
    [ -f "$ub" ] || die "$ub missing: BOOTLOADER_PACKAGES=u-boot-rpi and UBOOT_TARGET=rpi_arm64"
    cp -r "$fw"/. "$BOOT/"
    for d in $CONF_DEVICE_TREE; do
        [ -f "$ROOT/usr/lib/linux-image-$KVER/$d" ] || die "device tree $d not in linux-image-$KVER"
        install -m 0644 "$ROOT/usr/lib/linux-image-$KVER/$d" "$BOOT/$(basename "$d")"
    done
    install -m 0644 "$ub" "$BOOT/$AB_UBOOT_RPI_BINARY"
    cat >"$BOOT/config.txt" <<CONF
# skywire $VERSION ($BOARD): Raspberry Pi firmware settings. The firmware starts U-Boot, which runs
# boot.scr: the A/B slots (docs/update.md). The kernel command line is each slot's slot.env.
arm_64bit=1
enable_uart=1
upstream_kernel=1
kernel=$AB_UBOOT_RPI_BINARY
disable_overscan=1
CONF
    for h in etc/kernel/postinst.d/z50-raspi-firmware etc/kernel/postrm.d/z50-raspi-firmware \
             etc/initramfs/post-update.d/z50-raspi-firmware; do
        rm -f "${ROOT:?}/$h"
    done
}

# ab_uboot_check (image/check-image.sh): boot.scr is boot.cmd's script image, the state boots slot
# A, slot A's kernel, initrd and device tree equal the root's, its command line names the root.
ab_uboot_check() {
    local args fdt want_dtb
    if [ -f "$B/boot.scr" ]; then
        # A legacy image: 64-byte header, then a 4-byte length table (0-terminated) and the script.
        tail -c +73 "$B/boot.scr" | head -c "$(stat -c %s "$REPO/image/files/update/boot.cmd")" >"$TMP/boot.cmd"
        cmp -s "$TMP/boot.cmd" "$REPO/image/files/update/boot.cmd" && ok "u-boot script: /boot.scr holds image/files/update/boot.cmd" \
            || fail "u-boot script: /boot.scr does not hold image/files/update/boot.cmd"
    else
        fail "u-boot script: /boot.scr missing"
    fi
    for f in $AB_UBOOT_STATE_FILES; do
        [ -f "$B/$f" ] && [ "$(cat "$B/$f")" = "$(ab_uboot_state "$AB_UBOOT_GOOD_TRIES" 0 "A B")" ] \
            && ok "A/B: /$f boots slot A ($AB_UBOOT_GOOD_TRIES tries), slot B none" || fail "A/B: /$f missing or not the first state"
    done
    [ ! -e "$B/extlinux/extlinux.conf" ] && ok "u-boot script: no extlinux.conf (it would be taken before boot.scr)" \
        || fail "u-boot script: /extlinux/extlinux.conf present: U-Boot would boot it and skip the A/B script"
    [ ! -e "$B/slot-b/slot.env" ] && ok "A/B: slot B not installed (no /slot-b/slot.env)" || fail "A/B: /slot-b/slot.env present in a new image"
    file_present slot-a/slot.env "A/B slot A"
    args=$(sed -n 's/^sk_args=//p' "$B/slot-a/slot.env" 2>/dev/null)
    fdt=$(sed -n 's/^sk_fdt=//p' "$B/slot-a/slot.env" 2>/dev/null)
    check_root_arg "slot-a/slot.env sk_args" "$args"
    [[ " $args " == *" rauc.slot=A "* ]] && ok "A/B: slot A's command line has rauc.slot=A" || fail "A/B: slot A's command line lacks rauc.slot=A: $args"
    [ -z "$KVER" ] || { same slot-a/vmlinuz "/boot/vmlinuz-$KVER" "kernel"; same slot-a/initrd.img "/boot/initrd.img-$KVER" "initrd"; }
    want_dtb=${CONF_DEVICE_TREE%% *}
    [ "$CONF_UBOOT_LOADER" != rpi-firmware ] || want_dtb=""
    if [ -n "$want_dtb" ]; then
        [ "$fdt" = "dtbs/$want_dtb" ] && ok "A/B: slot A's device tree is the board's ($want_dtb)" || fail "A/B: sk_fdt is '$fdt', board config says dtbs/$want_dtb"
        [ -z "$KVER" ] || same "slot-a/$fdt" "/usr/lib/linux-image-$KVER/$want_dtb" "device tree"
    else
        [ -z "$fdt" ] && ok "A/B: no device tree file (U-Boot passes its own)" || fail "A/B: sk_fdt is '$fdt', but U-Boot's own device tree is the one to pass"
    fi
    [ "$CONF_UBOOT_LOADER" != rpi-firmware ] || ab_uboot_rpi_check
    root_file /usr/lib/skywire/update/lib-uboot.sh "$TMP/lib-uboot.sh" && ok "A/B: the U-Boot state library is in the root" \
        || fail "A/B: /usr/lib/skywire/update/lib-uboot.sh missing in the root"
    root_file /usr/lib/skywire/update/bootloader "$TMP/bootloader" && cmp -s "$TMP/bootloader" "$REPO/image/files/update/bootloader-uboot" \
        && ok "A/B: the rauc backend is the U-Boot one" || fail "A/B: /usr/lib/skywire/update/bootloader is not image/files/update/bootloader-uboot"
}

# ab_uboot_rpi_check: config.txt starts u-boot.bin (u-boot-rpi's) and loads no initramfs, raspi-firmware's
# kernel hooks are gone; the firmware files and device trees as for BOOTLOADER=rpi-firmware
# (check-image.sh's check_rpi_firmware).
ab_uboot_rpi_check() {
    local kernel h
    [ "$(pt '.partitiontable.partitions[0].type')" = c ] && [ "$(pt '.partitiontable.partitions[0].bootable // false')" = true ] \
        && ok "Pi: MBR boot partition type c (FAT32 LBA), bootable" || fail "Pi: the boot partition is not type c and bootable"
    [ -f "$B/config.txt" ] || { fail "Pi: /config.txt missing"; return; }
    grep -qx 'arm_64bit=1' "$B/config.txt" && ok "Pi: config.txt has arm_64bit=1" || fail "Pi: config.txt lacks arm_64bit=1"
    kernel=$(sed -n 's/^kernel=//p' "$B/config.txt" | tail -n1)
    [ "$kernel" = "$AB_UBOOT_RPI_BINARY" ] && ok "Pi: config.txt starts $AB_UBOOT_RPI_BINARY" || fail "Pi: config.txt kernel='$kernel', expected $AB_UBOOT_RPI_BINARY"
    ! grep -q '^initramfs' "$B/config.txt" && ok "Pi: config.txt loads no initramfs (U-Boot loads the slot's)" || fail "Pi: config.txt has an initramfs line"
    same "$AB_UBOOT_RPI_BINARY" "/usr/lib/u-boot/$CONF_UBOOT_TARGET/u-boot.bin" "Pi U-Boot"
    for h in /etc/kernel/postinst.d/z50-raspi-firmware /etc/initramfs/post-update.d/z50-raspi-firmware; do
        debugfs -R "stat $h" "$R" 2>/dev/null | grep -q 'Type:' && fail "Pi: $h present: a kernel upgrade would rewrite config.txt" \
            || ok "Pi: $h removed"
    done
    check_rpi_firmware
}
