# shellcheck shell=bash
# image/boot-test-rpi4-ab.sh: the A/B boots of image/boot-test-rpi4.sh (sourced after its first boot;
# uses T, FAT, QEMU, REPO, VISOR_PK, TEST_CMDLINE, TEST_KERNEL_ARGS, BOOT_TIMEOUT, POLL_SECONDS,
# pass, fail, die, set_slot_env, ab_state). docs/update.md, "Raspberry Pi".
#
# QEMU's raspi4b has no network device, so no bundle can be delivered (over the mesh or by URL);
# this does on the card what the rauc backend does on the board (bootloader-uboot set-primary):
# slot B gets a root file system (root-a's, as the first boot left it) with its fstab on root-b,
# /slot-b/ gets the kernel, initrd and slot.env, and the state "B A" with one try for B. Then:
#   1. U-Boot boots slot B, its health check commits it (B back to 3 tries);
#   2. slot B's kernel command line names a root that does not exist: the initramfs gives up and
#      reboots (panic=10); boot.scr had counted B's one try before the kernel started, so the next
#      boot takes slot A, whose health check keeps it.
# Test-only: vpn-server's auto_start is off in slot B's config and its apps.d entry removed (it cannot start without a default
# route here, and the health check of a slot on trial waits for every auto-start app).

# Test-only: the initramfs waits this long for a missing root (its default is 180 s).
AB_BAD_ROOTDELAY=5

# ab_boot TAG PATTERN: boots the card (console logs $T/TAG.log, U-Boot's $T/TAG-uboot.log), waits at
# most BOOT_TIMEOUT for PATTERN on the console, then stops QEMU. 0 when PATTERN came.
ab_boot() {
    local tag=$1 pattern=$2 deadline=$((SECONDS + BOOT_TIMEOUT)) pid rc=1 q=("${QEMU[@]}")
    q=("${q[@]/#file:$T\/serial.log/file:$T/$tag.log}")
    q=("${q[@]/#file:$T\/serial1.log/file:$T/$tag-uboot.log}")
    "$REPO/image/qemu-trixie.sh" run "$T" -- "${q[@]}" >"$T/$tag-qemu.log" 2>&1 &
    pid=$!; QEMU_PID=$pid
    while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
        if grep -aqE "$pattern" "$T/$tag.log" 2>/dev/null; then rc=0; break; fi
        sleep "$POLL_SECONDS"
    done
    # The FAT writes are synced by the writers (sync -f); the root's by ext4's commit (not needed here).
    sleep "$POLL_SECONDS"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; QEMU_PID=""
    return $rc
}

echo "boot-test-rpi4: A/B: installing slot B on the card (as bootloader-uboot set-primary does)" >&2
disk_id=$(sfdisk -J "$T/sd.img" | jq -r '.partitiontable.id' | sed 's/^0x//')
read -r b_start b_sectors < <(sfdisk -J "$T/sd.img" | jq -r '.partitiontable.partitions[2] | "\(.start) \(.size)"')
[ "$b_sectors" -ge "$(($(stat -c %s "$T/root.ext4") / 512))" ] || die "root-b ($b_sectors sectors) is smaller than root-a's file system"
cp --sparse=always "$T/root.ext4" "$T/root-b.ext4"
debugfs -R "cat /etc/fstab" "$T/root-b.ext4" 2>/dev/null | sed "s/^PARTUUID=$disk_id-02 /PARTUUID=$disk_id-03 /" >"$T/fstab.b"
grep -q "^PARTUUID=$disk_id-03 " "$T/fstab.b" || die "slot B's fstab has no root line for -03: $(head -n 3 "$T/fstab.b")"
debugfs -R "cat /etc/skywire/skywire-config.json" "$T/root-b.ext4" 2>/dev/null \
    | jq '.launcher.apps |= map(if .name == "vpn-server" then .auto_start = false else . end)' >"$T/config.b" \
    || die "cannot read slot B's skywire-config.json"
# debugfs_replace PATH FILE MODE: FILE in place of PATH in slot B's file system, root-owned, MODE.
debugfs_replace() {
    debugfs -w -R "rm $1" "$T/root-b.ext4" >/dev/null 2>&1
    debugfs -w -f - "$T/root-b.ext4" >/dev/null 2>&1 <<CMDS
write $2 $1
sif $1 mode 0100$3
sif $1 uid 0
sif $1 gid 0
CMDS
    [ "$(debugfs -R "cat $1" "$T/root-b.ext4" 2>/dev/null | sha256sum)" = "$(sha256sum <"$2")" ] || die "debugfs could not write $1 into slot B"
}
debugfs_replace /etc/fstab "$T/fstab.b" 644
debugfs_replace /etc/skywire/skywire-config.json "$T/config.b" 600
# skywire-setup's 50-apps rewrites every overlay app's entry from /etc/skywire/apps.d at each boot
# (auto_start from the provisioned role), so vpn-server's overlay entry goes too: an app no overlay
# ships keeps its entry in the config as it is.
debugfs -w -R "rm /etc/skywire/apps.d/vpn-exit.json" "$T/root-b.ext4" >/dev/null 2>&1
debugfs -R "stat /etc/skywire/apps.d/vpn-exit.json" "$T/root-b.ext4" 2>&1 | grep -q "File not found" \
    || die "could not remove vpn-exit.json from slot B's apps.d"
e2fsck -fn "$T/root-b.ext4" >/dev/null 2>&1 || die "slot B's file system fails e2fsck after the edits"
dd if="$T/root-b.ext4" of="$T/sd.img" bs=512 seek="$b_start" conv=notrunc,sparse status=none
for f in vmlinuz initrd.img; do
    mcopy -n -i "$FAT" "::/slot-a/$f" "$T/slot-b.$f" && mcopy -o -i "$FAT" "$T/slot-b.$f" "::/slot-b/$f" 2>/dev/null \
        || { mmd -i "$FAT" ::/slot-b 2>/dev/null; mcopy -o -i "$FAT" "$T/slot-b.$f" "::/slot-b/$f"; } || die "cannot copy $f to slot-b/"
done
B_ARGS=$(sed -e "s/root=PARTUUID=$disk_id-02/root=PARTUUID=$disk_id-03/" -e 's/rauc\.slot=A/rauc.slot=B/' <<<"$TEST_CMDLINE${TEST_KERNEL_ARGS:+ $TEST_KERNEL_ARGS}")
set_slot_env b "$B_ARGS"
# set_ab_state ORDER A_LEFT B_LEFT: abstate.txt and abstate.bak on the card.
set_ab_state() {
    printf 'BOOT_ORDER=%s\nBOOT_A_LEFT=%s\nBOOT_B_LEFT=%s\n' "$1" "$2" "$3" >"$T/abstate.new"
    mcopy -o -i "$FAT" "$T/abstate.new" ::/abstate.txt && mcopy -o -i "$FAT" "$T/abstate.new" ::/abstate.bak || die "cannot write the A/B state"
}
set_ab_state "B A" 3 1

# 1. Slot B boots once and is committed by its health check.
T1=$SECONDS
# The health unit's lines (image/files/update/health): "COMMITTED slot B (…)", "HEALTH CHECK FAILED …",
# "ERROR: …".
ab_boot ab-b 'skywire-update: (COMMITTED|HEALTH CHECK FAILED|ERROR)' || true
grep -aq 'skywire-boot: booting slot B from slot-b/' "$T/ab-b-uboot.log" \
    && pass "A/B: with BOOT_ORDER \"B A\" and one try, U-Boot booted slot B ($(grep -a 'skywire-boot: state saved' "$T/ab-b-uboot.log" | head -n1 | tr -d '\r'))" \
    || fail "A/B: U-Boot did not boot slot B: $(grep -a 'skywire-boot' "$T/ab-b-uboot.log" | tr -d '\r' | tail -n 3 | tr '\n' ' ')"
grep -aqF "$VISOR_PK" "$T/ab-b.log" && pass "A/B: the visor came up in slot B with the provisioned key" || fail "A/B: no visor key on slot B's console"
grep -aq 'skywire-update: COMMITTED slot B ' "$T/ab-b.log" \
    && pass "A/B: slot B's health check committed it: $(grep -a 'skywire-update: COMMITTED slot B ' "$T/ab-b.log" | head -n1 | tr -d '\r')" \
    || fail "A/B: slot B was not committed: $(grep -a 'skywire-update' "$T/ab-b.log" | tr -d '\r' | tail -n 3 | tr '\n' ' ')"
[ "$(ab_state)" = "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A " ] && pass "A/B: state after slot B's boot: $(ab_state)(committed)" \
    || fail "A/B: state after slot B's boot: $(ab_state)"
echo "boot-test-rpi4: A/B: slot B boot took $((SECONDS - T1)) s" >&2

# 2. A slot B that cannot mount its root falls back to slot A by the counter: the initramfs gives up,
# reboots (panic=10: the watchdog's restart, which QEMU's raspi4b emulates), and boot.scr, which
# counted B's one try before the kernel started, takes slot A. One QEMU run, both boots.
set_slot_env b "${B_ARGS//root=PARTUUID=$disk_id-03/root=PARTUUID=$disk_id-0f} rootdelay=$AB_BAD_ROOTDELAY"
set_ab_state "B A" 3 1
T1=$SECONDS
ab_boot ab-bad 'skywire-update: .*(committed|marked bad|ERROR:)' || true
grep -aqE "Gave up waiting for root|does not exist" "$T/ab-bad.log" \
    && pass "A/B: slot B's kernel could not mount its root ($(grep -aE 'does not exist|Gave up' "$T/ab-bad.log" | head -n1 | tr -d '\r' | cut -c1-100))" \
    || fail "A/B: the failing slot B did not reach its initramfs: $(grep -a 'Kernel command line\|/init' "$T/ab-bad.log" | head -n 2 | tr -d '\r' | tr '\n' ' ')"
grep -a 'skywire-boot: state saved\|skywire-boot: booting' "$T/ab-bad-uboot.log" | tr -d '\r' | sed 's/^/    u-boot| /'
grep -aq 'state saved (from abstate.txt): BOOT_ORDER B A, tries left A 3, B 0' "$T/ab-bad-uboot.log" \
    && grep -aq 'skywire-boot: booting slot B from slot-b/' "$T/ab-bad-uboot.log" \
    && pass "A/B: boot.scr spent B's one try (written before its kernel started) and booted B" \
    || fail "A/B: U-Boot did not count and boot slot B's one try"
grep -aq 'reboot: Restarting system' "$T/ab-bad.log" && pass "A/B: the failed boot restarted the board by itself (initramfs panic=10)" \
    || fail "A/B: no restart after the failed boot"
[ "$(grep -ac 'skywire-boot: booting slot' "$T/ab-bad-uboot.log")" -ge 2 ] && [ "$(grep -a 'skywire-boot: booting slot' "$T/ab-bad-uboot.log" | tail -n1 | tr -d '\r')" = "skywire-boot: booting slot A from slot-a/" ] \
    && pass "A/B: the next boot took slot A ($(grep -a 'skywire-boot: state saved' "$T/ab-bad-uboot.log" | tail -n1 | tr -d '\r'))" \
    || fail "A/B: the next boot did not take slot A: $(grep -a 'skywire-boot: booting' "$T/ab-bad-uboot.log" | tr -d '\r' | tr '\n' ' ')"
grep -aqF "$VISOR_PK" "$T/ab-bad.log" && pass "A/B: the visor came up in slot A after the fallback" || fail "A/B: no visor key on the console after the fallback"
grep -a 'skywire-update' "$T/ab-bad.log" | tr -d '\r' | sed 's/^/    console| /' | head -n 4
[[ $(ab_state) == "BOOT_A_LEFT=3 BOOT_B_LEFT=0 "* ]] && pass "A/B: state after the fallback: $(ab_state)(slot A kept, B none)" \
    || fail "A/B: state after the fallback: $(ab_state)"
echo "boot-test-rpi4: A/B: failing B and fallback took $((SECONDS - T1)) s" >&2
