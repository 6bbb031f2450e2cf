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
