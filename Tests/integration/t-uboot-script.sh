#!/usr/bin/env bash
# The A/B boot script (image/files/update/boot.cmd) under Debian's U-Boot for QEMU virt
# (u-boot-qemu, -bios), one boot per QEMU run (-no-reboot: U-Boot's `reset` ends QEMU), on a small
# disk made here: a FAT partition with boot.scr, abstate.txt/.bak and slot directories whose
# "kernel" is a 76-byte arm64 Image that powers the machine off (PSCI SYSTEM_OFF), so a boot that
# reaches booti also ends QEMU. After each boot the test reads abstate.txt back (mtools) and the
# console. Checked: the first slot of BOOT_ORDER with tries boots and its count is written down
# before the kernel starts; a slot on its one try boots once, then the other; a slot with tries but
# no slot.env is skipped; an unreadable abstate.txt falls back to abstate.bak; a state file that
# sets other variables (bootcmd, sk_args) changes nothing but the three counters; an invalid state
# in both files boots A with 3 tries each; no tries left anywhere: 3 each and a reset; a slot whose
# kernel is missing spends its try and resets. The U-Boot rauc backend and lib-uboot.sh run
# against the same kind of files on the host (their state transitions).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
export MTOOLS_SKIP_CHECK=1
UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
for c in qemu-system-aarch64 mkimage mcopy mkfs.vfat sfdisk; do command -v "$c" >/dev/null || die "$c missing (scripts/install-deps.sh)"; done
[ -f "$UBOOT" ] || die "$UBOOT missing (u-boot-qemu; scripts/install-deps.sh)"
# One boot: U-Boot's 2 s autoboot delay plus the scan; generous for a loaded 2-core host.
BOOT_TIMEOUT_SECONDS=120
BOOT_MIB=64
W=$T_WORK
mkimage -A arm64 -O linux -T script -C none -d "$repo/image/files/update/boot.cmd" "$W/boot.scr" >/dev/null || die "mkimage failed"

# The stand-in kernel: an arm64 Image header (branch over it, text_offset 0, image_size 4 KiB,
# flags 0xa, magic "ARM\x64" at 0x38), then at 0x40: movz w0,#8; movk w0,#0x8400,lsl #16
# (PSCI SYSTEM_OFF, 0x84000008); hvc #0; b . (QEMU virt without EL2 takes PSCI calls by hvc).
{
    printf '\x10\x00\x00\x14\x00\x00\x00\x00'                       # b 0x40
    printf '\x00\x00\x00\x00\x00\x00\x00\x00'                       # text_offset
    printf '\x00\x10\x00\x00\x00\x00\x00\x00'                       # image_size
    printf '\x0a\x00\x00\x00\x00\x00\x00\x00'                       # flags
    head -c 24 /dev/zero                                            # res2..res4
    printf 'ARM\x64\x00\x00\x00\x00'                                # magic, res5
    printf '\x00\x01\x80\x52\x00\x80\xb0\x72\x02\x00\x00\xd4\x00\x00\x00\x14'
} >"$W/vmlinuz"
head -c 4096 /dev/urandom >"$W/initrd.img"

# disk NAME TXT BAK SLOTS...: $W/NAME.img with abstate.txt (TXT), abstate.bak (BAK; "-" for none)
# and each slot (a, b; "a-nokernel" has slot.env but no vmlinuz).
disk() {
    local name=$1 txt=$2 bak=$3 s d
    shift 3
    rm -rf "$W/$name.d" && mkdir -p "$W/$name.d"
    cp "$W/boot.scr" "$W/$name.d/"
    printf '%b' "$txt" >"$W/$name.d/abstate.txt"
    [ "$bak" = - ] || printf '%b' "$bak" >"$W/$name.d/abstate.bak"
    for s in "$@"; do
        d=$W/$name.d/slot-${s%%-*}
        mkdir -p "$d"
        printf 'sk_args=console=ttyAMA0 rauc.slot=%s marker=%s\nsk_fdt=\n' "${s%%-*}" "$name" >"$d/slot.env"
        [ "$s" != "${s%-nokernel}" ] || cp "$W/vmlinuz" "$d/vmlinuz"
        cp "$W/initrd.img" "$d/initrd.img"
    done
    rm -f "$W/$name.vfat" "$W/$name.img"
    mkfs.vfat -C -F 32 -n SKYBOOT "$W/$name.vfat" $((BOOT_MIB * 1024)) >/dev/null
    (cd "$W/$name.d" && mcopy -s -i "$W/$name.vfat" ./* ::/)
    truncate -s $((BOOT_MIB + 2))M "$W/$name.img"
    printf 'label: gpt\nstart=2048, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="boot", attrs="LegacyBIOSBootable"\n' \
        $((BOOT_MIB * 2048)) | sfdisk -q "$W/$name.img"
    dd if="$W/$name.vfat" of="$W/$name.img" bs=1M seek=1 conv=notrunc status=none
}
# boot NAME: one U-Boot boot of NAME.img; the console in $W/NAME.log (appended), QEMU's end in BOOT_END.
boot() {
    local rc=0
    timeout "$BOOT_TIMEOUT_SECONDS" qemu-system-aarch64 -M virt -cpu cortex-a57 -m 512 -bios "$UBOOT" -no-reboot \
        -display none -monitor none -serial stdio -nic none \
        -drive "if=none,id=hd0,format=raw,file=$W/$1.img" -device virtio-blk-pci,drive=hd0 \
        2>&1 | tr -d '\r' >"$W/$1.last"
    rc=${PIPESTATUS[0]}
    cat "$W/$1.last" >>"$W/$1.log"
    BOOT_END=exited; [ "$rc" != 124 ] || BOOT_END=timeout
}
# state NAME: abstate.txt after the boot, one line, sorted.
state() { mtype -i "$W/$1.img@@1M" ::/abstate.txt 2>/dev/null | tr -d '\000\r' | sort | tr '\n' ' ' | sed 's/ $//'; }
booted() { grep -o 'skywire-boot: booting slot [AB]' "$W/$1.last" | awk '{print $NF}' || true; }
started() { grep -q 'Starting kernel' "$W/$1.last"; }
# expect NAME WHAT SLOT STATE: the last boot of NAME booted SLOT ("-": none) and left STATE.
expect() {
    local got_slot got_state
    got_slot=$(booted "$1"); got_state=$(state "$1")
    if [ "$BOOT_END" = timeout ]; then fail "$2: QEMU did not end within $BOOT_TIMEOUT_SECONDS s: $(tail -n 5 "$W/$1.last" | tr '\n' ' ')"; return; fi
    if [ "${got_slot:--}" = "$3" ] && [ "$got_state" = "$4" ]; then pass "$2: booted ${3/-/no slot}, state '$got_state'"
    else fail "$2: booted '${got_slot:-none}', state '$got_state'; expected '$3', '$4': $(grep 'skywire-boot' "$W/$1.last" | tr '\n' ' ')"; fi
}

# 1. The image as built: A with 3 tries, B not installed.
disk fresh 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' a
boot fresh
expect fresh "fresh image" A "BOOT_A_LEFT=2 BOOT_B_LEFT=0 BOOT_ORDER=A B"
started fresh && pass "fresh image: booti started the slot's kernel" \
    || fail "fresh image: the kernel did not start: $(tail -n 5 "$W/fresh.last" | tr '\n' ' ')"

# 2. B installed on trial (one try, first): boots B once, then A.
disk trial 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n' 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n' a b
boot trial
expect trial "slot B on trial, first boot" B "BOOT_A_LEFT=3 BOOT_B_LEFT=0 BOOT_ORDER=B A"
boot trial
expect trial "slot B on trial, second boot (no health check committed it)" A "BOOT_A_LEFT=2 BOOT_B_LEFT=0 BOOT_ORDER=B A"

# 3. B has tries but no slot.env (rauc marked it bad before writing it; a power cut): A boots.
disk noenv 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n' - a
boot noenv
expect noenv "slot B with tries but not installed" A "BOOT_A_LEFT=2 BOOT_B_LEFT=1 BOOT_ORDER=B A"

# 4. abstate.txt unreadable (a power cut during U-Boot's write): abstate.bak decides.
disk torn 'BOOT_ORD\001\377' 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n' a b
boot torn
expect torn "torn abstate.txt, abstate.bak read" B "BOOT_A_LEFT=3 BOOT_B_LEFT=0 BOOT_ORDER=B A"

# 5. A state file that sets other variables: only the three counters are imported.
disk inject 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\nbootcmd=echo INJECTED\nsk_args=INJECTED\nsk_slot=B\n' - a
boot inject
expect inject "state file with bootcmd, sk_args, sk_slot" A "BOOT_A_LEFT=2 BOOT_B_LEFT=0 BOOT_ORDER=A B"
grep -q INJECTED "$W/inject.last" && fail "inject: an injected variable reached the console" || pass "inject: no injected variable was used"

# 6. Invalid values in both files (order, counts out of range): A B with 3 tries each.
disk invalid 'BOOT_ORDER=C\nBOOT_A_LEFT=9\nBOOT_B_LEFT=1\n' 'BOOT_ORDER=A B\nBOOT_A_LEFT=-1\nBOOT_B_LEFT=x\n' a
boot invalid
expect invalid "invalid abstate.txt and abstate.bak" A "BOOT_A_LEFT=2 BOOT_B_LEFT=3 BOOT_ORDER=A B"

# 7. No tries left anywhere: 3 each again, reset (rauc's scheme), then A boots.
disk none 'BOOT_ORDER=A B\nBOOT_A_LEFT=0\nBOOT_B_LEFT=0\n' - a b
boot none
expect none "no slot with tries left" - "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=A B"
grep -q 'no slot has tries left' "$W/none.last" && ! started none && pass "no tries: reset without starting a kernel" || fail "no tries: $(grep skywire-boot "$W/none.last" | tr '\n' ' ')"
boot none
expect none "after the reset" A "BOOT_A_LEFT=2 BOOT_B_LEFT=3 BOOT_ORDER=A B"

# 8. A slot whose kernel is missing: its try is spent, reset; the next boot takes the other slot.
disk nokernel 'BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n' - a b-nokernel
boot nokernel
expect nokernel "slot B without a kernel" B "BOOT_A_LEFT=3 BOOT_B_LEFT=0 BOOT_ORDER=B A"
grep -q 'did not start' "$W/nokernel.last" && ! started nokernel && pass "slot B without a kernel: reset" || fail "slot B without a kernel: $(grep skywire-boot "$W/nokernel.last" | tr '\n' ' ')"
boot nokernel
expect nokernel "slot B without a kernel, next boot" A "BOOT_A_LEFT=2 BOOT_B_LEFT=0 BOOT_ORDER=B A"

# The Linux side: the backend and lib-uboot.sh on a fake boot partition (paths rewritten, the
# booted slot from FAKE_BOOTED instead of /proc/cmdline).
u=$repo/image/files/update
L=$W/linux
mkdir -p "$L/esp/slot-a"
sed -e "s|^ESP=/boot/firmware|ESP=$L/esp|" -e "s|/usr/lib/skywire/update/lib-uboot.sh|$u/lib-uboot.sh|g" \
    -e "s|^STATUS_FILE=.*|STATUS_FILE=$L/status.json|" "$u/lib.sh" >"$L/lib.sh"
echo 'booted_slot() { echo "${FAKE_BOOTED:-A}"; }' >>"$L/lib.sh"
sed -e "s|/usr/lib/skywire/update/lib.sh|$L/lib.sh|" -e "s|^UBOOT_CONF=.*|UBOOT_CONF=/nonexistent|" "$u/bootloader-uboot" >"$L/bootloader"
chmod 755 "$L/bootloader"
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' | tee "$L/esp/abstate.txt" >"$L/esp/abstate.bak"
printf 'sk_args=root=PARTUUID=aaaa rauc.slot=A\nsk_fdt=\n' >"$L/esp/slot-a/slot.env"
lstate() { tr -d '\000' <"$L/esp/abstate.txt" | sort | tr '\n' ' ' | sed 's/ $//'; echo; }
check_linux() { local got; got=$(eval "$2" 2>&1) || true; [ "$got" = "$3" ] && pass "backend: $1: $got" || fail "backend: $1: got '$got', expected '$3'"; }
check_linux "image: primary, states" '"$L/bootloader" get-primary; "$L/bootloader" get-state A; "$L/bootloader" get-state B' "A
good
bad"
"$L/bootloader" set-state B bad 2>/dev/null
mkdir -p "$L/esp/slot-b" && printf 'sk_args=root=PARTUUID=bbbb rauc.slot=B\nsk_fdt=\n' >"$L/esp/slot-b/slot.env"
( . "$L/lib.sh"; uboot_set B 1 first )
check_linux "B installed, set primary with one try" 'lstate; cat "$L/esp/abstate.bak" | sort | tr "\n" " " | sed "s/ $//"' \
    "BOOT_A_LEFT=3 BOOT_B_LEFT=1 BOOT_ORDER=B A
BOOT_A_LEFT=3 BOOT_B_LEFT=1 BOOT_ORDER=B A"
printf 'BOOT_A_LEFT=3\nBOOT_B_LEFT=0\nBOOT_ORDER=B A\n\0' >"$L/esp/abstate.txt"     # as boot.scr leaves it
check_linux "B booted on its last try: on trial" 'FAKE_BOOTED=B bash -c ". $L/lib.sh; on_trial B && echo trial || echo committed"' trial
FAKE_BOOTED=B "$L/bootloader" set-state B good 2>/dev/null
check_linux "mark-good commits B" 'lstate; FAKE_BOOTED=B bash -c ". $L/lib.sh; on_trial B && echo trial || echo committed"' \
    "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A
committed"
printf 'BOOT_A_LEFT=3\nBOOT_B_LEFT=2\nBOOT_ORDER=B A\n\0' >"$L/esp/abstate.txt"
FAKE_BOOTED=B bash -c ". $L/lib.sh; booted_committed B"
check_linux "a committed slot's boot restores its tries" lstate "BOOT_A_LEFT=3 BOOT_B_LEFT=3 BOOT_ORDER=B A"
FAKE_BOOTED=B "$L/bootloader" set-state A bad 2>/dev/null
check_linux "rauc marks A bad before writing it: no tries, not installed" 'lstate; [ -e "$L/esp/slot-a/slot.env" ] && echo installed || echo absent; FAKE_BOOTED=B bash -c ". $L/lib.sh; slot_entry A"' \
    "BOOT_A_LEFT=0 BOOT_B_LEFT=3 BOOT_ORDER=B A
absent"
printf 'sk_args=root=PARTUUID=aaaa rauc.slot=A\nsk_fdt=\n' >"$L/esp/slot-a/slot.env"
check_linux "A installed with no tries (a failed trial): shown bad, for the rollback report" 'FAKE_BOOTED=B bash -c ". $L/lib.sh; slot_entry A | cut -d\" \" -f2"' bad
printf 'garbage' >"$L/esp/abstate.txt"
check_linux "unreadable abstate.txt: abstate.bak read" 'bash -c ". $L/lib.sh; uboot_state; echo \$BOOT_ORDER \$BOOT_A_LEFT \$BOOT_B_LEFT"' "B A 0 3"
check_linux "an invalid state is refused" '( . "$L/lib.sh"; uboot_state_write "A B" 7 0 ) 2>&1 | sed "s/.*ERROR: //"' "invalid A/B state 'A B' 7 0"
# rauc's slot devices (lib.sh slot_device, for prepare_slot): by PARTUUID on the Pi's MBR disk.
printf '[system]\ncompatible=skywire-rpi4\n\n[slot.rootfs.0]\ndevice=/dev/disk/by-partuuid/1234abcd-02\ntype=ext4\nbootname=A\n\n[slot.rootfs.1]\nbootname=B\ntype=ext4\ndevice=/dev/disk/by-partuuid/1234abcd-03\n' >"$L/system.conf"
check_linux "slot_device: the slots of an MBR system.conf (device= before or after bootname=)" \
    'RAUC_SYSTEM_CONF=$L/system.conf bash -c ". $L/lib.sh; slot_device A; slot_device B"' "/dev/disk/by-partuuid/1234abcd-02
/dev/disk/by-partuuid/1234abcd-03"
check_linux "slot_device: a slot system.conf does not list is an error" \
    '( RAUC_SYSTEM_CONF=$L/system.conf; . "$L/lib.sh"; slot_device C ) 2>&1 | sed "s/.*ERROR: //"' "no slot with bootname=C in $L/system.conf"

[ "$T_FAILS" -eq 0 ] || exit 1
