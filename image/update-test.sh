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
#   2. v2 comes over the mesh: a host visor started here (127.0.0.1 only; the guest reaches it as
#      10.0.2.2, the board is provisioned with it as a static stcpr peer) serves v2 and v3bad with
#      its update-server app to the board's key only; the board runs `skywire cli update apply
#      --from HOST_PK` (progress, SHA-256, rauc), reboots into slot B, reports v2, commits the slot
#      (health check: its transport to the host visor up too) and keeps the visor's key and hostname;
#   3. `fleet/fleet.py update --from HOST_PK` from the host (the owner visor = the host visor, the
#      device's pty admits its key) installs v3bad over the mesh into slot A and reboots the board;
#      v3bad fails its health check, the board comes back to v2 in slot B by itself, and the
#      rollout reports the rollback and stops before the second device (a key with no visor);
#   4. a power cut (QEMU killed) in the middle of writing a bundle into slot A leaves v2 booting.
# Prints bundle sizes, mesh transfer rates and install times. Root (image builds, loop-free). Work
# under $T (kept on failure). HOST_SKYWIRE_BIN: the host's skywire (default: `swift build` here).
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
# Fetch over the mesh (~200 MB under TCG) plus the install.
MESH_APPLY_TIMEOUT_SECONDS=2400
# fleet update: the rollback (trial boot, failed check, reboot into v2) reported within this.
FLEET_WAIT_SECONDS=1800
FLEET_POLL_SECONDS=15
# QEMU user networking: the guest reaches the host's 127.0.0.1 as this address.
GUEST_HOST_ADDR=10.0.2.2
# The update-server app's port (docs/update.md) and the pty app's (docs/pty.md).
UPDATE_SERVER_PORT=24
# The board's stcpr listener (the visor's default port, `skywire config gen`).
BOARD_STCPR_PORT=7777
ROLLBACK_WAIT_SECONDS=1500
# How long after rauc starts copying the image into the slot QEMU is killed.
CUT_DELAY_SECONDS=4
# The broken bundle's health bound (the image's default is 180 s; it fails the same way, sooner).
V3BAD_HEALTH_TIMEOUT_SECONDS=30
DEVICE_TIMEOUT_ARG=systemd.default_device_timeout_sec=600
T=$(mktemp -d "${TMPDIR:-/tmp}/skywire-update-test.XXXXXX")
qemu_machine "$BOARD" "$T" || exit 2
FAILS=0 PASSES=0
pass() { PASSES=$((PASSES + 1)); echo "update-test: ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "update-test: FAIL: $*"; }
die() { echo "update-test: ERROR: $*" >&2; exit 1; }
QEMU_PID="" HOST_VISOR_PID=""
cleanup() {
    [ -z "$QEMU_PID" ] || kill -9 "$QEMU_PID" 2>/dev/null || true
    [ -z "$HOST_VISOR_PID" ] || kill "$HOST_VISOR_PID" 2>/dev/null || true
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
# Phase times (seconds since the start and since the last mark) for the log: where the time goes.
T_START=$t0 T_MARK=$t0
mark() { local now; now=$(date +%s); echo "update-test: time: $1: $((now - T_MARK)) s (at $((now - T_START)) s)"; T_MARK=$now; }
# The disk images here are booted, never flashed: no xz (XZ_LEVEL=none: the raw disk alone;
# XZ_LEVEL=N compresses it too, and KEEP_RAW keeps the raw disk then).
# V1_RAW=path: v1's raw disk image as image/build.sh left it (KEEP_RAW=1), instead of building it.
V1_IMG=$OUT/v1/skywire-$BOARD-v1.img
if [ -z "${V1_RAW:-}" ]; then
    BOARD=$BOARD VERSION=v1 SKYWIRE_BIN=$SKYWIRE_BIN OUT_DIR=$OUT/v1 XZ_LEVEL=${XZ_LEVEL:-none} KEEP_RAW=1 "$REPO/image/build.sh"
    # A cached build made with XZ_LEVEL=N and without KEEP_RAW has only the .img.xz (a rebuild
    # removes the .img first).
    [ -f "$V1_IMG" ] || { xz -dc "$V1_IMG.xz" | dd of="$V1_IMG.partial" bs=4M conv=sparse status=none && mv -f "$V1_IMG.partial" "$V1_IMG"; }
    V1_RAW=$V1_IMG
fi
mark "v1 image"
# v2: by default v1's root filesystem (slot A of v1's disk) with version v2 (debugfs), no second
# build: an image build makes the same root filesystem from the same inputs but VERSION (which
# only image-release, the partition UUIDs and the ESP's entry title carry). V2_BUILD=1 builds it
# as `make bundle` does (image/build.sh BUNDLE=1). The bundle is remade only when its root
# filesystem is newer; test bundles use lzo (fast squashfs compression: minutes less on TCG hosts).
V2_ROOTFS=$OUT/v2/skywire-$BOARD-v2.rootfs.ext4
mkdir -p "$OUT/v2" "$OUT/v3bad"
# set_release FS VERSION: image-release's VERSION= in the root filesystem image FS (debugfs, no mount).
set_release() {
    printf 'BOARD=%s\nVERSION=%s\nOVERLAYS=%s\n' "$BOARD" "$2" "$(debugfs -R 'cat /etc/skywire/image-release' "$1" 2>/dev/null | sed -n 's/^OVERLAYS=//p')" >"$T/image-release"
    printf 'rm /etc/skywire/image-release\nwrite %s /etc/skywire/image-release\nsif /etc/skywire/image-release mode 0100644\n' "$T/image-release" \
        | debugfs -w -f - "$1" >/dev/null 2>"$T/debugfs.log"
    [ "$(debugfs -R 'cat /etc/skywire/image-release' "$1" 2>/dev/null | sed -n 's/^VERSION=//p')" = "$2" ] \
        || die "could not set version $2 in $1: $(cat "$T/debugfs.log")"
}
if [ -n "${V2_BUILD:-}" ]; then
    BOARD=$BOARD VERSION=v2 SKYWIRE_BIN=$SKYWIRE_BIN OUT_DIR=$OUT/v2 BUNDLE=1 "$REPO/image/build.sh"
elif [ "$V2_ROOTFS" -nt "$V1_RAW" ] && [ "$(cat "$OUT/v2/.from-v1" 2>/dev/null)" = "$V1_RAW" ]; then
    echo "update-test: reusing $V2_ROOTFS (made from $V1_RAW)" >&2
else
    # Slot A of v1's disk: the partition labelled root-a.
    read -r a_start a_size < <(sfdisk -J "$V1_RAW" | jq -r '.partitiontable.partitions[] | select(.name == "root-a") | "\(.start) \(.size)"')
    [ -n "${a_size:-}" ] || die "no root-a partition in $V1_RAW"
    dd if="$V1_RAW" of="$T/v2.ext4" bs=4M iflag=skip_bytes,count_bytes skip=$((a_start * 512)) count=$((a_size * 512)) conv=sparse status=none
    set_release "$T/v2.ext4" v2
    mv -f "$T/v2.ext4" "$V2_ROOTFS"
    echo "$V1_RAW" >"$OUT/v2/.from-v1"
fi
[ "$OUT/v2/skywire-$BOARD-v2.raucb" -nt "$V2_ROOTFS" ] \
    || BOARD=$BOARD VERSION=v2 ROOTFS=$V2_ROOTFS OUT_DIR=$OUT/v2 MKSQUASHFS_ARGS="-comp lzo" "$REPO/image/bundle.sh"
mark "v2 root filesystem and bundle"
# v3bad: v2's root filesystem with the stand-in binary and version v3bad (debugfs, no second build).
if [ "$OUT/v3bad/skywire-$BOARD-v3bad.raucb" -nt "$V2_ROOTFS" ]; then
    echo "update-test: reusing $OUT/v3bad/skywire-$BOARD-v3bad.raucb (newer than v2's root filesystem)" >&2
else
cp --sparse=always "$V2_ROOTFS" "$T/v3bad.ext4"
set_release "$T/v3bad.ext4" v3bad
# Its health bound: V3BAD_HEALTH_TIMEOUT_SECONDS (the test's time; the check fails the same way).
sed "s/^HEALTH_TIMEOUT_SECONDS=.*/HEALTH_TIMEOUT_SECONDS=$V3BAD_HEALTH_TIMEOUT_SECONDS/" "$REPO/image/files/update/update.conf" >"$T/update.conf"
debugfs -w -f - "$T/v3bad.ext4" >/dev/null 2>"$T/debugfs.log" <<DEBUGFS
rm /usr/bin/skywire
write $T/skywire-broken /usr/bin/skywire
sif /usr/bin/skywire mode 0100755
rm /etc/skywire/update.conf
write $T/update.conf /etc/skywire/update.conf
sif /etc/skywire/update.conf mode 0100644
DEBUGFS
[ "$(debugfs -R 'cat /usr/bin/skywire' "$T/v3bad.ext4" 2>/dev/null | head -c 9)" = '#!/bin/sh' ] \
    || die "could not make the v3bad root filesystem: $(cat "$T/debugfs.log")"
BOARD=$BOARD VERSION=v3bad ROOTFS=$T/v3bad.ext4 OUT_DIR=$OUT/v3bad MKSQUASHFS_ARGS="-comp lzo" "$REPO/image/bundle.sh"
rm -f "$T/v3bad.ext4"
fi
mark "v3bad bundle"
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
mark "refused bundles"
echo "update-test: builds took $(($(date +%s) - t0)) s" >&2
declare -A BUNDLE=([v2]=$OUT/v2/skywire-$BOARD-v2.raucb [v3bad]=$OUT/v3bad/skywire-$BOARD-v3bad.raucb
                   [otherkey]=$T/otherkey/skywire-$BOARD-v2.raucb [otherboard]=$T/otherboard/skywire-$OTHER_BOARD-v2.raucb
                   [unsigned]=$T/unsigned.raucb)
for b in v2 v3bad; do echo "update-test: bundle $b: $(stat -c %s "${BUNDLE[$b]}") bytes"; done

# --- the host visor -------------------------------------------------------------
# It serves v2 and v3bad (hard links in $T/bundles) with its update-server app and is the fleet's
# owner visor. It listens on 127.0.0.1 only (stcpr; no sudph, discovery, dmsg or UI). Its key is
# made now (the board is provisioned with it); it starts once the board's key is known. Both dial
# on demand: the board the host as $GUEST_HOST_ADDR:HOST_PORT (its static peer, provisioned), the
# host the board's stcpr listener through a QEMU port forward (127.0.0.1:BOARD_FWD_PORT).
if [ -z "${HOST_SKYWIRE_BIN:-}" ]; then
    (cd "$REPO" && swift build --product skywire >&2)
    HOST_SKYWIRE_BIN=$(cd "$REPO" && swift build --show-bin-path)/skywire
fi
[ -x "$HOST_SKYWIRE_BIN" ] || die "no host skywire at $HOST_SKYWIRE_BIN"
mkdir -p "$T/bundles"
for b in v2 v3bad; do
    ln -f "${BUNDLE[$b]}" "$T/bundles/" 2>/dev/null || cp "${BUNDLE[$b]}" "$T/bundles/"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HOST_PORT=$(free_port) BOARD_FWD_PORT=$(free_port)
HOST_PK=$("$HOST_SKYWIRE_BIN" config gen -o "$T/host.json")
hcli() { "$HOST_SKYWIRE_BIN" cli --rpc "$T/host.sock" "$@"; }
# start_host_visor BOARD_PK: the update-server serves BOARD_PK only; the board is a static peer.
start_host_visor() {
    jq --arg sock "$T/host.sock" --arg st "$T/host-state" --argjson port "$HOST_PORT" --arg dir "$T/bundles" \
        --argjson uport "$UPDATE_SERVER_PORT" --arg bpk "$1" --arg baddr "127.0.0.1:$BOARD_FWD_PORT" \
        '.cli_addr = $sock | .state_dir = $st | .transport.listen_addr = "127.0.0.1" | .transport.stcpr_port = $port
         | .transport.sudph_port = 0 | .transport.discovery = "" | .transport.peers = {($bpk): {stcpr: $baddr}}
         | .transport.dmsg_servers = [] | .ui = {listen: ""}
         | .launcher.apps = [{name: "update-server", port: $uport, auto_start: true, args: ["--dir", $dir, "--whitelist", $bpk]}]' \
        "$T/host.json" >"$T/host.json.new" && command install -m 600 "$T/host.json.new" "$T/host.json"
    "$HOST_SKYWIRE_BIN" visor -c "$T/host.json" >>"$T/host-visor.log" 2>&1 &
    HOST_VISOR_PID=$!
    for i in $(seq 1 100); do
        hcli visor info >/dev/null 2>&1 && return 0
        kill -0 "$HOST_VISOR_PID" 2>/dev/null || die "the host visor exited: $(tail -n 5 "$T/host-visor.log")"
        sleep 0.2
    done
    die "the host visor did not open its control socket: $(tail -n 5 "$T/host-visor.log")"
}

# --- the disk -----------------------------------------------------------------
cp --sparse=always "$V1_RAW" "$T/disk.img"
ssh-keygen -q -t ed25519 -N '' -f "$T/id_ed25519"
# The host visor: a static peer (stcpr through QEMU's host alias) and the pty app's only key.
jq -n --arg ssh "$(cat "$T/id_ed25519.pub")" --arg hpk "$HOST_PK" --arg addr "$GUEST_HOST_ADDR:$HOST_PORT" \
    '{version: 1, hostname: "skwupdate", ssh_authorized_keys: [$ssh], peers: {($hpk): {stcpr: $addr}},
      app_whitelists: {pty: [$hpk]}}' >"$T/skywire-provision.json"
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
SSH_PORT=$(free_port)
BOOTS=0
start_qemu() {
    BOOTS=$((BOOTS + 1))
    "${QEMU_MACHINE[@]}" -smp "$GUEST_CPUS" -m "$GUEST_MEM_MIB" -display none -monitor none -serial "file:$T/serial-$BOOTS.log" \
        -drive "if=none,id=hd0,format=raw,file=$T/disk.img" -device virtio-blk-pci,drive=hd0 \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$BOARD_FWD_PORT-:$BOARD_STCPR_PORT" -device virtio-net-pci,netdev=n0,romfile= \
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

mark "host visor key, v1 disk provisioned"
start_qemu
wait_boot "" || die "v1 did not come up on SSH within $SSH_WAIT_SECONDS s: $(tail -n 20 "$T/serial-$BOOTS.log")"
[ "$(running)" = "v1 A" ] && pass "v1 boots in slot A" || fail "running '$(running)', expected 'v1 A'"
gssh 'rauc status' >"$T/rauc-status-v1.txt" 2>&1 && pass "rauc status answers (booted A)" || fail "rauc status: $(tail -n 5 "$T/rauc-status-v1.txt")"
mark "v1 boot to SSH"
PK_V1=$(gssh "jq -r .pk /etc/skywire/skywire-config.json")
[[ $PK_V1 =~ ^[0-9a-f]{64}$ ]] || die "no visor key on the board: '$PK_V1'"
for i in $(seq 1 60); do [ "$(gssh systemctl show -P ActiveState skywire-update-health.service)" = active ] && break; sleep 5; done
gssh 'journalctl -b -u skywire-update-health --no-pager' | grep -q 'is committed: nothing to check' \
    && pass "health check: v1 is committed, nothing to check" || fail "health check on v1: $(gssh 'journalctl -b -u skywire-update-health --no-pager | tail -n 5')"

mark "v1 checks (health check done)"
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

mark "step 1: three refusals"
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

# The host visor's update-server serves the board's key only (read from the board), and the
# board's visor dials the host visor when it needs it (its provisioned static peer).
[ "$(gssh "jq -r '.transport.stcpr_port // $BOARD_STCPR_PORT' /etc/skywire/skywire-config.json")" = "$BOARD_STCPR_PORT" ] \
    || die "the board's stcpr port is not $BOARD_STCPR_PORT (the QEMU port forward's)"
start_host_visor "$PK_V1"
st=$(hcli apps ls --json | jq -c '.[] | select(.name == "update-server") | {status, args}')
[ "$(jq -r .status <<<"$st")" = running ] && [ "$(jq -c '.args[-2:]' <<<"$st")" = "[\"--whitelist\",\"$PK_V1\"]" ] \
    && pass "host visor $HOST_PK (127.0.0.1:$HOST_PORT): update-server runs for the board's key only" \
    || fail "host update-server: $st"
server_info() { hcli apps ls --json | jq -c '.[] | select(.name == "update-server") | .info'; }
# fetch_rate LOG: the CLI's last progress line's rate over the whole fetch ("R MiB/s, received N bytes").
fetch_rate() { grep -ao '[0-9.]* MiB/s, received [0-9]* bytes' "$1" 2>/dev/null | tail -n1 || true; }

# 2. v2 over the mesh: fetched from the host visor, installed into B, boots once in B, commits.
V2_NAME=$(basename "${BUNDLE[v2]}")
V2_SUM=$(sha256sum <"${BUNDLE[v2]}" | cut -d' ' -f1)
t=$(date +%s) rc=0
# Each line stamped with the host's clock (seconds since the start) to time the transfer.
{ timeout "$MESH_APPLY_TIMEOUT_SECONDS" "${SSH[@]}" "skywire cli update apply --from $HOST_PK --bundle $V2_NAME" 2>&1 \
    | while IFS= read -r l; do printf '%s %s\n' "$(($(date +%s) - t))" "$l"; done >"$T/install-v2.log"; } || rc=$?
V2_INSTALL_SECONDS=$(($(date +%s) - t))
mark "step 2: v2 fetched over the mesh and installed"
[ $rc = 0 ] && grep -aq 'succeeded' "$T/install-v2.log" \
    && pass "v2 fetched over the mesh and installed into slot B in ${V2_INSTALL_SECONDS} s (skywire cli update apply --from the host visor)" \
    || fail "v2 apply --from the host visor: exit $rc: $(tail -n 5 "$T/install-v2.log")"
n=$(grep -ac "^[0-9]* $V2_NAME: .* MiB/s" "$T/install-v2.log" || true)
((n >= 2)) && pass "progress printed ($n lines; last: $(grep -a "^[0-9]* $V2_NAME: .* MiB/s" "$T/install-v2.log" | tail -n1 | cut -d' ' -f2-))" \
    || fail "no progress lines: $(head -n 3 "$T/install-v2.log")"
grep -aq "SHA-256 $V2_SUM verified" "$T/install-v2.log" && pass "the fetched bundle's SHA-256 matches the host's file ($V2_SUM)" \
    || fail "SHA-256 of the fetched v2 not verified as $V2_SUM: $(grep -a 'SHA-256\|checksum' "$T/install-v2.log")"
V2_FETCH_SECONDS=$(grep -a "received [0-9]* bytes" "$T/install-v2.log" | tail -n1 | cut -d' ' -f1 || true)
V2_SIZE=$(stat -c %s "${BUNDLE[v2]}")
V2_RATE="${V2_SIZE} bytes in ${V2_FETCH_SECONDS:-?} s ($(awk -v b="$V2_SIZE" -v s="${V2_FETCH_SECONDS:-0}" 'BEGIN { if (s > 0) printf "%.2f", b / s / 1e6; else print "?" }') MB/s; the CLI: $(fetch_rate "$T/install-v2.log"))"
echo "update-test: v2 over the mesh: $V2_RATE; apply (fetch + rauc) ${V2_INSTALL_SECONDS} s"
echo "update-test: host update-server after v2: $(server_info)"
echo "update-test: host visor's transports: $(hcli tp ls --json | jq -c '[.[] | {remote_pk: .remote_pk[:16], type, remote_addr, initiator, state, bytes_sent}]')"
echo "update-test: entries before the reboot: $(gssh "$BOOT_STATE_CMD" | tr '\n' ' ')"
gssh "rm -f /var/cache/skywire/update/$V2_NAME"
mark "step 2: checks after the install"
reboot_into v2 B && pass "v2 boots in slot B ($REBOOT_SECONDS s after the reboot)" || die "v2 did not come up in slot B: running '$(running)'"
for i in $(seq 1 120); do
    [ "$(gssh 'jq -r .state /var/lib/skywire/update-status.json' 2>/dev/null)" = committed ] && break; sleep 5
done
mark "step 2: reboot into v2 in B"
st=$(gssh cat /var/lib/skywire/update-status.json)
[ "$(jq -r .state <<<"$st")" = committed ] && pass "v2 passed its health check and committed slot B: $st" || fail "v2 not committed: $st"
grep -aq 'COMMITTED slot B (v2)' "$T"/serial-*.log && pass "the console shows the commit" || fail "no 'COMMITTED slot B (v2)' on the console"
# Read whole, then matched line by line (committed_re may anchor a line; grep -q on ssh's pipe would
# stop early and fail the pipeline by SIGPIPE under pipefail).
bstate=$(gssh "$BOOT_STATE_CMD")
grep -Eq "$(committed_re B)" <<<"$bstate" && pass "slot B is committed (no boot counter left): $(tr '\n' ' ' <<<"$bstate")" || fail "slot B's entry: $(tr '\n' ' ' <<<"$bstate")"
[ "$(gssh "jq -r .pk /etc/skywire/skywire-config.json")" = "$PK_V1" ] && pass "the visor kept its key across the update" \
    || fail "the visor's key changed across the update"
[ "$(gssh hostname)" = skwupdate ] && pass "the provisioned hostname was carried over" || fail "hostname after the update: $(gssh hostname)"

mark "step 2: v2 committed, checks"
# 3. v3bad by `fleet update` from the host: the owner visor is the host visor, the device the
# board (its key read from it) and a second device with a key no visor holds (never reached: the
# rollout stops after the canary rolls back). Over the mesh into A, boots once in A, fails its
# health check, back to v2 in B by itself.
mkdir -p "$T/fleet/keys"
echo "$PK_V1" >"$T/fleet/keys/board.pk"
"$HOST_SKYWIRE_BIN" config gen -o "$T/ghost.json" >"$T/fleet/keys/ghost.pk"
jq -n --arg board "$BOARD" --arg hpk "$HOST_PK" '{fleet: "updatetest", defaults: {board: $board, app_trusts: {pty: [$hpk]}},
    devices: [{name: "board", role: "client", hostname: "skwupdate"}, {name: "ghost", role: "client"}]}' >"$T/fleet.json"
V3_NAME=$(basename "${BUNDLE[v3bad]}")
t=$(date +%s) rc=0
timeout $((MESH_APPLY_TIMEOUT_SECONDS + FLEET_WAIT_SECONDS + 600)) python3 "$REPO/fleet/fleet.py" update "$T/fleet.json" -o "$T/fleet" \
    --rpc "$T/host.sock" --skywire "$HOST_SKYWIRE_BIN" --from "$HOST_PK" --bundle "$V3_NAME" --version v3bad --canary 1 \
    --apply-timeout "$MESH_APPLY_TIMEOUT_SECONDS" --wait "$FLEET_WAIT_SECONDS" --poll "$FLEET_POLL_SECONDS" --out "$T/fleet-logs" --json \
    >"$T/fleet-update.json" 2>"$T/fleet-update.log" || rc=$?
FLEET_SECONDS=$(($(date +%s) - t))
mark "step 3: fleet update of v3bad to the reported rollback"
sed 's/^/update-test: | /' "$T/fleet-update.log"
jq -r '.devices[] | "update-test: | \(.name) \(.result) \(.from_version) -> \(.to_version) \(.seconds) s: \(.reason)"' "$T/fleet-update.json" 2>/dev/null || true
row() { jq -c --arg n "$1" '.devices[] | select(.name == $n)' "$T/fleet-update.json" 2>/dev/null || true; }
b=$(row board) g=$(row ghost)
[ $rc = 1 ] && [ "$(jq -r .result <<<"$b")" = rolled-back ] && [ "$(jq -r .from_version <<<"$b")" = v2 ] \
    && jq -r .reason <<<"$b" | grep -q '^v3bad rolled back to v2' \
    && pass "fleet update (canary: the board) reports the rollback, exit 1, in $FLEET_SECONDS s: $(jq -r .reason <<<"$b")" \
    || fail "fleet update: exit $rc, board: ${b:-none}; $(tail -n 5 "$T/fleet-update.log")"
[ "$(jq -r .result <<<"$g")" = skipped ] && [ "$(jq -r .reason <<<"$g")" = "rollout stopped" ] && [ "$(jq -r .stopped "$T/fleet-update.json")" = true ] \
    && pass "the rollout stopped after the canary: the second device skipped" || fail "second device: ${g:-none}"
grep -q "SHA-256 $(sha256sum <"${BUNDLE[v3bad]}" | cut -d' ' -f1) verified" "$T/fleet-logs/board.apply.log" 2>/dev/null \
    && pass "v3bad came over the mesh, SHA-256 verified ($(fetch_rate "$T/fleet-logs/board.apply.log"))" \
    || fail "v3bad fetch: $(tail -n 3 "$T/fleet-logs/board.apply.log" 2>&1)"
wait_boot "" 600 || die "the board does not answer on SSH after the fleet update: $(tail -n 20 "$T/serial-$BOOTS.log")"
st=$(gssh cat /var/lib/skywire/update-status.json)
[ "$(running)" = "v2 B" ] && [ "$(jq -r .state <<<"$st")" = rolled-back ] && [ "$(jq -r .version <<<"$st")" = v3bad ] \
    && pass "v3bad rolled back to v2 in slot B by itself (through the trial of slot A), and v2 reports it: $st" \
    || fail "after v3bad: running '$(running)', update status: $st"
grep -aq 'HEALTH CHECK FAILED for slot A (v3bad)' "$T"/serial-*.log && pass "slot A reported its failed health check on the console: $(grep -ah 'HEALTH CHECK FAILED' "$T"/serial-*.log | tail -n1 | tr -d '\r')" \
    || fail "no 'HEALTH CHECK FAILED for slot A (v3bad)' on the console"
mark "step 3: checks after the rollback"

# 4. Power cut while a bundle is written into slot A: v2 keeps booting from B. The bundle: v3bad as
# step 3's fetch left it in the board's cache (no second copy of ~200 MB), else copied by scp.
CUT_BUNDLE=/var/cache/skywire/update/$V3_NAME
if [ "$(gssh "stat -c %s $CUT_BUNDLE" 2>/dev/null)" = "$(stat -c %s "${BUNDLE[v3bad]}")" ]; then
    echo "update-test: power cut: installing $CUT_BUNDLE (fetched in step 3)"
else
    upload "${BUNDLE[v3bad]}" cut.raucb || die "cannot copy the bundle to the board"
    CUT_BUNDLE=/tmp/cut.raucb
fi
timeout "$INSTALL_TIMEOUT_SECONDS" "${SSH[@]}" "rauc install --progress $CUT_BUNDLE" >"$T/install-cut.log" 2>&1 &
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
mark "step 4: install started and cut"
echo "update-test: entries after the cut: $(esp_entries)"
start_qemu
wait_boot "" || die "no boot after the power cut: $(tail -n 20 "$T/serial-$BOOTS.log")"
[ "$(running)" = "v2 B" ] && pass "after the power cut: v2 still boots in slot B" || fail "after the power cut: running '$(running)'"
mark "step 4: boot after the cut"
gssh 'systemctl poweroff' || true
for i in $(seq 1 60); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 2; done
power_cut

echo "update-test: bundle sizes: v2 $(stat -c %s "${BUNDLE[v2]}") bytes, v3bad $(stat -c %s "${BUNDLE[v3bad]}") bytes"
echo "update-test: v2 over the mesh: $V2_RATE; apply (fetch + rauc install) ${V2_INSTALL_SECONDS} s; fleet update (v3bad, to the rollback) ${FLEET_SECONDS} s"
echo "update-test: $PASSES passed, $FAILS failed in $(($(date +%s) - T_START)) s"
((FAILS == 0))
exit
}
