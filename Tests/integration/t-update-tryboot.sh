#!/usr/bin/env bash
# The Raspberry Pi A/B backend (image/files/update/tryboot/: rauc's custom bootloader over the
# firmware's autoboot.txt and tryboot flag, docs/update.md "Raspberry Pi: tryboot") run against a
# fake board: SKYWIRE_UPDATE_PREFIX points every path (the shared FAT partition with autoboot.txt,
# /proc/cmdline, /run, the state) into a directory, and the slots' boot and root partitions are
# directories. The real lib.sh, persist.list and backend of the repository are used. Checks, as
# rauc and the health check drive it: the layout the image ships, an install (rauc marks the slot
# bad, writes it, sets it primary: its boot partition rebuilt from its root, the state carried,
# autoboot.txt's [tryboot] names it, the reboot is armed with "0 tryboot"), the trial boot and its
# commit, a failed health check, a trial that crashes, a power cut before the reboot, and the
# refusals (a slot that is not A or B, a root that is not a Pi A/B image, a file list escaping the
# root). No firmware runs here: that tryboot boots [tryboot]'s partition once is the firmware's part.
here=$(cd "$(dirname "$0")" && pwd)
SKYWIRE_BIN=${SKYWIRE_BIN:-/bin/true}    # lib.sh wants it; this test does not run the visor
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
U=$repo/image/files/update
LIB=$T_WORK/lib P=$T_WORK/board
DISK=1234abcd
mkdir -p "$LIB" "$P/tmp"
cp "$U/lib.sh" "$U/persist.list" "$U/tryboot/lib-board.sh" "$LIB/"
export UPDATE_LIB_DIR=$LIB SKYWIRE_UPDATE_PREFIX=$P TMPDIR=$P/tmp
BL=("$U/tryboot/bootloader")
bl() { "${BL[@]}" "$@" 2>>"$T_WORK/bootloader.log"; }
# The autoboot.txt the image ships (slot A committed, no trial), byte for byte.
autoboot() { printf '[all]\ntryboot_a_b=1\nboot_partition=%s\n[tryboot]\nboot_partition=%s\n' "$1" "$2"; }
expect_autoboot() {
    if [ "$(cat "$P/boot/firmware/autoboot.txt")" = "$(autoboot "$1" "$2")" ]; then pass "$3: autoboot.txt [all] boot_partition=$1, [tryboot] boot_partition=$2"
    else fail "$3: autoboot.txt is: $(tr '\n' ' ' <"$P/boot/firmware/autoboot.txt"), expected [all] $1 [tryboot] $2"; fi
}
expect() { # expect WHAT WANT CMD...
    local what=$1 want=$2 got; shift 2
    got=$("$@" 2>>"$T_WORK/bootloader.log") || got="(exit $?) $got"
    [ "$got" = "$want" ] && pass "$what: $got" || fail "$what: got '$got', want '$want'"
}
# boot SLOT: a reboot into SLOT (a fresh /run; the kernel command line of SLOT's cmdline.txt, with
# what the firmware adds before it).
boot() {
    local n=5; [ "$1" = B ] && n=6
    rm -rf "$P/run"; mkdir -p "$P/run"
    echo "coherent_pool=1M 8250.nr_uarts=1 root=PARTUUID=$DISK-0$n rw rootwait console=ttyS1,115200 rauc.slot=$1 panic=10" >"$P/proc/cmdline"
}
# new_root SLOT VERSION: what rauc writes into SLOT's root partition: an image built elsewhere (its
# own partition ids in /etc/fstab), with its pi-boot files.
new_root() {
    local r=$P/dev/root-$(tr AB ab <<<"$1")
    rm -rf "$r"; mkdir -p "$r/boot" "$r/etc/skywire" "$r/usr/lib/raspi-firmware" "$r/usr/lib/linux-image-9.9/broadcom" \
        "$r/usr/lib/skywire/update/pi-boot" "$r/var/lib/skywire"
    echo "kernel $2" >"$r/boot/vmlinuz-9.9"; echo "initrd $2" >"$r/boot/initrd.img-9.9"
    echo "firmware $2" >"$r/usr/lib/raspi-firmware/start4.elf"; echo "dtb $2" >"$r/usr/lib/linux-image-9.9/broadcom/bcm2711-rpi-4-b.dtb"
    printf 'start4.elf /usr/lib/raspi-firmware/start4.elf\nvmlinuz /boot/vmlinuz-9.9\ninitrd.img /boot/initrd.img-9.9\nbcm2711-rpi-4-b.dtb /usr/lib/linux-image-9.9/broadcom/bcm2711-rpi-4-b.dtb\n' \
        >"$r/usr/lib/skywire/update/pi-boot/files"
    printf '# skywire %s\narm_64bit=1\nkernel=vmlinuz\n' "$2" >"$r/usr/lib/skywire/update/pi-boot/config.txt"
    echo "root=PARTUUID=feedf00d-05 rw rootwait console=ttyS1,115200 rauc.slot=A panic=10" >"$r/usr/lib/skywire/update/pi-boot/cmdline.txt"
    printf 'PARTUUID=feedf00d-05 / ext4 defaults 0 1\nPARTUUID=feedf00d-01 /boot/firmware vfat defaults,nofail 0 2\n' >"$r/etc/fstab"
    printf 'BOARD=rpi4\nVERSION=%s\n' "$2" >"$r/etc/skywire/image-release"
    echo "HEALTH_TIMEOUT_SECONDS=99 # the new image's" >"$r/etc/skywire/update.conf"
    echo '{"pk": "from the new image"}' >"$r/etc/skywire/skywire-config.json"
}
# install SLOT VERSION: rauc's calls around writing SLOT.
install() { bl set-state "$1" bad && new_root "$1" "$2" && bl set-primary "$1"; }

# --- the board as the image ships it: slot A committed ------------------------------------------
mkdir -p "$P/boot/firmware" "$P/proc" "$P/etc/skywire" "$P/var/lib/skywire" "$P/dev/boot-a" "$P/dev/boot-b"
autoboot 2 2 >"$P/boot/firmware/autoboot.txt"
printf 'PARTUUID=%s-05 / ext4 defaults 0 1\nPARTUUID=%s-01 /boot/firmware vfat defaults,nofail 0 2\n' "$DISK" "$DISK" >"$P/etc/fstab"
echo '{"pk": "the board key"}' >"$P/etc/skywire/skywire-config.json"
echo "HEALTH_TIMEOUT_SECONDS=180" >"$P/etc/skywire/update.conf"
echo "secret visor state" >"$P/var/lib/skywire/visor.key"
echo skwpi >"$P/etc/hostname"
echo "stale file of an earlier slot B" >"$P/dev/boot-b/old.txt"
boot A
expect "get-current" A bl get-current
expect "get-primary (shipped)" A bl get-primary
expect "get-state A" good bl get-state A
expect "get-state B (never written: its partition is not named)" good bl get-state B

# --- refusals ----------------------------------------------------------------------------------
bl get-state C && fail "get-state C accepted" || pass "a slot other than A or B is refused"
bl set-state A maybe && fail "set-state A maybe accepted" || pass "a state other than good or bad is refused"
bl set-state B bad
rm -rf "$P/dev/root-b"; mkdir -p "$P/dev/root-b/etc"
bl set-primary B && fail "set-primary B with a root that has no pi-boot files succeeded" \
    || pass "a root that is not a Pi A/B image is refused: $(tail -n 1 "$T_WORK/bootloader.log")"
expect_autoboot 2 2 "after the refused set-primary: nothing armed"
[ ! -e "$P/run/systemd/reboot-param" ] && pass "no tryboot armed after the refusal" || fail "reboot-param written after a refusal"
new_root B v2
echo "../../../etc/shadow /etc/hostname" >>"$P/dev/root-b/usr/lib/skywire/update/pi-boot/files"
bl set-primary B && fail "a pi-boot/files line with .. was accepted" \
    || { grep -q "bad line in .*etc/shadow" "$T_WORK/bootloader.log" && pass "a pi-boot/files line leaving the boot partition is refused: $(tail -n 1 "$T_WORK/bootloader.log")" \
         || fail "the .. line was not refused as such: $(tail -n 1 "$T_WORK/bootloader.log")"; }
[ -e "$P/dev/boot-b/old.txt" ] && pass "the refused file list left slot B's boot partition untouched" || fail "slot B's boot partition changed by a refused file list"
expect_autoboot 2 2 "after the refused file list"

# --- install v2 into B, trial boot, commit -----------------------------------------------------
expect "get-state B after rauc's set-state bad" bad bl get-state B
install B v2 && pass "set-primary B (v2) succeeded" || fail "set-primary B: $(tail -n 3 "$T_WORK/bootloader.log")"
expect_autoboot 2 3 "installed"
(($(stat -c %s "$P/boot/firmware/autoboot.txt") <= 512)) && pass "autoboot.txt within the firmware's 512 bytes" || fail "autoboot.txt over 512 bytes"
expect "reboot argument armed" "0 tryboot" cat "$P/run/systemd/reboot-param"
expect "get-primary after the install (the trial)" B bl get-primary
expect "get-state B after the install" good bl get-state B
[ ! -e "$P/dev/boot-b/old.txt" ] && pass "slot B's boot partition emptied first" || fail "stale file left on slot B's boot partition"
for f in start4.elf vmlinuz initrd.img bcm2711-rpi-4-b.dtb; do
    grep -q v2 "$P/dev/boot-b/$f" 2>/dev/null && pass "boot partition B: $f from root B" || fail "boot partition B: $f missing or not v2's"
done
expect "boot partition B: config.txt" "# skywire v2" head -n1 "$P/dev/boot-b/config.txt"
expect "boot partition B: cmdline.txt" "root=PARTUUID=$DISK-06 rw rootwait console=ttyS1,115200 rauc.slot=B panic=10" cat "$P/dev/boot-b/cmdline.txt"
expect "root B: fstab's root is its own partition" "PARTUUID=$DISK-06" awk '$2 == "/" { print $1 }' "$P/dev/root-b/etc/fstab"
expect "root B: fstab's /boot/firmware is this board's" "PARTUUID=$DISK-01" awk '$2 == "/boot/firmware" { print $1 }' "$P/dev/root-b/etc/fstab"
expect "root B: the visor's config carried" '{"pk": "the board key"}' cat "$P/dev/root-b/etc/skywire/skywire-config.json"
expect "root B: the visor's state carried" "secret visor state" cat "$P/dev/root-b/var/lib/skywire/visor.key"
expect "root B: the hostname carried" skwpi cat "$P/dev/root-b/etc/hostname"
expect "root B: the new image's update.conf kept" "HEALTH_TIMEOUT_SECONDS=99 # the new image's" cat "$P/dev/root-b/etc/skywire/update.conf"
expect "root B: the new image's release kept" "VERSION=v2" sed -n 2p "$P/dev/root-b/etc/skywire/image-release"
expect "update status after the install" "installed B v2" jq -r '"\(.state) \(.slot) \(.version)"' "$P/var/lib/skywire/update-status.json"

boot B                                       # the firmware took [tryboot]'s partition: slot B, once
expect "trial boot: get-current" B bl get-current
expect "trial boot: the health check sees slot B on trial" "0 trial" bash -c '. "$UPDATE_LIB_DIR/lib.sh"; slot_entry B | cut -d" " -f1,2'
bash -c '. "$UPDATE_LIB_DIR/lib.sh"; on_trial B' && pass "on_trial B in its trial boot" || fail "on_trial B is false in B's trial boot"
bl set-state B good && pass "rauc status mark-good booted (set-state B good)" || fail "set-state B good failed"
expect_autoboot 3 3 "committed B"
expect "after the commit: get-primary" B bl get-primary
bash -c '. "$UPDATE_LIB_DIR/lib.sh"; on_trial B' && fail "slot B still on trial after its commit" || pass "slot B not on trial after its commit"
boot B
expect "a normal boot after the commit: get-state B" good bl get-state B
expect "a normal boot after the commit: get-state A (the old slot, intact)" good bl get-state A

# --- v3 into A fails its health check: back to B ------------------------------------------------
install A v3 && pass "set-primary A (v3) succeeded" || fail "set-primary A: $(tail -n 3 "$T_WORK/bootloader.log")"
expect_autoboot 3 2 "v3 installed into A"
expect "boot partition A: cmdline.txt names root A" "root=PARTUUID=$DISK-05 rw rootwait console=ttyS1,115200 rauc.slot=A panic=10" cat "$P/dev/boot-a/cmdline.txt"
boot A
bl set-state A bad && pass "health check failed: rauc status mark-bad booted (set-state A bad)" || fail "set-state A bad failed"
expect_autoboot 3 3 "after A's failed trial (no trial armed any more)"
boot B                                       # the health check's reboot is a normal one: [all]
expect "after the failed trial: get-state A" bad bl get-state A
expect "after the failed trial: get-primary" B bl get-primary
expect "the health check on B sees slot A bad (reports the rollback)" "0 bad" bash -c '. "$UPDATE_LIB_DIR/lib.sh"; slot_entry A | cut -d" " -f1,2'

# --- a trial that crashes (or hangs until the watchdog, or loses power) ------------------------
install A v4 && pass "set-primary A (v4) succeeded" || fail "set-primary A (v4): $(tail -n 3 "$T_WORK/bootloader.log")"
expect "v4 installed: get-state A" good bl get-state A
boot A                                       # the trial starts ...
boot B                                       # ... and the board resets before the health check
expect_autoboot 3 2 "after the crashed trial (autoboot.txt untouched by it)"
expect "after the crashed trial: get-state A" bad bl get-state A
expect "after the crashed trial: get-primary" B bl get-primary
expect "the health check on B sees slot A bad" "0 bad" bash -c '. "$UPDATE_LIB_DIR/lib.sh"; slot_entry A | cut -d" " -f1,2'
bl set-state A bad && expect_autoboot 3 3 "the crashed trial disarmed by set-state A bad" || fail "set-state A bad after the crash"

# --- a power cut after the install, before the reboot ------------------------------------------
install A v5 && pass "set-primary A (v5) succeeded" || fail "set-primary A (v5)"
boot B                                       # power back: /run is empty, the tryboot flag was never set
expect "after a power cut before the reboot: get-primary" B bl get-primary
expect "after a power cut before the reboot: get-state A" bad bl get-state A

[ "$T_FAILS" -eq 0 ] || { cat "$T_WORK/bootloader.log" >&2; exit 1; }
