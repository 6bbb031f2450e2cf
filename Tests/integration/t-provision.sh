#!/usr/bin/env bash
# The board's boot hooks (overlays/base/rootfs/usr/lib/skywire/setup.d: 30-provision, 40-config,
# 50-apps) against skywire-provision.json files, each run in a private mount namespace whose /etc,
# /boot and /var/lib are overlays on the host's (nothing on the host changes). Checks the
# closed-by-default whitelists (issue 16): nothing provisioned, an empty list or only malformed
# keys give `--whitelist ""` (refuses every key) and the boot log says so; only "whitelist": "any"
# gives `--whitelist any`; a malformed key never widens a list.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
SETUP_DIR=${SETUP_DIR:-$repo/overlays/base/rootfs/usr/lib/skywire}
mkdir -p "$T_WORK/bin"
ln -s "$SKYWIRE_BIN" "$T_WORK/bin/skywire"

PK1=$("$SKYWIRE_BIN" config gen -o "$T_WORK/k1.json")
PK2=$("$SKYWIRE_BIN" config gen -o "$T_WORK/k2.json")
# 64 hex digits that are no visor's key (the Ed25519 identity point): the visor refuses it.
NOT_A_POINT=01$(printf '0%.0s' $(seq 62))

# boot CASE PROVISION_JSON: runs the hooks; leaves $T_WORK/CASE.json (the visor config) and
# $T_WORK/CASE.log (the hooks' messages, i.e. the boot log).
boot() {
    local c=$1 d=$T_WORK/$1
    mkdir -p "$d"/{etc,boot,var}/{u,w} "$d/bootfs"
    printf '%s\n' "$2" >"$d/provision.json"
    unshare -m --propagation private bash -c '
        set -e
        d=$1 setup=$2 repo=$3
        for m in etc:/etc boot:/boot var:/var/lib; do
            mount -t overlay overlay -o "lowerdir=${m#*:},upperdir=$d/${m%%:*}/u,workdir=$d/${m%%:*}/w" "${m#*:}"
        done
        mkdir -p /boot/firmware /etc/skywire/apps.d /var/lib/skywire
        printf "base\nvpn-exit\nsocks-proxy\n" >/etc/skywire/overlays
        cp "$repo/overlays/vpn-exit/rootfs/etc/skywire/apps.d/vpn-exit.json" "$repo/overlays/socks-proxy/rootfs/etc/skywire/apps.d/socks-proxy.json" /etc/skywire/apps.d/
        cp "$d/provision.json" /boot/firmware/skywire-provision.json
        export SKYWIRE_SETUP_LIB=$setup/setup-lib.sh
        for h in 30-provision 40-config 50-apps; do bash "$setup/setup.d/$h" || echo "hook $h failed" >&2; done
        cp /etc/skywire/skywire-config.json "$d.json"
        if [ -e /var/lib/skywire/ui-password ]; then cp -p /var/lib/skywire/ui-password "$d.ui-password"; fi
        cp /boot/firmware/skywire-provision.applied.json "$d.applied.json" 2>/dev/null || true
    ' boot "$d" "$SETUP_DIR" "$repo" 2>"$T_WORK/$c.log" || fail "[$c] the hooks could not run: $(tail -n 5 "$T_WORK/$c.log")"
}
PATH=$T_WORK/bin:$PATH
args() { jq -c --arg n "$2" '.launcher.apps[] | select(.name == $n) | .args' "$T_WORK/$1.json" 2>/dev/null; }
logged() { grep -qF -- "$2" "$T_WORK/$1.log"; }
check() {  # check CASE DESC CONDITION...
    local c=$1 desc=$2; shift 2
    if "$@"; then pass "[$c] $desc"; else fail "[$c] $desc; args: vpn-server $(args "$c" vpn-server), skysocks $(args "$c" skysocks); log: $(cat "$T_WORK/$c.log")"; fi
}
closed='["--whitelist",""]'

for c in missing empty malformed wrongtype; do
    case $c in
        missing) prov='{"version": 1}' ;;
        empty) prov='{"version": 1, "whitelist": []}' ;;
        malformed) prov='{"version": 1, "whitelist": ["nope", "ANY", "any", "'"${PK1^^}"'", 7]}' ;;
        wrongtype) prov='{"version": 1, "whitelist": "everyone"}' ;;
    esac
    boot $c "$prov"
    check $c "vpn-server and skysocks get an empty whitelist (closed)" \
        test "$(args $c vpn-server)$(args $c skysocks)" = "$closed$closed"
    check $c "the boot log says vpn-server refuses every key" logged $c "vpn-server: auto-start, whitelist empty: refuses every key"
    check $c "the boot log says skysocks refuses every key" logged $c "skysocks: whitelist empty: refuses every key"
    out=$(skywire config check -c "$T_WORK/$c.json" 2>&1)
    check $c "config check accepts it and says both apps refuse every key" \
        test "$(grep -c 'whitelist empty: refuses every key' <<<"$out")" = 2
done
check malformed "each malformed key is reported" \
    bash -c 'grep -c "is not a public key\|opens the apps only on its own" "$1" | grep -qx 5' _ "$T_WORK/malformed.log"
check wrongtype "a whitelist of the wrong type is reported" logged wrongtype "'whitelist' must be an array"

boot any '{"version": 1, "whitelist": "any"}'
check any "\"whitelist\": \"any\" gives --whitelist any to both apps" \
    test "$(args any vpn-server)$(args any skysocks)" = '["--whitelist","any"]["--whitelist","any"]'
check any "the boot log says the apps are open to every key" logged any "vpn-server: whitelist any: open to every visor key"
out=$(skywire config check -c "$T_WORK/any.json" 2>&1)
check any "config check says both apps are open to every key" test "$(grep -c 'whitelist any: open to every visor key' <<<"$out")" = 2

boot mixed '{"version": 1, "whitelist": ["any", "'"$PK1"'", "bad"], "app_whitelists": {"skysocks": "any"}}'
check mixed "\"any\" inside a list never opens an app (vpn-server keeps the valid key); app_whitelists.skysocks \"any\" opens skysocks" \
    test "$(args mixed vpn-server)$(args mixed skysocks)" = "[\"--whitelist\",\"$PK1\"][\"--whitelist\",\"any\"]"
check mixed "\"any\" inside a list is reported" logged mixed "\"any\" opens the apps only on its own"

boot listed '{"version": 1, "whitelist": ["'"$PK1"'", "'"$PK2"'"]}'
check listed "listed keys are passed on" \
    test "$(args listed vpn-server)" = "[\"--whitelist\",\"$PK1,$PK2\"]"
check listed "the boot log counts them" logged listed "vpn-server: auto-start, whitelist 2 key(s)"

boot notapoint '{"version": 1, "whitelist": ["'"$PK1"'", "'"$NOT_A_POINT"'"]}'
check notapoint "a well-formed non-key reaches the config, which the visor refuses (the app stays closed)" \
    bash -c '! skywire config check -c "$1" >/dev/null 2>&1' _ "$T_WORK/notapoint.json"
check notapoint "the boot log says why" logged notapoint "skywire config check: "

# The web UI's password (docs/ui.md): only a hash on the card, stored 0600 where the visor reads
# it, and left out of the applied copy; anything but an Argon2id string is refused.
HASH=$(echo 'correct horse battery' | "$SKYWIRE_BIN" config hash-password)
boot uipw '{"version": 1, "ui_password_hash": "'"$HASH"'"}'
check uipw "the hash is stored, mode 0600" \
    bash -c '[ "$(cat "$1")" = "$2" ] && [ "$(stat -c %a "$1")" = 600 ]' _ "$T_WORK/uipw.ui-password" "$HASH"
check uipw "the applied copy on the boot partition has no hash" \
    bash -c 'jq -e "has(\"ui_password_hash\") | not" "$1" >/dev/null' _ "$T_WORK/uipw.applied.json"
boot uipwbad '{"version": 1, "ui_password_hash": "hunter2hunter2"}'
check uipwbad "a plain password is refused and nothing stored" test ! -e "$T_WORK/uipwbad.ui-password"
check uipwbad "the boot log says why" logged uipwbad "'ui_password_hash' must be an Argon2id string"

finish
