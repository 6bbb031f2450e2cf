#!/usr/bin/env bash
# The board's boot hooks (overlays/base/rootfs/usr/lib/skywire/setup.d: 30-provision, 40-config,
# 50-apps) against skywire-provision.json files, each run in a private mount namespace whose /etc,
# /boot and /var/lib are overlays on the host's (nothing on the host changes). Checks the
# closed-by-default whitelists (issue 16): nothing provisioned, an empty list or only malformed
# keys give `--whitelist ""` (refuses every key) and the boot log says so; only "whitelist": "any"
# gives `--whitelist any`; a malformed key never widens a list.
# Wi-Fi (issue 22): the client uplink ("wifi") and the gateway's access point ("gateway": {"ap"}):
# generated wpa_supplicant/hostapd files (mode 0600, parsed back by the host's wpa_supplicant and
# hostapd), units enabled, secrets gone from the boot partition, the boot log and provisioned.json,
# bad input refused with an error naming the field and no file written.
# Each boot runs in its own network namespace too (55-gateway loads nftables rules), with
# `systemctl` and `networkctl` replaced by stubs that record their arguments, and /run a tmpfs
# that has /run/systemd/system (as on a booted board), so nothing on the host changes.
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
# $T_WORK/CASE.log (the hooks' messages, i.e. the boot log); the files the hooks wrote stay in
# $T_WORK/CASE/{etc,boot,var}/u (the overlays' upper directories) and the stubs' calls in
# $T_WORK/CASE/calls. BOOT_OVERLAYS (default base vpn-exit socks-proxy) lists the image's overlays
# (with gateway, its hook 55-gateway runs too); BOOT_FROM=CASE2 starts from the state CASE2 left (a
# reboot with a new provisioning file). An empty PROVISION_JSON: no file on the boot partition;
# BOOT_FSTAB: a line appended to /etc/fstab (e.g. the image's /boot/firmware line).
boot() {
    local c=$1 d=$T_WORK/$1
    mkdir -p "$d"/{etc,boot,var}/{u,w} "$d/bootfs"
    if [ -n "${BOOT_FROM:-}" ]; then
        for m in etc boot var; do cp -a "$T_WORK/$BOOT_FROM/$m/u/." "$d/$m/u/"; done
    fi
    if [ -n "$2" ]; then printf '%s\n' "$2" >"$d/provision.json"; else : >"$d/provision.json"; fi
    : >"$d/calls"
    unshare -m -n --propagation private bash -c '
        set -e
        d=$1 setup=$2 repo=$3 overlays=$4 fstab=$5
        for m in etc:/etc boot:/boot var:/var/lib; do
            mount -t overlay overlay -o "lowerdir=${m#*:},upperdir=$d/${m%%:*}/u,workdir=$d/${m%%:*}/w" "${m#*:}"
        done
        mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system
        export T_CALLS=$d/calls
        mkdir -p /boot/firmware /etc/skywire/apps.d /var/lib/skywire
        printf "%s\n" $overlays >/etc/skywire/overlays
        hooks="30-provision 40-config 50-apps"
        for o in $overlays; do
            cp "$repo/overlays/$o/rootfs/etc/skywire/apps.d/"*.json /etc/skywire/apps.d/ 2>/dev/null || true
            [ $o = gateway ] && hooks="$hooks $repo/overlays/gateway/rootfs/usr/lib/skywire/setup.d/55-gateway"
        done
        [ -z "$fstab" ] || printf "%s\n" "$fstab" >>/etc/fstab
        [ ! -s "$d/provision.json" ] || cp "$d/provision.json" /boot/firmware/skywire-provision.json
        export SKYWIRE_SETUP_LIB=$setup/setup-lib.sh
        for h in $hooks; do [[ $h == /* ]] || h=$setup/setup.d/$h; bash "$h" || echo "hook $(basename "$h") failed" >&2; done
        cp /etc/skywire/skywire-config.json "$d.json"
        if [ -e /var/lib/skywire/ui-password ]; then cp -p /var/lib/skywire/ui-password "$d.ui-password"; fi
        cp /boot/firmware/skywire-provision.applied.json "$d.applied.json" 2>/dev/null || true
    ' boot "$d" "$SETUP_DIR" "$repo" "${BOOT_OVERLAYS:-base vpn-exit socks-proxy}" "${BOOT_FSTAB:-}" 2>"$T_WORK/$c.log" \
        || fail "[$c] the hooks could not run: $(tail -n 5 "$T_WORK/$c.log")"
}
# Stubs for the commands that would reach the host's systemd: they record their arguments.
for stub in systemctl networkctl; do
    printf '#!/bin/sh\necho "%s $*" >>"$T_CALLS"\n' "$stub" >"$T_WORK/bin/$stub"
    chmod +x "$T_WORK/bin/$stub"
done
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

# The pty app (docs/pty.md "Session host"): a remote root shell is opt-in. It is in every image
# (base), handed to the socket-activated session host, and auto-started only when
# "app_whitelists": {"pty": ...} is provisioned; the general "whitelist" never opens it.
auto() { jq -c --arg n "$2" '.launcher.apps[] | select(.name == $n) | .auto_start' "$T_WORK/$1.json" 2>/dev/null; }
HOSTARGS='"--session-host","/run/skywire-pty.sock"'
check listed "pty: not started with only the general whitelist, and closed" \
    test "$(auto listed pty) $(args listed pty)" = "false [\"--whitelist\",\"\",$HOSTARGS]"
check listed "pty: the boot log says how to open it" logged listed 'pty: installed, not started (opt-in: provision "app_whitelists": {"pty":'
check any "pty: \"whitelist\": \"any\" does not open it" test "$(auto any pty) $(args any pty)" = "false [\"--whitelist\",\"\",$HOSTARGS]"
boot pty '{"version": 1, "role": "visor", "whitelist": ["'"$PK2"'"], "app_whitelists": {"pty": ["'"$PK1"'"]}}'
check pty "pty: started with app_whitelists.pty (whatever the role), its keys only, through the session host" \
    test "$(auto pty pty) $(args pty pty)" = "true [\"--whitelist\",\"$PK1\",$HOSTARGS]"
check pty "pty: the config passes skywire config check" skywire config check -c "$T_WORK/pty.json"
check pty "pty: the role still holds the other apps back" test "$(auto pty vpn-server)" = false
check pty "pty: the config entry has no opt_in marker" bash -c '! grep -q opt_in "$1"' _ "$T_WORK/pty.json"
boot ptyuser '{"version": 1, "app_whitelists": {"pty": ["'"$PK1"'"]}, "pty_user": "nobody"}'
check ptyuser "pty_user is passed as --user" \
    test "$(args ptyuser pty)" = "[\"--whitelist\",\"$PK1\",$HOSTARGS,\"--user\",\"nobody\"]"
check ptyuser "pty_user is remembered" bash -c '[ "$(jq -r .pty_user "$1/skywire/provisioned.json")" = nobody ]' _ "$T_WORK/ptyuser/etc/u"
for c in ptyuserbad ptyusermissing ptyusertype; do
    case $c in
        ptyuserbad) u='"root;reboot"'; why="'pty_user' must be a user name" ;;
        ptyusermissing) u='"nosuchuser'$$'"'; why="no such user on this board" ;;
        ptyusertype) u='["root"]'; why="'pty_user' must be a user name" ;;
    esac
    boot $c '{"version": 1, "app_whitelists": {"pty": ["'"$PK1"'"]}, "pty_user": '"$u"'}'
    check $c "a bad pty_user ($u) is refused: no --user, pty still started as root" \
        test "$(auto $c pty) $(args $c pty)" = "true [\"--whitelist\",\"$PK1\",$HOSTARGS]"
    check $c "the boot log says why" logged $c "$why"
done
BOOT_FROM=ptyuser boot ptyuserkept '{"version": 1, "app_whitelists": {"pty": ["'"$PK1"'"]}, "pty_user": "Bad"}'
check ptyuserkept "a bad pty_user on a later boot keeps the previous one" \
    test "$(args ptyuserkept pty)" = "[\"--whitelist\",\"$PK1\",$HOSTARGS,\"--user\",\"nobody\"]"

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

# ---- Wi-Fi ------------------------------------------------------------------------------------
command -v wpa_supplicant >/dev/null && command -v hostapd >/dev/null \
    || die "wpa_supplicant and hostapd are needed (scripts/install-deps.sh installs them)"
up() { echo "$T_WORK/$1/$2/u/$3"; }     # up CASE etc|boot|var PATH: a file the hooks wrote
mode_of() { stat -c '%a %U' "$1" 2>/dev/null; }
called() { grep -qxF -- "$2" "$T_WORK/$1/calls"; }
hexof() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
# secret_gone CASE SECRET: the secret, as is and as JSON writes it (quotes and backslashes
# escaped), is in no file left on the boot partition, not in the boot log, not in provisioned.json
# (only in the 0600 wpa_supplicant/hostapd files).
secret_gone() {
    local form
    for form in "$2" "$(jq -n --arg s "$2" '$s' | sed 's/^"//; s/"$//')"; do
        ! grep -rqF -- "$form" "$T_WORK/$1/boot/u" && ! grep -qF -- "$form" "$T_WORK/$1.log" \
            && ! grep -qF -- "$form" "$(up "$1" etc skywire/provisioned.json)" || return 1
    done
    [ ! -e "$(up "$1" boot firmware/skywire-provision.json)" ]
}
# wpa_parsed CONF: wpa_supplicant's own parser on CONF (-dd -K prints what it read, keys included;
# no Wi-Fi driver in this namespace, so it stops after reading the file). Prints the hex of the SSID
# and of the passphrase (or of the 32-byte PSK) it read, or "config error: <its message>".
wpa_parsed() {
    local out
    out=$(unshare -n timeout 20 wpa_supplicant -dd -K -c "$1" -i wlan0 -D nl80211 2>&1)
    if grep -qE '^Line [0-9]+:|Failed to read or parse configuration' <<<"$out"; then
        echo "config error: $(grep -E '^Line [0-9]+:|Failed to read' <<<"$out" | head -n 3 | tr '\n' ' ')"; return
    fi
    awk '/^ssid - hexdump_ascii/ { f = "ssid"; next } /^PSK \(ASCII passphrase\) - hexdump_ascii/ { f = "pass"; next }
         /^PSK - hexdump\(len=32\):/ { sub(/^PSK - hexdump\(len=32\): /, ""); gsub(/ /, ""); psk = $0; f = ""; next }
         /^     [0-9a-f][0-9a-f] / && f != "" { line = substr($0, 6, 48); gsub(/ /, "", line); v[f] = v[f] line; next }
         { f = "" }
         END { printf "ssid=%s pass=%s psk=%s\n", v["ssid"], v["pass"], psk }' <<<"$out"
}
# hostapd_parsed CONF: hostapd's own parser and configuration check on CONF (hostapd -dd; it reads
# and checks the whole file, then fails to reach a Wi-Fi driver in this namespace): "ok" when it
# found no error in the file, else its messages.
hostapd_parsed() {
    local out
    out=$(unshare -n timeout 20 hostapd -dd "$1" 2>&1)
    if grep -qE '^Line [0-9]+:|errors found in configuration file|Failed to set up interface with' <<<"$out" \
       || ! grep -q "^Configuration file: " <<<"$out"; then
        echo "config error: $(grep -E '^Line [0-9]+:|errors found|enabled, but' <<<"$out" | head -n 3 | tr '\n' ' ')"
    elif grep -q "Failed to initialize driver 'nl80211'\|nl80211: " <<<"$out"; then
        echo ok
    else
        echo "unexpected: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
    fi
}

# Client with a passphrase full of the characters config files care about, a UTF-8 SSID, lower-case
# country, hidden network.
PASS1='a "q"# \ x=y;$HOME `id` '
SSID1='Café Net "1"'
boot wifi "$(jq -n --arg p "$PASS1" --arg s "$SSID1" '{version: 1, log_level: "debug",
    wifi: {ssid: $s, passphrase: $p, country: "de", hidden: true}}')"
conf=$(up wifi etc wpa_supplicant/wpa_supplicant-wlan0.conf)
check wifi "wpa_supplicant-wlan0.conf written, mode 600, owned by root" test "$(mode_of "$conf")" = "600 root"
check wifi "wpa_supplicant reads back the SSID and the passphrase byte for byte" \
    test "$(wpa_parsed "$conf")" = "ssid=$(hexof "$SSID1") pass=$(hexof "$PASS1") psk="
check wifi "country DE, hidden network scanned for, WPA2/WPA3" \
    bash -c 'grep -qx "country=DE" "$1" && grep -qx "	scan_ssid=1" "$1" && grep -qx "	key_mgmt=WPA-PSK WPA-PSK-SHA256 SAE" "$1"' _ "$conf"
check wifi "the uplink gets DHCP from networkd" \
    bash -c 'grep -qx "Name=wlan0" "$1" && grep -qx "DHCP=yes" "$1"' _ "$(up wifi etc systemd/network/75-skywire-wifi-wlan0.network)"
check wifi "wpa_supplicant@wlan0 enabled and started" \
    bash -c 'grep -qx "systemctl --no-reload enable wpa_supplicant@wlan0.service" "$1" && grep -qx "systemctl --no-block restart wpa_supplicant@wlan0.service" "$1"' _ "$T_WORK/wifi/calls"
check wifi "the passphrase is gone from the boot partition, the boot log and provisioned.json" secret_gone wifi "$PASS1"
check wifi "the applied copy keeps the rest of the wifi object" \
    test "$(jq -c .wifi "$(up wifi boot firmware/skywire-provision.applied.json)")" = "$(jq -nc --arg s "$SSID1" '{ssid: $s, country: "de", hidden: true}')"
check wifi "the boot log names the network" logged wifi "Wi-Fi uplink on wlan0: network '$SSID1' (passphrase), country DE, hidden"
check wifi "the other fields are applied" test "$(jq -r .log_level "$T_WORK/wifi.json")" = debug

# Client with a 64-hex PSK (as Raspberry Pi Imager writes it), another interface.
PSK1=$(printf 'a1%.0s' $(seq 32))
boot wifipsk '{"version": 1, "wifi": {"ssid": "home", "psk": "'"${PSK1^^}"'", "country": "FR", "interface": "wlan1"}}'
conf=$(up wifipsk etc wpa_supplicant/wpa_supplicant-wlan1.conf)
check wifipsk "a hex PSK is passed as the PSK (WPA2; SAE needs the passphrase)" \
    test "$(wpa_parsed "$conf")" = "ssid=$(hexof home) pass= psk=$PSK1"
check wifipsk "mode 600, WPA-PSK, wpa_supplicant@wlan1 enabled" \
    bash -c '[ "$(stat -c %a "$1")" = 600 ] && grep -qx "	key_mgmt=WPA-PSK WPA-PSK-SHA256" "$1" && grep -qx "systemctl --no-reload enable wpa_supplicant@wlan1.service" "$2"' _ "$conf" "$T_WORK/wifipsk/calls"
psk_gone() { secret_gone wifipsk "${PSK1^^}" && secret_gone wifipsk "$PSK1"; }
check wifipsk "the PSK (as written, upper case, and lower case) is gone from the boot partition, the boot log and provisioned.json" psk_gone

# Bad client input: refused with an error naming the field; no file, no unit, nothing recorded
# as provisioned, the secret in no log; the other fields still applied.
LONG_SSID=$(printf 's%.0s' $(seq 33))
BADPASS='s3cr3t-but-bad-#1'
SHORTPASS='Sh0rt#7'     # 7 characters: one too few
for c in ssidlong ssidempty passshort passlong passutf8 nocountry badcountry both badpsk nosecret unknown notobject; do
    case $c in
        ssidlong)   w='{"ssid": "'"$LONG_SSID"'", "passphrase": "'"$BADPASS"'", "country": "DE"}'; msg="wifi.ssid must be 1-32 bytes (got 33)" ;;
        ssidempty)  w='{"ssid": "", "passphrase": "'"$BADPASS"'", "country": "DE"}'; msg="wifi.ssid must be 1-32 bytes (got 0)" ;;
        passshort)  w='{"ssid": "home", "passphrase": "'"$SHORTPASS"'", "country": "DE"}'; msg="wifi.passphrase must be 8-63 printable ASCII characters (got 7 characters)" ;;
        passlong)   w='{"ssid": "home", "passphrase": "'"$BADPASS$(printf 'p%.0s' $(seq 47))"'", "country": "DE"}'; msg="(got 64 characters)" ;;
        passutf8)   w='{"ssid": "home", "passphrase": "'"$BADPASS"'é", "country": "DE"}'; msg="not all printable ASCII" ;;
        nocountry)  w='{"ssid": "home", "passphrase": "'"$BADPASS"'"}'; msg="wifi.country is missing" ;;
        badcountry) w='{"ssid": "home", "passphrase": "'"$BADPASS"'", "country": "DEU"}'; msg="wifi.country must be a two-letter country code" ;;
        both)       w='{"ssid": "home", "passphrase": "'"$BADPASS"'", "psk": "'"$PSK1"'", "country": "DE"}'; msg='give "passphrase" or "psk", not both' ;;
        badpsk)     w='{"ssid": "home", "psk": "'"${PSK1:1}"'", "country": "DE"}'; msg="wifi.psk must be 64 hex digits" ;;
        nosecret)   w='{"ssid": "home", "country": "DE"}'; msg="wifi.passphrase is missing" ;;
        unknown)    w='{"ssid": "home", "passphrase": "'"$BADPASS"'", "country": "DE", "pasphrase": "x"}'; msg="wifi.pasphrase: unknown field" ;;
        notobject)  w='"'"$BADPASS"'"'; msg="wifi must be an object" ;;
    esac
    boot "$c" '{"version": 1, "log_level": "debug", "wifi": '"$w"'}'
    secret=$BADPASS; case $c in passshort) secret=$SHORTPASS ;; badpsk) secret=${PSK1:1} ;; esac
    check $c "refused with: $msg" logged $c "$msg"
    check $c "the boot log says wifi was not changed" logged $c "wifi not changed"
    check $c "no wpa_supplicant or networkd file, no unit enabled, nothing provisioned" \
        bash -c '[ ! -e "$1/wpa_supplicant" ] && [ -z "$(ls "$1/systemd/network" 2>/dev/null)" ] && [ ! -s "$2" ] && [ "$(jq -c ".wifi // null" "$1/skywire/provisioned.json")" = null ]' \
        _ "$T_WORK/$c/etc/u" "$T_WORK/$c/calls"
    check $c "the secret is gone from the boot partition, the boot log and provisioned.json" secret_gone $c "$secret"
    check $c "the other fields are applied" test "$(jq -r .log_level "$T_WORK/$c.json")" = debug
done

# Not JSON: the copy kept as skywire-provision.invalid.json has no passphrase.
boot invalidwifi '{"version": 1, "wifi": {"ssid": "home", "passphrase": "'"$BADPASS"'", "country": "DE"}'
check invalidwifi "the invalid file keeps no passphrase" \
    bash -c '[ -f "$1" ] && ! grep -qF -- "$2" "$1" && grep -qF "<secret removed>" "$1"' _ "$(up invalidwifi boot firmware/skywire-provision.invalid.json)" "$BADPASS"
check invalidwifi "and the secret is nowhere else" secret_gone invalidwifi "$BADPASS"

# Re-provisioning: the uplink moves to wlan1 (wlan0's file overwritten and removed, its unit
# disabled), then "wifi": null removes it.
BOOT_FROM=wifi boot wifimove '{"version": 1, "wifi": {"ssid": "other", "passphrase": "another-pass", "country": "DE", "interface": "wlan1"}}'
check wifimove "wlan0's configuration removed, its unit disabled; wlan1's written and enabled" \
    bash -c '[ ! -e "$1/wpa_supplicant/wpa_supplicant-wlan0.conf" ] && [ ! -e "$1/systemd/network/75-skywire-wifi-wlan0.network" ] \
        && [ -f "$1/wpa_supplicant/wpa_supplicant-wlan1.conf" ] && grep -qx "systemctl --no-reload disable wpa_supplicant@wlan0.service" "$2" \
        && grep -qx "systemctl --no-reload enable wpa_supplicant@wlan1.service" "$2"' _ "$T_WORK/wifimove/etc/u" "$T_WORK/wifimove/calls"
BOOT_FROM=wifimove boot wifioff '{"version": 1, "wifi": null}'
check wifioff '"wifi": null removes the uplink' \
    bash -c '[ ! -e "$1/wpa_supplicant/wpa_supplicant-wlan1.conf" ] && [ ! -e "$1/systemd/network/75-skywire-wifi-wlan1.network" ] \
        && grep -qx "systemctl --no-reload disable wpa_supplicant@wlan1.service" "$2"' _ "$T_WORK/wifioff/etc/u" "$T_WORK/wifioff/calls"
check wifioff "the board keeps a provisioned wifi field of null" test "$(jq -c '[has("wifi"), .wifi]' "$(up wifioff etc skywire/provisioned.json)")" = '[true,null]'

# Gateway with a Wi-Fi access point as its LAN, for each security mode; hostapd's own parser and
# configuration check accept each file.
APPASS='ap pass "#1" \ =x'
export BOOT_OVERLAYS="base gateway"
for sec in wpa2 wpa3 wpa2-wpa3; do
    c=ap-$sec
    ch=6; [ $sec = wpa3 ] && ch=36
    boot $c "$(jq -n --arg p "$APPASS" --arg e "$PK1" --arg sec $sec --argjson ch $ch '{version: 1,
        gateway: {exit: $e, ap: {ssid: "pocket-vpn", passphrase: $p, country: "SE", channel: $ch, security: $sec}}}')"
    conf=$(up $c etc hostapd/wlan0.conf)
    check $c "hostapd/wlan0.conf written, mode 600, owned by root" test "$(mode_of "$conf")" = "600 root"
    check $c "hostapd accepts it" test "$(hostapd_parsed "$conf")" = ok
    check $c "SSID (hex), passphrase verbatim, country, channel" \
        bash -c 'grep -qx "ssid2=$(printf pocket-vpn | od -An -v -tx1 | tr -d " \n")" "$1" && grep -qxF "wpa_passphrase=$2" "$1" \
            && grep -qx "country_code=SE" "$1" && grep -qx "channel=$3" "$1" && grep -qx "interface=wlan0" "$1"' _ "$conf" "$APPASS" $ch
    check $c "hostapd@wlan0 enabled and started" \
        bash -c 'grep -qx "systemctl --no-reload enable hostapd@wlan0.service" "$1" && grep -qx "systemctl --no-block restart hostapd@wlan0.service" "$1"' _ "$T_WORK/$c/calls"
    check $c "the LAN is wlan0: vpn-client --lan wlan0, its networkd file and the fence" \
        bash -c '[ "$(jq -c ".launcher.apps[] | select(.name == \"vpn-client\") | .args[3]" "$1")" = "\"wlan0\"" ] \
            && grep -qx "Name=wlan0" "$2/systemd/network/70-skywire-gateway-lan.network" && grep -q "iifname \"wlan0\"" "$2/skywire/gateway-fence.nft"' \
        _ "$T_WORK/$c.json" "$T_WORK/$c/etc/u"
    check $c "the passphrase is gone from the boot partition, the boot log and provisioned.json" secret_gone $c "$APPASS"
done
check ap-wpa3 "WPA3-only: SAE with management frame protection required, 5 GHz" \
    bash -c 'grep -qx "wpa_key_mgmt=SAE" "$1" && grep -qx "ieee80211w=2" "$1" && grep -qx "hw_mode=a" "$1"' _ "$(up ap-wpa3 etc hostapd/wlan0.conf)"
check ap-wpa2-wpa3 "transition mode: WPA-PSK and SAE, optional management frame protection" \
    bash -c 'grep -qx "wpa_key_mgmt=WPA-PSK SAE" "$1" && grep -qx "ieee80211w=1" "$1"' _ "$(up ap-wpa2-wpa3 etc hostapd/wlan0.conf)"

# Bad access point input: the whole gateway field refused, no hostapd file, no unit.
for c in apshort apchannel apnocountry apsecurity apsameradio; do
    ap='{"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'", "country": "SE"}' wifi='' lan=''
    case $c in
        apshort)     ap='{"ssid": "pocket-vpn", "passphrase": "'"$SHORTPASS"'", "country": "SE"}'; msg="gateway.ap.passphrase must be 8-63 printable ASCII characters (got 7 characters)" ;;
        apchannel)   ap='{"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'", "country": "SE", "channel": 14}'; msg="gateway.ap.channel must be one of" ;;
        apnocountry) ap='{"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'"}'; msg="gateway.ap.country is missing" ;;
        apsecurity)  ap='{"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'", "country": "SE", "security": "wep"}'; msg="gateway.ap.security must be one of wpa2, wpa3, wpa2-wpa3" ;;
        apsameradio) wifi=', "wifi": {"ssid": "home", "passphrase": "home-pass-1", "country": "SE"}'; msg="gateway.ap: wlan0 is the Wi-Fi uplink" ;;
    esac
    boot $c '{"version": 1, "gateway": {"exit": "'"$PK1"'", "ap": '"$ap"'}'"$wifi"'}'
    check $c "refused with: $msg" logged $c "$msg"
    check $c "gateway not changed, no hostapd file, no hostapd unit" \
        bash -c 'grep -qF "gateway not changed" "$1" && [ ! -e "$2/hostapd" ] && ! grep -q hostapd "$3" && [ "$(jq -c ".gateway // null" "$2/skywire/provisioned.json")" = null ]' \
        _ "$T_WORK/$c.log" "$T_WORK/$c/etc/u" "$T_WORK/$c/calls"
    check $c "the passphrase is gone from the boot partition, the boot log and provisioned.json" secret_gone $c "$([ $c = apshort ] && echo "$SHORTPASS" || echo "$BADPASS")"
done
check apsameradio "the uplink itself is applied" test -f "$(up apsameradio etc wpa_supplicant/wpa_supplicant-wlan0.conf)"
# Across boots: an access point on the interface the uplink already has is refused, and so is an
# uplink on the access point's interface.
BOOT_FROM=wifi boot apafterwifi '{"version": 1, "gateway": {"exit": "'"$PK1"'", "ap": {"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'", "country": "SE"}}}'
check apafterwifi "an access point on the uplink's wlan0 is refused, the uplink kept" \
    bash -c 'grep -qF "gateway.ap: wlan0 is the Wi-Fi uplink" "$1" && [ ! -e "$2/hostapd/wlan0.conf" ] && [ -f "$2/wpa_supplicant/wpa_supplicant-wlan0.conf" ]' \
    _ "$T_WORK/apafterwifi.log" "$T_WORK/apafterwifi/etc/u"
BOOT_FROM=ap-wpa2 boot wifiafterap '{"version": 1, "wifi": {"ssid": "home", "passphrase": "'"$BADPASS"'", "country": "SE"}}'
check wifiafterap "an uplink on the access point's wlan0 is refused, the access point kept" \
    bash -c 'grep -qF "wifi: wlan0 is the gateway'"'"'s Wi-Fi access point" "$1" && [ ! -e "$2/wpa_supplicant/wpa_supplicant-wlan0.conf" ] && [ -f "$2/hostapd/wlan0.conf" ]' \
    _ "$T_WORK/wifiafterap.log" "$T_WORK/wifiafterap/etc/u"
check wifiafterap "the passphrase is gone from the boot partition, the boot log and provisioned.json" secret_gone wifiafterap "$BADPASS"

# Re-provisioning the gateway without "ap": the access point is removed.
BOOT_FROM=ap-wpa2 boot apoff '{"version": 1, "gateway": {"exit": "'"$PK1"'", "lan": "eth1"}}'
check apoff "the access point's file removed and hostapd@wlan0 disabled; the LAN is eth1" \
    bash -c '[ ! -e "$1/hostapd/wlan0.conf" ] && grep -qx "systemctl --no-reload disable hostapd@wlan0.service" "$2" && grep -qx "Name=eth1" "$1/systemd/network/70-skywire-gateway-lan.network"' \
    _ "$T_WORK/apoff/etc/u" "$T_WORK/apoff/calls"

# An image without the gateway overlay refuses an access point.
export BOOT_OVERLAYS="base vpn-exit socks-proxy"
boot apnogw '{"version": 1, "gateway": {"exit": "'"$PK1"'", "ap": {"ssid": "pocket-vpn", "passphrase": "'"$BADPASS"'", "country": "SE"}}}'
check apnogw "refused: no gateway overlay" bash -c 'grep -qF "gateway.ap: this image has no gateway overlay" "$1" && [ ! -e "$2/hostapd" ]' _ "$T_WORK/apnogw.log" "$T_WORK/apnogw/etc/u"
unset BOOT_OVERLAYS

# The boot partition not mounted (fstab's nofail line, device timeout): no provisioning file is
# read, and the boot log says why instead of the visor silently making a new key.
BOOT_FSTAB="PARTUUID=4d2c6ec6-01  /boot/firmware  vfat  defaults,nofail,x-systemd.device-timeout=15min 0 2" boot unmounted ''
check unmounted "the boot partition listed in fstab but not mounted is reported" \
    logged unmounted "provision: WARNING: the boot partition is not mounted on /boot/firmware: no skywire-provision.json read"
boot notlisted ''
check notlisted "no such warning when fstab has no /boot/firmware line" bash -c '! grep -qF "boot partition is not mounted" "$1"' _ "$T_WORK/notlisted.log"

finish
