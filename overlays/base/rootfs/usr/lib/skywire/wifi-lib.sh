# Wi-Fi provisioning helpers (sourced by setup.d/30-provision after setup-lib.sh; docs/boards.md,
# "Wi-Fi"): the client uplink ("wifi": wpa_supplicant) and the gateway's access point
# ("gateway": {"ap": …}: hostapd). Each object is checked as a whole first (wifi_check); only a
# fully valid one is written, so a bad field never leaves a half-configured radio. Secrets
# (passphrase, psk) go from the provisioning file to 0600 root-only files through builtins and
# pipes, never on a command line (/proc/<pid>/cmdline), and never into the boot log.
# The caller defines bad() (report one error) and P (the provisioning file).
WPA_SUPPLICANT_DIR=/etc/wpa_supplicant
HOSTAPD_DIR=/etc/hostapd
NETWORKD_DIR=/etc/systemd/network
SYSTEMD_UNIT_DIR=/etc/systemd/system
WIFI_DEFAULT_IFACE=wlan0
# IEEE 802.11: an SSID is 1-32 octets; a WPA passphrase 8-63 printable ASCII characters
# (802.11i Annex M.4) or a 256-bit PSK as 64 hex digits.
WIFI_SSID_MAX_BYTES=32
WIFI_PASSPHRASE_MIN=8
WIFI_PASSPHRASE_MAX=63
WIFI_PSK_HEX_DIGITS=64
# Access point channels: 2.4 GHz 1-13, and the 5 GHz channels that need no radar detection
# (DFS) in most regulatory domains (UNII-1 and UNII-3); hostapd applies the country's rules.
WIFI_AP_CHANNELS_2G="1 2 3 4 5 6 7 8 9 10 11 12 13"
WIFI_AP_CHANNELS_5G="36 40 44 48 149 153 157 161 165"
WIFI_AP_DEFAULT_CHANNEL=6
WIFI_AP_SECURITIES="wpa2 wpa3 wpa2-wpa3"
WIFI_AP_DEFAULT_SECURITY=wpa2

# wifi_check JQ_PATH NAME KIND: KIND client or ap. Reports every problem of the object at
# JQ_PATH in $P through bad() (messages name the field, never a secret's value) and returns 1 if
# there was one; otherwise sets W_SSID W_SSID_HEX W_SECRET W_SECRET_KIND (passphrase|psk)
# W_COUNTRY W_HIDDEN (0|1) W_IFACE, and for an AP W_CHANNEL W_SECURITY.
wifi_check() {
    local path=$1 name=$2 kind=$3 errs e n=0
    errs=$(jq -r --arg n "$name" --arg kind "$kind" --argjson max "$WIFI_SSID_MAX_BYTES" \
        --argjson pmin "$WIFI_PASSPHRASE_MIN" --argjson pmax "$WIFI_PASSPHRASE_MAX" \
        --argjson pskd "$WIFI_PSK_HEX_DIGITS" \
        --argjson ch "[$(echo $WIFI_AP_CHANNELS_2G $WIFI_AP_CHANNELS_5G | tr ' ' ,)]" \
        --argjson sec "$(printf '%s\n' $WIFI_AP_SECURITIES | jq -R . | jq -sc .)" '
        def printable: explode | all(. >= 32 and . <= 126);
        def noctrl: explode | all(. >= 32 and . != 127);
        def allowed: if $kind == "client" then ["ssid", "passphrase", "psk", "country", "hidden", "interface"]
                     else ["ssid", "passphrase", "country", "channel", "security", "hidden"] end;
        '"$path"' as $w
        | if ($w | type) != "object" then
            "\($n) must be an object {\"ssid\": …, \"passphrase\": …, \"country\": \"<2 letters>\"}"
          else
            ($w | keys[] | select(. as $k | allowed | index($k) | not) | "\($n).\(.): unknown field (\(allowed | join(", ")))"),
            (if ($w.ssid | type) != "string" then "\($n).ssid is missing (a string of 1-\($max) bytes)"
             elif ($w.ssid | utf8bytelength) < 1 or ($w.ssid | utf8bytelength) > $max then
                "\($n).ssid must be 1-\($max) bytes (got \($w.ssid | utf8bytelength))"
             elif ($w.ssid | noctrl | not) then "\($n).ssid contains control characters"
             else empty end),
            (if $kind == "client" and $w.passphrase != null and $w.psk != null then
                "\($n): give \"passphrase\" or \"psk\", not both"
             elif $kind == "client" and $w.psk != null then
                (if ($w.psk | type) == "string" and ($w.psk | test("^[0-9a-fA-F]{\($pskd)}$")) then empty
                 else "\($n).psk must be \($pskd) hex digits (the PSK wpa_passphrase computes)" end)
             elif ($w.passphrase | type) != "string" then
                "\($n).passphrase is missing (\($pmin)-\($pmax) printable ASCII characters)\(if $kind == "client" then "; or \"psk\": \($pskd) hex digits" else "" end)"
             elif ($w.passphrase | length) < $pmin or ($w.passphrase | length) > $pmax or ($w.passphrase | printable | not) then
                "\($n).passphrase must be \($pmin)-\($pmax) printable ASCII characters (got \($w.passphrase | length) characters\(if ($w.passphrase | printable) then "" else ", not all printable ASCII" end))"
             else empty end),
            (if $w.country == null then
                "\($n).country is missing: the two-letter country code (ISO 3166-1 alpha-2, e.g. \"DE\") sets the channels and power the radio may use"
             elif ($w.country | type) != "string" or ($w.country | test("^[A-Za-z]{2}$") | not) or ($w.country == "00") then
                "\($n).country must be a two-letter country code (ISO 3166-1 alpha-2, e.g. \"DE\")"
             else empty end),
            (if $w.hidden == null or ($w.hidden | type) == "boolean" then empty else "\($n).hidden must be true or false" end),
            (if $kind == "client" and $w.interface != null and (($w.interface | type) != "string" or ($w.interface | test("^[A-Za-z0-9_.@-]{1,15}$") | not))
             then "\($n).interface is not an interface name" else empty end),
            (if $kind == "ap" and $w.channel != null and ($ch | index($w.channel) | not) then
                "\($n).channel must be one of \($ch | map(tostring) | join(" ")) (got \($w.channel | tojson))" else empty end),
            (if $kind == "ap" and $w.security != null and ($sec | index($w.security) | not) then
                "\($n).security must be one of \($sec | join(", ")) (got \($w.security | tojson))" else empty end)
          end' "$P" 2>&1) || errs="$name: could not be read ($errs)"
    while IFS= read -r e; do
        [ -n "$e" ] || continue
        bad "$e"; n=$((n + 1))
    done <<<"$errs"
    ((n == 0)) || return 1
    W_SSID=$(jq -r "$path.ssid" "$P")
    W_SSID_HEX=$(printf '%s' "$W_SSID" | od -An -v -tx1 | tr -d ' \n')
    if [ "$(jq -r "$path | has(\"psk\")" "$P")" = true ]; then
        W_SECRET_KIND=psk W_SECRET=$(jq -r "$path.psk | ascii_downcase" "$P")
    else
        W_SECRET_KIND=passphrase W_SECRET=$(jq -r "$path.passphrase" "$P")
    fi
    W_COUNTRY=$(jq -r "$path.country | ascii_upcase" "$P")
    W_HIDDEN=0; [ "$(jq -r "$path.hidden // false" "$P")" = true ] && W_HIDDEN=1
    W_IFACE=$(jq -r "$path.interface // \"$WIFI_DEFAULT_IFACE\"" "$P")
    W_CHANNEL=$(jq -r "$path.channel // $WIFI_AP_DEFAULT_CHANNEL" "$P")
    W_SECURITY=$(jq -r "$path.security // \"$WIFI_AP_DEFAULT_SECURITY\"" "$P")
    return 0
}

# wpa_supplicant's configuration for the W_* values (wpa_supplicant.conf(5)). The SSID is
# written in hex and a passphrase between the first and the last double quote, which
# wpa_supplicant takes verbatim (no escapes), so no character of either can change the file.
wifi_client_conf() {
    echo "# Written by skywire-setup (30-provision) from skywire-provision.json's \"wifi\" (docs/boards.md)."
    echo "ctrl_interface=/run/wpa_supplicant"
    echo "update_config=0"
    echo "country=$W_COUNTRY"
    echo "network={"
    echo "	ssid=$W_SSID_HEX"
    ((W_HIDDEN)) && echo "	scan_ssid=1"
    if [ "$W_SECRET_KIND" = psk ]; then
        echo "	key_mgmt=WPA-PSK WPA-PSK-SHA256"
        echo "	psk=$W_SECRET"
    else
        # WPA2, WPA2/WPA3 transition and WPA3-only networks (SAE needs protected management frames).
        echo "	key_mgmt=WPA-PSK WPA-PSK-SHA256 SAE"
        echo "	ieee80211w=1"
        echo "	psk=\"$W_SECRET\""
    fi
    echo "}"
}

# hostapd's configuration for the W_* values on interface $1 (hostapd.conf(5)): SSID in hex
# (ssid2), the passphrase as the rest of its line (hostapd takes it verbatim).
wifi_ap_conf() {
    local band=g c
    for c in $WIFI_AP_CHANNELS_5G; do [ "$W_CHANNEL" = "$c" ] && band=a; done
    echo "# Written by skywire-setup (30-provision) from skywire-provision.json's \"gateway\".\"ap\" (docs/boards.md)."
    echo "interface=$1"
    echo "driver=nl80211"
    echo "ctrl_interface=/run/hostapd"
    echo "ctrl_interface_group=0"
    echo "ssid2=$W_SSID_HEX"
    echo "utf8_ssid=1"
    echo "ignore_broadcast_ssid=$W_HIDDEN"
    echo "country_code=$W_COUNTRY"
    echo "ieee80211d=1"
    echo "hw_mode=$band"
    echo "channel=$W_CHANNEL"
    echo "ieee80211n=1"
    [ $band = a ] && echo "ieee80211ac=1"
    echo "wmm_enabled=1"
    echo "auth_algs=1"
    echo "wpa=2"
    echo "rsn_pairwise=CCMP"
    case $W_SECURITY in
        wpa2) echo "wpa_key_mgmt=WPA-PSK" ;;
        wpa3) echo "wpa_key_mgmt=SAE"; echo "ieee80211w=2" ;;
        wpa2-wpa3) echo "wpa_key_mgmt=WPA-PSK SAE"; echo "ieee80211w=1"; echo "sae_require_mfp=1" ;;
    esac
    echo "wpa_passphrase=$W_SECRET"
}

# wifi_unit ACTION UNIT: enables (symlinks, no reload) or disables UNIT, and starts or stops it
# now when systemd runs (--no-block: this runs before sysinit.target, which the unit is after).
wifi_unit() {
    local action=$1 unit=$2
    if [ "$action" = on ]; then
        systemctl --no-reload enable "$unit" >/dev/null 2>&1 || { error "could not enable $unit"; return 1; }
        [ -d /run/systemd/system ] && { systemctl --no-block restart "$unit" || warn "could not start $unit now (it starts at the next boot)"; }
    else
        systemctl --no-reload disable "$unit" >/dev/null 2>&1 || true
        [ -d /run/systemd/system ] && systemctl --no-block stop "$unit" >/dev/null 2>&1
    fi
    return 0
}

# wifi_client_apply: writes the W_* client configuration (wpa_supplicant 0600, the interface's
# networkd file: DHCP) and starts wpa_supplicant@<iface>; removes the configuration of a previous
# client interface ($1, may be empty) when it differs.
wifi_client_apply() {
    local old=${1:-}
    command -v wpa_supplicant >/dev/null || { bad "wifi: this image has no Wi-Fi client support (wpa_supplicant is not installed: board $(. /etc/skywire/image-release 2>/dev/null; echo "${BOARD:-?}")); not configured"; return 1; }
    [ -n "$old" ] && [ "$old" != "$W_IFACE" ] && wifi_client_remove "$old"
    mkdir -p "$WPA_SUPPLICANT_DIR" "$NETWORKD_DIR"
    wifi_client_conf | write_atomic "$WPA_SUPPLICANT_DIR/wpa_supplicant-$W_IFACE.conf" 600 \
        || { bad "wifi: could not write $WPA_SUPPLICANT_DIR/wpa_supplicant-$W_IFACE.conf"; wifi_client_remove "$W_IFACE"; return 1; }
    printf '%s\n' "# Written by skywire-setup (30-provision): the Wi-Fi uplink (docs/boards.md)." \
        "[Match]" "Name=$W_IFACE" "" "[Network]" "DHCP=yes" "IPv6AcceptRA=yes" "" "[DHCPv4]" "UseDomains=yes" \
        | write_atomic "$NETWORKD_DIR/75-skywire-wifi-$W_IFACE.network" 644
    wifi_unit on "wpa_supplicant@$W_IFACE.service" || { wifi_client_remove "$W_IFACE"; return 1; }
    info "Wi-Fi uplink on $W_IFACE: network '$W_SSID' ($W_SECRET_KIND), country $W_COUNTRY$( ((W_HIDDEN)) && echo ", hidden")"
}

# wifi_client_remove IFACE: the client configuration of IFACE gone (secret file overwritten first).
wifi_client_remove() {
    wifi_unit off "wpa_supplicant@$1.service"
    wipe_file "$WPA_SUPPLICANT_DIR/wpa_supplicant-$1.conf"
    rm -f "$NETWORKD_DIR/75-skywire-wifi-$1.network"
}

# wifi_ap_apply IFACE OLD_IFACE: writes the W_* access point configuration for IFACE (hostapd
# 0600, /etc/hostapd/IFACE.conf as Debian's hostapd@.service reads) and starts hostapd@IFACE;
# removes the one of OLD_IFACE (may be empty) when it differs.
wifi_ap_apply() {
    local iface=$1 old=${2:-}
    [ -n "$old" ] && [ "$old" != "$iface" ] && wifi_ap_remove "$old"
    mkdir -p "$HOSTAPD_DIR"
    wifi_ap_conf "$iface" | write_atomic "$HOSTAPD_DIR/$iface.conf" 600 \
        || { bad "gateway.ap: could not write $HOSTAPD_DIR/$iface.conf"; wifi_ap_remove "$iface"; return 1; }
    wifi_unit on "hostapd@$iface.service" || { wifi_ap_remove "$iface"; return 1; }
    info "Wi-Fi access point on $iface: '$W_SSID', $W_SECURITY, channel $W_CHANNEL, country $W_COUNTRY$( ((W_HIDDEN)) && echo ", hidden")"
}

wifi_ap_remove() {
    wifi_unit off "hostapd@$1.service"
    wipe_file "$HOSTAPD_DIR/$1.conf"
}
