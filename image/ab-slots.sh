# shellcheck shell=bash
# image/ab-slots.sh: the A/B part of image/build.sh for boards with AB_SLOTS=yes (sourced;
# uses ROOT, BOOT, REPO, BOARD, VERSION, KVER, KERNEL_CMDLINE, UPDATE_KEYRING, SLOT_A_DEV, SLOT_B_DEV). docs/update.md.
#
# Disk: boot (ESP) | root-a | root-b, the two root slots the same size. The image ships slot A
# filled and slot B empty; rauc writes a bundle's root filesystem into the slot not booted.

# The first generation: slot A's entry. Later installs write a higher one (bootloader backend).
AB_FIRST_GENERATION=1

# Root filesystem files: rauc, its system.conf, the update keyring, the bootloader backend, the
# health check and its unit, the provisioning hook for a fleet keyring. systemd-bless-boot is
# masked: the health check commits (or refuses) the slot itself (docs/update.md).
ab_install_update_files() {
    local u=$REPO/image/files/update
    install -D -m 0644 /dev/stdin "$ROOT/etc/rauc/system.conf" <<CONF
# skywire $VERSION ($BOARD): rauc's configuration (docs/update.md)
[system]
compatible=skywire-$BOARD
bootloader=custom
data-directory=/boot/firmware/rauc
bundle-formats=-plain

[handlers]
bootloader-custom-backend=/usr/lib/skywire/update/bootloader

[keyring]
path=/etc/rauc/keyring.pem

[slot.rootfs.0]
device=$SLOT_A_DEV
type=ext4
bootname=A

[slot.rootfs.1]
device=$SLOT_B_DEV
type=ext4
bootname=B
CONF
    install -D -m 0644 "$UPDATE_KEYRING" "$ROOT/etc/rauc/keyring.pem"
    install -D -m 0755 "$u/bootloader" "$ROOT/usr/lib/skywire/update/bootloader"
    install -D -m 0755 "$u/health" "$ROOT/usr/lib/skywire/update/health"
    install -D -m 0644 "$u/lib.sh" "$ROOT/usr/lib/skywire/update/lib.sh"
    install -D -m 0644 "$u/persist.list" "$ROOT/usr/lib/skywire/update/persist.list"
    install -D -m 0755 "$u/15-update-keyring" "$ROOT/usr/lib/skywire/setup.d/15-update-keyring"
    install -D -m 0644 "$u/skywire-update-health.service" "$ROOT/etc/systemd/system/skywire-update-health.service"
    install -D -m 0644 "$u/update.conf" "$ROOT/etc/skywire/update.conf"
    systemctl --root="$ROOT" enable skywire-update-health.service >/dev/null 2>&1
    ln -sfn /dev/null "$ROOT/etc/systemd/system/systemd-bless-boot.service"
    install -D -m 0644 "$REPO/docs/update.md" "$ROOT/usr/share/doc/skywire/update.md"
}

# Boot partition: systemd-boot, loader.conf with the glob default, slot A's kernel, initrd and entry.
ab_install_boot_files() {
    install -D -m 0644 "$ROOT/boot/vmlinuz-$KVER" "$BOOT/slot-a/vmlinuz"
    install -D -m 0644 "$ROOT/boot/initrd.img-$KVER" "$BOOT/slot-a/initrd.img"
    install -D -m 0644 /dev/stdin "$BOOT/loader/loader.conf" <<CONF
default skywire-*
timeout 0
editor no
CONF
    install -D -m 0644 /dev/stdin "$BOOT/loader/entries/skywire-$AB_FIRST_GENERATION-a.conf" <<CONF
title   skywire $VERSION ($BOARD, slot A)
linux   /slot-a/vmlinuz
initrd  /slot-a/initrd.img
options $KERNEL_CMDLINE
CONF
    mkdir -p "$BOOT/rauc"
}
