# shellcheck shell=bash
# image/update-test-uboot.sh: the U-Boot board's parts of image/update-test.sh (sourced for
# BOARD=qemu-arm64-uboot; uses T, boot_off). QEMU virt boots Debian's u-boot-qemu (-bios), which
# runs boot.scr from the FAT partition; the A/B state is abstate.txt there (docs/update.md,
# "Boot selection: U-Boot").
# add_kernel_arg ARG: appended to slot A's sk_args= (slot-a/slot.env on the boot partition).
add_kernel_arg() {
    MTOOLS_SKIP_CHECK=1 mtype -i "$T/disk.img@@$boot_off" ::/slot-a/slot.env | tr -d '\r' \
        | sed "s/^sk_args=.*/& $1/" >"$T/slot.env"
    grep -q "^sk_args=.* $1\$" "$T/slot.env" || die "no sk_args= in slot-a/slot.env"
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$T/disk.img@@$boot_off" "$T/slot.env" ::/slot-a/slot.env
}
# The state on one line, sorted: "BOOT_A_LEFT=n BOOT_B_LEFT=n BOOT_ORDER=X Y" (boot.scr's copy ends in a NUL).
esp_entries() { MTOOLS_SKIP_CHECK=1 mtype -i "$T/disk.img@@$boot_off" ::/abstate.txt 2>/dev/null | tr -d '\000\r' | sort | tr '\n' ' '; }
BOOT_STATE_CMD='tr -d "\000" </boot/firmware/abstate.txt | sort | tr "\n" " "; echo; ls /boot/firmware/slot-a /boot/firmware/slot-b 2>/dev/null | tr "\n" " "; echo'
# Committed: its tries back at 3 (boot.scr counted the boot, the health check restored them), first in BOOT_ORDER.
committed_re() { echo "BOOT_$1_LEFT=3 .*BOOT_ORDER=$1 "; }
