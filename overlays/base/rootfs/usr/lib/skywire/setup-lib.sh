# Shared helpers for /usr/lib/skywire/setup.d hooks (sourced).
SKYWIRE_ETC=/etc/skywire
SKYWIRE_CONFIG=$SKYWIRE_ETC/skywire-config.json
SKYWIRE_STATE=/var/lib/skywire
BOOT_FS=/boot/firmware
PROVISION_FILE=$BOOT_FS/skywire-provision.json
# What the provisioning hook applied (never contains the secret key).
PROVISIONED=$SKYWIRE_ETC/provisioned.json
PK_RE='^[0-9a-f]{64}$'
SK_RE='^[0-9a-f]{128}$'
info()  { echo "${HOOK_NAME:-skywire-setup}: $*" >&2; }
warn()  { echo "${HOOK_NAME:-skywire-setup}: WARNING: $*" >&2; }
error() { echo "${HOOK_NAME:-skywire-setup}: ERROR: $*" >&2; }
# Writes stdin to $1 atomically with mode $2.
write_atomic() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX") || return 1
    cat >"$tmp" && chmod "$2" "$tmp" && mv -f "$tmp" "$1"
}
short_pk() { printf '%s…' "${1:0:8}"; }
# Overwrites file $1 in place with zeros (same length, so the same FAT clusters or ext4
# blocks: dd conv=notrunc), flushes it to the device (fsync, then sync of its file system),
# and only then deletes it. A plain rm on the FAT boot partition only marks the directory
# entry and the clusters free: the bytes stay readable on the card until reused.
wipe_file() {
    local f=$1 size dir
    [ -f "$f" ] || return 0
    dir=$(dirname "$f")
    size=$(stat -c %s "$f") || return 1
    if ((size > 0)); then
        head -c "$size" /dev/zero | dd of="$f" bs=64K conv=notrunc,fsync status=none || return 1
        [ "$(stat -c %s "$f")" = "$size" ] || return 1
    fi
    sync -f "$dir" && rm -f "$f" && sync -f "$dir"
}
