# shellcheck shell=bash
# /usr/lib/skywire/update/lib.sh: the A/B boot entries on the EFI system partition (docs/update.md),
# shared by the rauc bootloader backend and the health check. Sourced.
#
# Entries: /boot/firmware/loader/entries/skywire-<generation>-<slot>[+<left>[-<done>]].conf, slot a
# or b. systemd-boot (loader.conf "default skywire-*") boots the first in its order: entries with
# no tries left last, then the highest generation first. An entry on trial has "+1": systemd-boot
# renames it to "+0-1" before booting it, so unless the health check commits it (renames it to
# no counter), the next boot takes the other slot: boot once, then commit.
ESP=/boot/firmware
# The ESP's mount point as /etc/fstab names it (tests move ESP, not this).
ESP_MOUNT=/boot/firmware
# Where these files are (tests point it at the repository's copies).
UPDATE_LIB_DIR=${UPDATE_LIB_DIR:-/usr/lib/skywire/update}
# The running system's root, whose state carry_state copies ("" on a board; a test's fake root).
RUNNING_ROOT=""
ENTRIES=$ESP/loader/entries
SLOT_DIR_PREFIX=$ESP/slot-
STATUS_FILE=/var/lib/skywire/update-status.json
# A failed trial's reason, on the ESP (shared by both slots): the slot it falls back to reports it.
FAILURE_FILE=$ESP/rauc/skywire-trial-failure.json
# Tries a newly installed slot gets: one boot.
TRIAL_TRIES=1
ENTRY_RE='^skywire-([0-9]+)-([ab])(\+([0-9]+)(-([0-9]+))?)?\.conf$'

ulog() { echo "skywire-update: $*" >&2; }
udie() { echo "skywire-update: ERROR: $*" >&2; exit 1; }

# booted_slot: A or B, from rauc.slot= on the kernel command line.
booted_slot() { tr ' ' '\n' </proc/cmdline | sed -n 's/^rauc\.slot=\([AB]\)$/\1/p' | head -n1; }
lower() { tr 'AB' 'ab' <<<"$1"; }
# slot_arg X: X when it names a slot (A or B), else the backend's usage error.
slot_arg() { [[ ${1:-} =~ ^[AB]$ ]] || udie "bootloader: slot must be A or B, got '${1:-}'"; echo "$1"; }
# retarget_cmdline SLOT PARTUUID: the kernel command line on stdin, its root and rauc.slot= set to
# SLOT's (the booted slot's line made into the new slot's).
retarget_cmdline() { sed -e "s/root=PARTUUID=[0-9a-fA-F-]*/root=PARTUUID=$2/" -e "s/rauc\.slot=[AB]/rauc.slot=$1/"; }
upper() { tr 'ab' 'AB' <<<"$1"; }

# entries: "<generation> <slot> <state> <file>" per entry, in systemd-boot's order (state good,
# trial or bad; bad last, then by generation, highest first).
entries() {
    local f n g s left
    for f in "$ENTRIES"/skywire-*.conf; do
        [ -e "$f" ] || continue
        n=$(basename "$f")
        [[ $n =~ $ENTRY_RE ]] || continue
        g=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]} left=${BASH_REMATCH[4]}
        if [ -z "${BASH_REMATCH[3]}" ]; then echo "1 $g $s good $f"
        elif ((left > 0)); then echo "1 $g $s trial $f"
        else echo "0 $g $s bad $f"; fi
    done | sort -k1,1nr -k2,2nr | cut -d' ' -f2-
}
# slot_entry SLOT: "<generation> <state> <file>" of the slot's entry (the first, if several).
slot_entry() { entries | awk -v s="$(lower "$1")" '$2 == s { print $1, $3, $4; exit }'; }
max_generation() { entries | awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }'; }
# rename_entry FILE NEWNAME: atomic on the FAT partition as far as FAT allows (one rename), flushed.
rename_entry() { mv -f "$1" "$ENTRIES/$2" && sync -f "$ENTRIES"; }
other_slot() { [ "$1" = A ] && echo B || echo A; }
# on_trial SLOT: the booted slot's entry still has a counter: only its health check keeps it.
on_trial() { [[ $(basename "$(slot_entry "$1" | cut -d' ' -f3)") =~ \+ ]]; }
# booted_committed SLOT: a committed slot booted (nothing to do here: its entry has no counter).
booted_committed() { :; }
# write_status JSON: the last update's outcome, for `skywire cli update status` and fleet status.
write_status() {
    local tmp
    mkdir -p "$(dirname "$STATUS_FILE")"
    tmp=$(mktemp "$STATUS_FILE.XXXXXX") && printf '%s\n' "$1" >"$tmp" && mv -f "$tmp" "$STATUS_FILE"
}

# carry_state MNT PARTUUID SLOT: the board's state into the new slot mounted at MNT (partition
# PARTUUID): every path of persist.list present here replaces the new slot's, except the image's own
# files listed after "!", kept as the new slot has them; its fstab then names its own root and the
# ESP this board mounts.
carry_state() {
    local mnt=$1 partuuid=$2 slot=$3 keep p src esp_dev
    keep=$(mktemp -d "${TMPDIR:-/run}/skywire-update-keep.XXXXXX")
    while read -r p; do
        case $p in '!'*) p=${p#!}; [ -e "$mnt$p" ] && install -D "$mnt$p" "$keep$p";; esac
    done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$UPDATE_LIB_DIR/persist.list")
    while read -r p; do
        case $p in '!'*) continue;; esac
        for src in $RUNNING_ROOT$p; do            # globs (ssh host keys)
            [ -e "$src" ] || continue
            src=${src#"$RUNNING_ROOT"}
            rm -rf "${mnt:?}$src"
            mkdir -p "$(dirname "$mnt$src")"
            cp -a "$RUNNING_ROOT$src" "$mnt$src"
        done
    done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$UPDATE_LIB_DIR/persist.list")
    (cd "$keep" && find . -type f -printf '%P\n' | while read -r p; do cp -a "$p" "$mnt/$p"; done)
    rm -rf "$keep"
    sed -i "s|^PARTUUID=[0-9a-fA-F-]*\([[:space:]]\+/[[:space:]]\)|PARTUUID=$partuuid\1|" "$mnt/etc/fstab"
    # The ESP is this board's, not the one of the image the bundle was built from (every build has
    # its own partition UUIDs): the new slot mounts it as the running slot does. Without this, the
    # new slot waited for a partition that does not exist and came up without its boot entries.
    esp_dev=$(awk -v m="$ESP_MOUNT" '$1 !~ /^#/ && $2 == m { print $1; exit }' "$RUNNING_ROOT/etc/fstab")
    [ -n "$esp_dev" ] || udie "no $ESP_MOUNT line in /etc/fstab"
    sed -i "s|^[^#[:space:]]\+\([[:space:]]\+$ESP_MOUNT[[:space:]]\)|$esp_dev\1|" "$mnt/etc/fstab"
    grep -Eq "^$esp_dev[[:space:]]+$ESP_MOUNT[[:space:]]" "$mnt/etc/fstab" || udie "slot $slot's /etc/fstab has no $ESP_MOUNT line"
}

# rauc's configuration: the slots' devices (by-partlabel on GPT disks, by-partuuid on the Pi's MBR).
RAUC_SYSTEM_CONF=${RAUC_SYSTEM_CONF:-/etc/rauc/system.conf}
# slot_device SLOT: the device= of the rauc slot whose bootname= is SLOT.
slot_device() {
    awk -v want="$1" 'function flush() { if (bn == want && dev != "") { print dev; found = 1; exit } }
        /^\[/ { flush(); dev = ""; bn = "" } /^device=/ { dev = substr($0, 8) } /^bootname=/ { bn = substr($0, 10) }
        END { if (!found) flush() }' "$RAUC_SYSTEM_CONF" | grep . || udie "no slot with bootname=$1 in $RAUC_SYSTEM_CONF"
}

# prepare_slot SLOT: mounts the freshly written slot, copies its kernel and initrd (and the device
# trees in SLOT_DEVICE_TREES, U-Boot boards) to /slot-<x>/ on the ESP, carries the device's state
# over (persist.list), points its fstab at its own partition. Sets VERSION_NEW and PARTUUID_NEW.
prepare_slot() {
    local slot=$1 x dev partuuid mnt kver p src
    x=$(lower "$slot")
    dev=$(slot_device "$slot")
    partuuid=$(blkid -s PARTUUID -o value "$dev") || udie "no PARTUUID for $dev"
    mnt=$(mktemp -d /run/skywire-update.XXXXXX)
    mount -t ext4 "$dev" "$mnt" || udie "cannot mount $dev"
    trap 'umount "$mnt" 2>/dev/null; rmdir "$mnt" 2>/dev/null' EXIT
    kver=$(ls "$mnt/lib/modules" | sort -V | tail -n1)
    [ -n "$kver" ] && [ -f "$mnt/boot/vmlinuz-$kver" ] && [ -f "$mnt/boot/initrd.img-$kver" ] \
        || udie "slot $slot has no kernel and initrd in /boot"
    mkdir -p "$SLOT_DIR_PREFIX$x"
    for p in vmlinuz initrd.img; do
        src=$mnt/boot/$p-$kver
        cp "$src" "$SLOT_DIR_PREFIX$x/$p.new" && mv -f "$SLOT_DIR_PREFIX$x/$p.new" "$SLOT_DIR_PREFIX$x/$p"
    done
    for p in ${SLOT_DEVICE_TREES:-}; do
        src=$mnt/usr/lib/linux-image-$kver/$p
        [ -f "$src" ] || udie "slot $slot has no device tree $p"
        install -D -m 0644 "$src" "$SLOT_DIR_PREFIX$x/dtbs/$p.new" && mv -f "$SLOT_DIR_PREFIX$x/dtbs/$p.new" "$SLOT_DIR_PREFIX$x/dtbs/$p"
    done
    carry_state "$mnt" "$partuuid" "$slot"
    VERSION_NEW=$(sed -n 's/^VERSION=//p' "$mnt/etc/skywire/image-release" 2>/dev/null)
    sync -f "$mnt"
    umount "$mnt"; rmdir "$mnt"; trap - EXIT
    PARTUUID_NEW=$partuuid
}

# Boards booted by U-Boot's boot script keep the A/B state in a file instead of entries (lib-uboot.sh).
[ ! -f /usr/lib/skywire/update/lib-uboot.sh ] || . /usr/lib/skywire/update/lib-uboot.sh
# A board whose boot selection is not systemd-boot's entries (the Pi's autoboot.txt) replaces the
# entry functions above in lib-board.sh (image/ab-slots.sh installs it).
[ ! -f "$UPDATE_LIB_DIR/lib-board.sh" ] || . "$UPDATE_LIB_DIR/lib-board.sh"
