#!/usr/bin/env bash
# image/update-test.sh: A/B updates of a board image under QEMU (`make update-test`, docs/update.md).
#
#   BOARD=qemu-arm64-ab|qemu-arm64-uboot|x86-64 [SKYWIRE_BIN=the board's skywire] image/update-test.sh
#
# Builds image v1 and the bundles v2 (good), v3bad (v2's root filesystem with a stand-in skywire that
# exits 1: its visor cannot start), v2 signed by another key, v2 for another board, and an unsigned file; boots v1 (slot A)
# and checks, over SSH (QEMU user networking, 127.0.0.1 only):
#   1. the unsigned, the other key's and the other board's bundles are refused with a clear message
#      and nothing changes (boot entries, next slot);
#   2. v2 installs into slot B, the board reboots into it, reports v2, commits the slot (health
#      check) and keeps the visor's key and hostname;
#   3. v3bad installs into slot A, boots once there, fails its health check, and the board comes
#      back to v2 in slot B by itself, reporting the rollback;
#   4. a power cut (QEMU killed) in the middle of writing a bundle into slot A leaves v2 booting.
# Prints bundle sizes and install times. Root (image builds, loop-free). Work under $T (kept on failure).
set -euo pipefail
{
REPO=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${BOARD:-qemu-arm64-ab}
case $BOARD in qemu-arm64-ab|qemu-arm64-uboot|x86-64) ;;
    *) echo "update-test: only qemu-arm64-ab, qemu-arm64-uboot and x86-64 so far (docs/update.md)" >&2; exit 2;; esac
# The machine (image/testing/qemu-machine.sh: x86-64 under KVM when /dev/kvm is usable), the board's
# skywire build, and another A/B board for the bundle that must be refused as another board's.
. "$REPO/image/testing/qemu-machine.sh"
SKYWIRE_ARCH=$(sed -n 's/^SKYWIRE_ARCH=//p' "$REPO/board-configs/$BOARD.conf")
OTHER_BOARD=x86-64; [ "$BOARD" != x86-64 ] || OTHER_BOARD=qemu-arm64-ab
OUT=$REPO/out/update-test
[ "$BOARD" = qemu-arm64-ab ] || OUT=$OUT-$BOARD
CACHE_DIR=${SKYWIRE_BUILD_CACHE:-/var/cache/skywire-build}
GUEST_MEM_MIB=2048
GUEST_CPUS=2
# Bounds (generous: TCG on a loaded 2-core host).
SSH_WAIT_SECONDS=900
INSTALL_TIMEOUT_SECONDS=1200
ROLLBACK_WAIT_SECONDS=1500
# How long after rauc starts copying the image into the slot QEMU is killed.
CUT_DELAY_SECONDS=4
# The broken bundle's health bound (the image's default is 180 s; it fails the same way, sooner).
V3BAD_HEALTH_TIMEOUT_SECONDS=60
DEVICE_TIMEOUT_ARG=systemd.default_device_timeout_sec=600
T=$(mktemp -d "${TMPDIR:-/tmp}/skywire-update-test.XXXXXX")
qemu_machine "$BOARD" "$T" || exit 2
FAILS=0 PASSES=0
pass() { PASSES=$((PASSES + 1)); echo "update-test: ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "update-test: FAIL: $*"; }
die() { echo "update-test: ERROR: $*" >&2; exit 1; }
QEMU_PID=""
cleanup() {
    [ -z "$QEMU_PID" ] || kill -9 "$QEMU_PID" 2>/dev/null || true
    if ((FAILS)) || [ -n "${KEEP:-}" ]; then echo "update-test: work directory kept: $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# --- builds -------------------------------------------------------------------
# A fixed timestamp (not the last commit's), so that a rerun after a commit reuses the builds
# whose inputs did not change.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1796400000}
[ -n "${SKYWIRE_BIN:-}" ] || { make -C "$REPO" cross ARCH="$SKYWIRE_ARCH"; SKYWIRE_BIN=$REPO/out/$SKYWIRE_ARCH/skywire; }
printf '#!/bin/sh\necho "skywire: update-test stand-in for a broken build" >&2\nexit 1\n' >"$T/skywire-broken"
chmod 755 "$T/skywire-broken"
t0=$(date +%s)
# V1_RAW=path: v1's raw disk image as image/build.sh left it (KEEP_RAW=1), instead of building it.
[ -n "${V1_RAW:-}" ] || BOARD=$BOARD VERSION=v1 SKYWIRE_BIN=$SKYWIRE_BIN OUT_DIR=$OUT/v1 "$REPO/image/build.sh"
# v2: `make bundle`'s two steps; the bundle is made again only when its root filesystem is newer.
BOARD=$BOARD VERSION=v2 SKYWIRE_BIN=$SKYWIRE_BIN OUT_DIR=$OUT/v2 BUNDLE=1 "$REPO/image/build.sh"
[ "$OUT/v2/skywire-$BOARD-v2.raucb" -nt "$OUT/v2/skywire-$BOARD-v2.rootfs.ext4" ] \
    || BOARD=$BOARD VERSION=v2 ROOTFS=$OUT/v2/skywire-$BOARD-v2.rootfs.ext4 OUT_DIR=$OUT/v2 "$REPO/image/bundle.sh"
# v3bad: v2's root filesystem with the stand-in binary and version v3bad (debugfs, no second build).
mkdir -p "$OUT/v3bad"
if [ "$OUT/v3bad/skywire-$BOARD-v3bad.raucb" -nt "$OUT/v2/skywire-$BOARD-v2.rootfs.ext4" ]; then
    echo "update-test: reusing $OUT/v3bad/skywire-$BOARD-v3bad.raucb (newer than v2's root filesystem)" >&2
else
cp --sparse=always "$OUT/v2/skywire-$BOARD-v2.rootfs.ext4" "$T/v3bad.ext4"
printf 'BOARD=%s\nVERSION=v3bad\nOVERLAYS=%s\n' "$BOARD" "$(debugfs -R 'cat /etc/skywire/image-release' "$T/v3bad.ext4" 2>/dev/null | sed -n 's/^OVERLAYS=//p')" >"$T/image-release"
# Its health bound: V3BAD_HEALTH_TIMEOUT_SECONDS (the test's time; the check fails the same way).
sed "s/^HEALTH_TIMEOUT_SECONDS=.*/HEALTH_TIMEOUT_SECONDS=$V3BAD_HEALTH_TIMEOUT_SECONDS/" "$REPO/image/files/update/update.conf" >"$T/update.conf"
debugfs -w -f - "$T/v3bad.ext4" >/dev/null 2>"$T/debugfs.log" <<DEBUGFS
rm /usr/bin/skywire
write $T/skywire-broken /usr/bin/skywire
sif /usr/bin/skywire mode 0100755
rm /etc/skywire/image-release
write $T/image-release /etc/skywire/image-release
sif /etc/skywire/image-release mode 0100644
rm /etc/skywire/update.conf
write $T/update.conf /etc/skywire/update.conf
sif /etc/skywire/update.conf mode 0100644
DEBUGFS
[ "$(debugfs -R 'cat /etc/skywire/image-release' "$T/v3bad.ext4" 2>/dev/null | sed -n 's/^VERSION=//p')" = v3bad ] \
    || die "could not make the v3bad root filesystem: $(cat "$T/debugfs.log")"
# Bundled like image/bundle.sh does, with a fast squashfs compression (lzo: minutes less on TCG hosts).
mkdir -p "$T/v3bad-content"
mv "$T/v3bad.ext4" "$T/v3bad-content/rootfs.ext4"
printf '[update]\ncompatible=skywire-%s\nversion=v3bad\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n' "$BOARD" \
    >"$T/v3bad-content/manifest.raucm"
rm -f "$OUT/v3bad/skywire-$BOARD-v3bad.raucb"
rauc bundle --cert="$("$REPO/image/update-key.sh" cert)" --key="$("$REPO/image/update-key.sh" key)" \
    --mksquashfs-args="-comp lzo" "$T/v3bad-content" "$OUT/v3bad/skywire-$BOARD-v3bad.raucb" >"$T/v3bad-bundle.log" 2>&1 \
    || die "rauc bundle v3bad: $(tail -n 3 "$T/v3bad-bundle.log")"
fi
# The refused bundles carry 2 MiB of random bytes as their image (rauc refuses them before reading it).
head -c 2097152 /dev/urandom >"$T/small.ext4"
other_cert=$("$REPO/image/update-key.sh" cert other) other_key=$("$REPO/image/update-key.sh" key other)
BOARD=$BOARD VERSION=v2 ROOTFS=$T/small.ext4 OUT_DIR=$T/otherkey \
    UPDATE_CERT=$other_cert UPDATE_KEY=$other_key "$REPO/image/bundle.sh"
BOARD=$OTHER_BOARD VERSION=v2 ROOTFS=$T/small.ext4 OUT_DIR=$T/otherboard "$REPO/image/bundle.sh"
# Unsigned: a squashfs with a manifest and the image, as a bundle would carry, and no signature.
mkdir -p "$T/unsigned"
printf '[update]\ncompatible=skywire-%s\nversion=v2\n\n[image.rootfs]\nfilename=rootfs.ext4\n' "$BOARD" >"$T/unsigned/manifest.raucm"
head -c 1048576 /dev/zero >"$T/unsigned/rootfs.ext4"
mksquashfs "$T/unsigned" "$T/unsigned.raucb" -quiet -noappend >/dev/null
echo "update-test: builds took $(($(date +%s) - t0)) s" >&2
declare -A BUNDLE=([v2]=$OUT/v2/skywire-$BOARD-v2.raucb [v3bad]=$OUT/v3bad/skywire-$BOARD-v3bad.raucb
                   [otherkey]=$T/otherkey/skywire-$BOARD-v2.raucb [otherboard]=$T/otherboard/skywire-$OTHER_BOARD-v2.raucb
                   [unsigned]=$T/unsigned.raucb)
for b in v2 v3bad; do echo "update-test: bundle $b: $(stat -c %s "${BUNDLE[$b]}") bytes"; done

# --- the disk -----------------------------------------------------------------
if [ -n "${V1_RAW:-}" ]; then cp --sparse=always "$V1_RAW" "$T/disk.img"
else xz -dc "$OUT/v1/skywire-$BOARD-v1.img.xz" | dd of="$T/disk.img" bs=4M conv=sparse status=none; fi
ssh-keygen -q -t ed25519 -N '' -f "$T/id_ed25519"
printf '{"version": 1, "hostname": "skwupdate", "ssh_authorized_keys": ["%s"]}\n' "$(cat "$T/id_ed25519.pub")" >"$T/skywire-provision.json"
boot_off=$(sfdisk --json "$T/disk.img" | jq '.partitiontable.partitions[0].start * 512')
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$T/disk.img@@$boot_off" "$T/skywire-provision.json" ::/skywire-provision.json
# The boot selection's state (systemd-boot entries here; image/update-test-uboot.sh for U-Boot):
# add_kernel_arg ARG: appends ARG to slot A's kernel command line on the disk image;
# esp_entries: the state read from the disk image (QEMU stopped or not);
# BOOT_STATE_CMD: the board command that prints it; committed_re SLOT: a regex it matches when SLOT
# is committed.
add_kernel_arg() {
    local entry
    entry=$(MTOOLS_SKIP_CHECK=1 mdir -b -i "$T/disk.img@@$boot_off" ::/loader/entries | xargs -n1 basename | grep '^skywire-' | head -n1)
    MTOOLS_SKIP_CHECK=1 mtype -i "$T/disk.img@@$boot_off" "::/loader/entries/$entry" | sed "s/^options .*/& $1/" >"$T/entry.conf"
    MTOOLS_SKIP_CHECK=1 mcopy -o -i "$T/disk.img@@$boot_off" "$T/entry.conf" "::/loader/entries/$entry"
}
esp_entries() { MTOOLS_SKIP_CHECK=1 mdir -b -i "$T/disk.img@@$boot_off" ::/loader/entries 2>/dev/null | xargs -n1 basename | sort | tr '\n' ' '; }
BOOT_STATE_CMD='ls /boot/firmware/loader/entries'
committed_re() { echo "^skywire-[0-9]+-$(tr AB ab <<<"$1")\\.conf\$"; }
[ "$BOARD" != qemu-arm64-uboot ] || . "$REPO/image/update-test-uboot.sh"
# On a loaded host udev can take longer than systemd's 90 s device timeout, and the FAT partition
# (with the provisioning file) is then not mounted: the test gives devices 10 minutes (kernel
# command line of slot A; set-primary copies it into the other slot's).
add_kernel_arg "$DEVICE_TIMEOUT_ARG"

# --- QEMU ---------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSH_PORT=$(free_port)
BOOTS=0
start_qemu() {
    BOOTS=$((BOOTS + 1))
    "${QEMU_MACHINE[@]}" -smp "$GUEST_CPUS" -m "$GUEST_MEM_MIB" -display none -monitor none -serial "file:$T/serial-$BOOTS.log" \
        -drive "if=none,id=hd0,format=raw,file=$T/disk.img" -device virtio-blk-pci,drive=hd0 \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22" -device virtio-net-pci,netdev=n0,romfile= \
        -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 >"$T/qemu-$BOOTS.log" 2>&1 &
    QEMU_PID=$!
}
power_cut() { kill -9 "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; QEMU_PID=""; }
SSH=(ssh -i "$T/id_ed25519" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o ConnectTimeout=10 -o LogLevel=ERROR root@127.0.0.1)
gssh() { timeout 60 "${SSH[@]}" "$@"; }
# wait_boot [OLD_BOOT_ID] [SECONDS]: until SSH answers with a boot id other than OLD_BOOT_ID.
wait_boot() {
    local old=${1:-} end=$(($(date +%s) + ${2:-$SSH_WAIT_SECONDS})) id
    while (($(date +%s) < end)); do
        [ -n "$QEMU_PID" ] && ! kill -0 "$QEMU_PID" 2>/dev/null && die "QEMU exited: $(tail -n 5 "$T/qemu-$BOOTS.log")"
        id=$(gssh cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
        if [ -n "$id" ] && [ "$id" != "$old" ]; then BOOT_ID=$id; return 0; fi
        sleep 5
    done
    return 1
}
running() { gssh 'echo "$(sed -n s/^VERSION=//p /etc/skywire/image-release) $(tr " " "\n" </proc/cmdline | sed -n s/^rauc.slot=//p)"'; }
upload() { timeout 600 scp -q -i "$T/id_ed25519" -P "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
               -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$1" "root@127.0.0.1:/tmp/$2"; }
# install NAME: rauc install of /tmp/NAME.raucb on the board; output in $T/install-NAME.log.
install() {
    local t=$(date +%s) rc=0
    timeout "$INSTALL_TIMEOUT_SECONDS" "${SSH[@]}" "rauc install --progress /tmp/$1.raucb" >"$T/install-$1.log" 2>&1 || rc=$?
    INSTALL_SECONDS=$(($(date +%s) - t))
    return $rc
}

start_qemu
wait_boot "" || die "v1 did not come up on SSH within $SSH_WAIT_SECONDS s: $(tail -n 20 "$T/serial-$BOOTS.log")"
[ "$(running)" = "v1 A" ] && pass "v1 boots in slot A" || fail "running '$(running)', expected 'v1 A'"
gssh 'rauc status' >"$T/rauc-status-v1.txt" 2>&1 && pass "rauc status answers (booted A)" || fail "rauc status: $(tail -n 5 "$T/rauc-status-v1.txt")"
PK_V1=$(gssh "jq -r .pk /etc/skywire/skywire-config.json")
for i in $(seq 1 60); do [ "$(gssh systemctl show -P ActiveState skywire-update-health.service)" = active ] && break; sleep 5; done
gssh 'journalctl -b -u skywire-update-health --no-pager' | grep -q 'is committed: nothing to check' \
    && pass "health check: v1 is committed, nothing to check" || fail "health check on v1: $(gssh 'journalctl -b -u skywire-update-health --no-pager | tail -n 5')"

# 1. Refused bundles: nothing changes.
before=$(gssh "$BOOT_STATE_CMD; /usr/lib/skywire/update/bootloader get-primary")
for b in unsigned otherkey otherboard; do
    upload "${BUNDLE[$b]}" "$b.raucb" || die "cannot copy the $b bundle to the board"
    if install "$b"; then fail "$b bundle installed: $(tail -n 3 "$T/install-$b.log")"
    else
        msg=$(grep -a -m1 'LastError' "$T/install-$b.log" || grep -v '^ *[0-9]*%' "$T/install-$b.log" | tail -n 2 | tr '\n' ' ')
        case $b in
        # rauc's words: "Signature size is 0" (no signature), "signature verification failed",
        # "Compatible mismatch" (case-sensitive words, so both cases).
        unsigned) re='[Ss]ignature';; otherkey) re='[Ss]ignature verification|[Vv]erify error';; otherboard) re='[Cc]ompatible';;
        esac
        grep -Eq "$re" "$T/install-$b.log" && pass "$b bundle refused: $msg" || fail "$b bundle refused without a clear message: $msg"
    fi
    gssh "rm -f /tmp/$b.raucb"
done
after=$(gssh "$BOOT_STATE_CMD; /usr/lib/skywire/update/bootloader get-primary")
[ "$before" = "$after" ] && pass "refused bundles changed nothing (entries and next slot: $(tr '\n' ' ' <<<"$after"))" \
    || fail "refused bundles changed the boot entries: '$before' -> '$after'"

# reboot_into VERSION SLOT WHAT: reboots the board and waits until it runs VERSION in SLOT, through
# any number of boots (a trial that fails reboots by itself), within ROLLBACK_WAIT_SECONDS.
reboot_into() {
    local old t end r
    old=$(gssh cat /proc/sys/kernel/random/boot_id); t=$(date +%s); end=$((t + ROLLBACK_WAIT_SECONDS))
    gssh 'systemctl reboot' || true
    while (($(date +%s) < end)); do
        wait_boot "$old" 120 || continue
        r=$(running || true); old=$BOOT_ID
        echo "update-test: up: $r ($(($(date +%s) - t)) s after the reboot)"
        [ "$r" = "$1 $2" ] && { REBOOT_SECONDS=$(($(date +%s) - t)); return 0; }
    done
    return 1
}

# 2. v2: installs into B, boots once in B, commits, keeps the key.
upload "${BUNDLE[v2]}" v2.raucb || die "cannot copy the v2 bundle to the board"
install v2 && pass "v2 installed into slot B in ${INSTALL_SECONDS} s" || fail "v2 install failed: $(tail -n 5 "$T/install-v2.log")"
V2_INSTALL_SECONDS=$INSTALL_SECONDS
echo "update-test: entries before the reboot: $(gssh "$BOOT_STATE_CMD" | tr '\n' ' ')"
gssh 'rm -f /tmp/v2.raucb'
reboot_into v2 B && pass "v2 boots in slot B ($REBOOT_SECONDS s after the reboot)" || die "v2 did not come up in slot B: running '$(running)'"
for i in $(seq 1 120); do
    [ "$(gssh 'jq -r .state /var/lib/skywire/update-status.json' 2>/dev/null)" = committed ] && break; sleep 5
done
st=$(gssh cat /var/lib/skywire/update-status.json)
[ "$(jq -r .state <<<"$st")" = committed ] && pass "v2 passed its health check and committed slot B: $st" || fail "v2 not committed: $st"
grep -aq 'COMMITTED slot B (v2)' "$T"/serial-*.log && pass "the console shows the commit" || fail "no 'COMMITTED slot B (v2)' on the console"
# (read whole first: `grep -q` in a pipe with pipefail fails when it stops reading before ssh ends)
bstate=$(gssh "$BOOT_STATE_CMD" | tr '\n' ' ')
grep -Eq "$(committed_re B)" <<<"$bstate" && pass "slot B is committed (no boot counter left): $bstate" || fail "slot B's entry: $bstate"
[ "$(gssh "jq -r .pk /etc/skywire/skywire-config.json")" = "$PK_V1" ] && pass "the visor kept its key across the update" \
    || fail "the visor's key changed across the update"
[ "$(gssh hostname)" = skwupdate ] && pass "the provisioned hostname was carried over" || fail "hostname after the update: $(gssh hostname)"

# 3. v3bad: installs into A, boots once in A, fails its health check, back to v2 in B by itself.
upload "${BUNDLE[v3bad]}" v3bad.raucb || die "cannot copy the v3bad bundle"
install v3bad && pass "v3bad installed into slot A in ${INSTALL_SECONDS} s" || fail "v3bad install failed: $(tail -n 5 "$T/install-v3bad.log")"
echo "update-test: entries before the reboot: $(gssh "$BOOT_STATE_CMD" | tr '\n' ' ')"
gssh 'rm -f /tmp/v3bad.raucb'
if reboot_into v2 B; then
    pass "v3bad rolled back to v2 in slot B by itself ($REBOOT_SECONDS s after the reboot, through the trial of slot A)"
    grep -aq 'HEALTH CHECK FAILED for slot A (v3bad)' "$T"/serial-*.log && pass "slot A reported its failed health check on the console: $(grep -ah 'HEALTH CHECK FAILED' "$T"/serial-*.log | tail -n1 | tr -d '\r')" \
        || fail "no 'HEALTH CHECK FAILED for slot A (v3bad)' on the console"
    st=$(gssh cat /var/lib/skywire/update-status.json)
    [ "$(jq -r .state <<<"$st")" = rolled-back ] && [ "$(jq -r .version <<<"$st")" = v3bad ] \
        && pass "v2 reports the rollback: $st" || fail "update status after the rollback: $st"
else
    fail "v3bad: the board did not come back to v2 in B within $ROLLBACK_WAIT_SECONDS s: $(tail -n 20 "$T/serial-$BOOTS.log")"
fi

# 4. Power cut while a bundle is written into slot A: v2 keeps booting from B.
upload "${BUNDLE[v3bad]}" cut.raucb || die "cannot copy the bundle to the board"
timeout "$INSTALL_TIMEOUT_SECONDS" "${SSH[@]}" "rauc install --progress /tmp/cut.raucb" >"$T/install-cut.log" 2>&1 &
inst=$!
cut=""
# Cut a few seconds into the copy of the image into the slot (rauc's "Copying image" step).
for i in $(seq 1 1200); do
    if grep -aq 'Copying image' "$T/install-cut.log"; then cut=1; sleep "$CUT_DELAY_SECONDS"; break; fi
    kill -0 "$inst" 2>/dev/null || break
    sleep 0.5
done
power_cut; wait "$inst" 2>/dev/null || true
if [ -n "$cut" ] && ! grep -aqi 'succeeded' "$T/install-cut.log"; then
    pass "power cut during the install, at: $(tr '\r' '\n' <"$T/install-cut.log" | grep -a . | tail -n1)"
else
    fail "the install was not caught while copying: $(tr '\r' '\n' <"$T/install-cut.log" | tail -n 3)"
fi
echo "update-test: entries after the cut: $(esp_entries)"
start_qemu
wait_boot "" || die "no boot after the power cut: $(tail -n 20 "$T/serial-$BOOTS.log")"
[ "$(running)" = "v2 B" ] && pass "after the power cut: v2 still boots in slot B" || fail "after the power cut: running '$(running)'"
gssh 'systemctl poweroff' || true
for i in $(seq 1 60); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 2; done
power_cut

echo "update-test: bundle sizes: v2 $(stat -c %s "${BUNDLE[v2]}") bytes, v3bad $(stat -c %s "${BUNDLE[v3bad]}") bytes; v2 install ${V2_INSTALL_SECONDS} s (rauc install, on the board)"
echo "update-test: $PASSES passed, $FAILS failed"
((FAILS == 0))
exit
}
