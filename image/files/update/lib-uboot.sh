# shellcheck shell=bash
# /usr/lib/skywire/update/lib-uboot.sh: the A/B state of boards booted by U-Boot's boot script
# (/boot/firmware/boot.scr, image/files/update/boot.cmd; docs/update.md, "Boot selection: U-Boot").
# Sourced by lib.sh when present; replaces lib.sh's boot entry functions (entries, slot_entry,
# on_trial, booted_committed) so that the health check works unchanged.
#
# State: $ESP/abstate.txt, U-Boot environment text (BOOT_ORDER=A B, BOOT_A_LEFT=N, BOOT_B_LEFT=N),
# rauc's U-Boot scheme. boot.scr decrements the booted slot's count and writes abstate.txt before
# the kernel starts; Linux writes abstate.txt and abstate.bak (the copy boot.scr falls back to),
# each by write and rename. A slot is installed when $ESP/slot-x/slot.env exists (its kernel
# command line, sk_args=, and device tree, sk_fdt=).
UBOOT_STATE=$ESP/abstate.txt
UBOOT_STATE_BAK=$ESP/abstate.bak
# Tries of a good slot (rauc's default boot-attempts); boot.scr accepts 0 to 3.
UBOOT_GOOD_TRIES=3
UBOOT_SLOT_ENV=slot.env
UBOOT_DEFAULT_ORDER="A B"

# uboot_state_parse FILE: prints "ORDER|A_LEFT|B_LEFT" when FILE holds a valid state (U-Boot's
# `env export -t` ends it with a NUL byte).
uboot_state_parse() {
    local f=$1 order a b
    [ -f "$f" ] || return 1
    order=$(tr -d '\000' <"$f" | sed -n 's/^BOOT_ORDER=//p' | head -n1)
    a=$(tr -d '\000' <"$f" | sed -n 's/^BOOT_A_LEFT=//p' | head -n1)
    b=$(tr -d '\000' <"$f" | sed -n 's/^BOOT_B_LEFT=//p' | head -n1)
    [[ $order == "A B" || $order == "B A" ]] && [[ $a =~ ^[0-3]$ ]] && [[ $b =~ ^[0-3]$ ]] || return 1
    echo "$order|$a|$b"
}
# uboot_state: sets BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT as boot.scr reads them (abstate.txt, else
# abstate.bak, else "A B" with 3 tries each).
uboot_state() {
    local s
    s=$(uboot_state_parse "$UBOOT_STATE") || s=$(uboot_state_parse "$UBOOT_STATE_BAK") \
        || s="$UBOOT_DEFAULT_ORDER|$UBOOT_GOOD_TRIES|$UBOOT_GOOD_TRIES"
    IFS='|' read -r BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT <<<"$s"
}
# uboot_state_write ORDER A_LEFT B_LEFT: abstate.txt, then abstate.bak, each written beside and
# renamed over the old one, flushed.
uboot_state_write() {
    local f text
    [[ $1 == "A B" || $1 == "B A" ]] && [[ $2 =~ ^[0-3]$ ]] && [[ $3 =~ ^[0-3]$ ]] || udie "invalid A/B state '$1' $2 $3"
    text=$(printf 'BOOT_ORDER=%s\nBOOT_A_LEFT=%s\nBOOT_B_LEFT=%s\n' "$1" "$2" "$3")
    for f in "$UBOOT_STATE" "$UBOOT_STATE_BAK"; do
        printf '%s\n' "$text" >"$f.new" && sync -f "$ESP" && mv -f "$f.new" "$f" && sync -f "$ESP" \
            || udie "cannot write $f"
    done
}
uboot_left() { local v="BOOT_$1_LEFT"; echo "${!v}"; }
# uboot_set SLOT LEFT [first]: the slot's tries; "first" also puts it first in BOOT_ORDER.
uboot_set() {
    local order a b
    uboot_state
    order=$BOOT_ORDER a=$BOOT_A_LEFT b=$BOOT_B_LEFT
    if [ "$1" = A ]; then a=$2; else b=$2; fi
    [ "${3:-}" != first ] || order="$1 $(other_slot "$1")"
    uboot_state_write "$order" "$a" "$b"
}
uboot_installed() { [ -f "$SLOT_DIR_PREFIX$(lower "$1")/$UBOOT_SLOT_ENV" ]; }

# entries: "0 <slot> <state> <file>" per installed slot, in boot order (state good: tries left,
# bad: none; the slot booted on its last try shows bad, as a systemd-boot entry at +0 does).
entries() {
    local s st
    uboot_state
    for s in $BOOT_ORDER; do
        uboot_installed "$s" || continue
        st=bad; (($(uboot_left "$s") > 0)) && st=good
        echo "0 $(lower "$s") $st $UBOOT_STATE"
    done | sort -k3,3r -s
}
# slot_entry SLOT: "0 <state> <file>" of an installed slot.
slot_entry() { entries | awk -v s="$(lower "$1")" '$2 == s { print $1, $3, $4; exit }'; }
# on_trial SLOT: the booted slot came up on its last try: only its health check keeps it.
on_trial() { uboot_state; [ "$(uboot_left "$1")" = 0 ]; }
# booted_committed SLOT: a good slot booted; its tries go back to UBOOT_GOOD_TRIES (rauc marks the
# booted slot good on every boot for the same reason: boot.scr counts every boot).
booted_committed() {
    uboot_state
    (($(uboot_left "$1") >= UBOOT_GOOD_TRIES)) || uboot_set "$1" "$UBOOT_GOOD_TRIES"
}
