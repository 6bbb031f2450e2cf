# shellcheck shell=bash
# /usr/lib/skywire/update/lib-board.sh on Raspberry Pi A/B boards: boot selection by the Pi
# firmware's autoboot.txt and its one-shot `tryboot` flag (docs/update.md, "Raspberry Pi: tryboot").
# Sourced by lib.sh after its own definitions, which it replaces where the Pi differs.
#
# Disk (MBR): 1 the shared FAT partition (autoboot.txt, skywire-provision.json, rauc's status;
# mounted at /boot/firmware), 2 and 3 the boot partitions of slots A and B (firmware, config.txt,
# cmdline.txt, kernel, initrd, device trees), 5 and 6 (logical) the root slots A and B.
#
# autoboot.txt (read by the firmware from partition 1, at most 512 bytes):
#
#   [all]
#   tryboot_a_b=1
#   boot_partition=<the committed slot's boot partition>
#   [tryboot]
#   boot_partition=<the slot on trial, or the committed one when none>
#
# A normal boot takes [all]'s partition. A reboot with the tryboot flag (`reboot "0 tryboot"`)
# takes [tryboot]'s partition once: the firmware clears the flag before it starts, so any later
# reset (failed health check, panic, watchdog, power cut) is a normal boot again. Commit = [all]
# names the tried slot.
#
# SKYWIRE_UPDATE_PREFIX=dir: every path below under dir, and the slots' partitions are the
# directories dir/dev/{boot,root}-{a,b} (no mount): the backend's test
# (image/testing/tryboot-backend-test.sh) runs it so, on a fake boot partition.

P=${SKYWIRE_UPDATE_PREFIX:-}
RUNNING_ROOT=$P
ESP=$P/boot/firmware
STATUS_FILE=$P/var/lib/skywire/update-status.json
FAILURE_FILE=$ESP/rauc/skywire-trial-failure.json
AUTOBOOT=$ESP/autoboot.txt
# The firmware reads at most this much of autoboot.txt.
AUTOBOOT_MAX_BYTES=512
# Slots rauc marked bad (one letter a line), on the shared partition.
BAD_FILE=$ESP/rauc/skywire-tryboot-bad
# Written by set-primary in the boot that installed the update: the trial is armed for the next
# reboot of this boot only (it is in /run: any reboot consumes it).
ARMED_FILE=$P/run/skywire-update/tryboot-armed
# systemd-shutdown passes this file's content to reboot(2) as its argument; the Raspberry Pi
# kernel's firmware driver turns " tryboot" in it into the firmware's tryboot flag.
REBOOT_PARAM_FILE=$P/run/systemd/reboot-param
TRYBOOT_REBOOT_PARAM="0 tryboot"
CMDLINE_FILE=$P/proc/cmdline
# The firmware's record of this boot (the partition it booted, 1 when tryboot was set).
DT_BOOTLOADER=$P/proc/device-tree/chosen/bootloader
BOOT_PART_A=2 BOOT_PART_B=3 ROOT_PART_A=5 ROOT_PART_B=6
# On the new root: the boot partition's files ("<path on the boot partition> <path in the root>"
# a line) and the kernel command line, both written by image/build.sh.
PI_BOOT_DIR=/usr/lib/skywire/update/pi-boot

# booted_slot: A or B, from rauc.slot= on the kernel command line (each boot partition's
# cmdline.txt names its slot); else from the partition the firmware booted.
booted_slot() {
    local s p
    s=$(tr ' ' '\n' <"$CMDLINE_FILE" | sed -n 's/^rauc\.slot=\([AB]\)$/\1/p' | head -n1)
    if [ -z "$s" ] && [ -r "$DT_BOOTLOADER/partition" ]; then
        p=$(od -An -tu4 --endian=big "$DT_BOOTLOADER/partition" | tr -d ' ')
        s=$(part_slot "$p")
    fi
    echo "$s"
}
slot_part() { case $1 in A) echo "$BOOT_PART_A";; B) echo "$BOOT_PART_B";; *) udie "no slot '$1'";; esac; }
part_slot() { case $1 in "$BOOT_PART_A") echo A;; "$BOOT_PART_B") echo B;; esac; }

# autoboot_get SECTION: boot_partition of [all] or [tryboot] in autoboot.txt.
autoboot_get() {
    [ -f "$AUTOBOOT" ] || udie "no $AUTOBOOT"
    awk -v want="[$1]" '/^\[/ { sec = $0; next } sec == want && /^boot_partition=/ { sub(/^boot_partition=/, ""); print; exit }' "$AUTOBOOT" | tr -d '\r'
}
committed_slot() { part_slot "$(autoboot_get all)"; }
tryboot_slot() { part_slot "$(autoboot_get tryboot)"; }

# autoboot_write COMMITTED TRYBOOT: autoboot.txt naming both slots' partitions. Written beside the
# old one and renamed over it (one directory entry changes), flushed before and after.
autoboot_write() {
    local tmp=$ESP/.autoboot.txt.tmp
    printf '[all]\ntryboot_a_b=1\nboot_partition=%s\n[tryboot]\nboot_partition=%s\n' "$(slot_part "$1")" "$(slot_part "$2")" >"$tmp"
    (($(stat -c %s "$tmp") <= AUTOBOOT_MAX_BYTES)) || udie "autoboot.txt over $AUTOBOOT_MAX_BYTES bytes"
    sync -f "$tmp"
    mv -f "$tmp" "$AUTOBOOT"
    sync -f "$ESP"
}

is_bad() { grep -qx "$1" "$BAD_FILE" 2>/dev/null; }
mark_bad() { is_bad "$1" || { mkdir -p "$(dirname "$BAD_FILE")"; echo "$1" >>"$BAD_FILE"; sync -f "$(dirname "$BAD_FILE")"; }; }
clear_bad() {
    is_bad "$1" || return 0
    grep -vx "$1" "$BAD_FILE" >"$BAD_FILE.tmp" || true
    mv -f "$BAD_FILE.tmp" "$BAD_FILE"; sync -f "$(dirname "$BAD_FILE")"
}
armed() { [ -f "$ARMED_FILE" ]; }
disarm() { rm -f "$ARMED_FILE"; [ "$(cat "$REBOOT_PARAM_FILE" 2>/dev/null)" != "$TRYBOOT_REBOOT_PARAM" ] || rm -f "$REBOOT_PARAM_FILE"; }

# slot_state SLOT: good, trial (booted from [tryboot], not committed) or bad (marked bad, or its
# trial was armed in an earlier boot and that boot ended without a commit).
slot_state() {
    local s=$1 c t
    c=$(committed_slot) t=$(tryboot_slot)
    if is_bad "$s"; then echo bad
    elif [ "$s" = "$c" ]; then echo good
    elif [ "$s" = "$(booted_slot)" ]; then echo trial
    elif [ "$s" = "$t" ] && ! armed; then echo bad
    else echo good; fi
}

# slot_entry SLOT: "<generation> <state> <file>" as lib.sh's (the health check reads it); the file
# is autoboot.txt, the generation unused (0).
slot_entry() { [ -f "$AUTOBOOT" ] || return 0; echo "0 $(slot_state "$1") $AUTOBOOT"; }
on_trial() { [ "$(slot_state "$1")" = trial ]; }
