#!/usr/bin/env bash
# The web UI over real HTTP (docs/ui.md): login, sessions, CSRF, bad input, rate limits, the VPN
# driven through the API, and the connection bounds, against visors in namespaces.
#
#   C (client, UI on 127.0.0.1:8000 in C) ──10.81.0.0/24──▶ E (exit) ──203.0.113.0/24──▶ N
#   C ──198.51.100.0/24 (C's default route)──▶ N
# The same setup also runs Tests/integration/tools/ui-browser.py in headless Chromium (chromium,
# chromium-driver, python3-selenium: scripts/install-deps.sh); screenshots go to
# ${SKYWIRE_UI_ARTIFACTS:-/tmp/skywire-ui-artifacts}. SKYWIRE_UI_BROWSER=0 leaves it out.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
HOSTILE_BIN=$(dirname "$SKYWIRE_BIN")/skywire-hostile

C=skwtUC$$ E=skwtUE$$ N=skwtUN$$
ui_cleanup() {
    local rc=$?
    set +e
    rm -rf "/etc/netns/$C"
    (exit $rc)
    cleanup
}
trap ui_cleanup EXIT

netns_add $C; netns_add $E; netns_add $N
veth_pair $C skwuc0 10.81.0.1/24 $E skwue0 10.81.0.2/24
veth_pair $E skwue1 203.0.113.1/24 $N skwun0 203.0.113.2/24
veth_pair $C skwuc1 198.51.100.1/24 $N skwun1 198.51.100.2/24
ip -n $C route add default via 198.51.100.2
ip -n $E route add default via 203.0.113.2
mkdir -p "/etc/netns/$C"
printf 'nameserver 192.0.2.1\n' >"/etc/netns/$C/resolv.conf"
mkdir -p "$T_WORK/www"
head -c 3000000 /dev/urandom >"$T_WORK/www/big.bin"
ip netns exec $N python3 -m http.server 8080 --bind 203.0.113.2 --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")

PKC=$(visor_config c)
PKE=$(visor_config e)
jq --arg wl "$PKC" '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["--whitelist",$wl])' \
    "$T_WORK/e.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/e.json"
jq --arg e "$PKE" '.transport.peers[$e] = {"stcpr":"10.81.0.2:7777"}' \
    "$T_WORK/c.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/c.json"
jq '.ui = {"listen": ""}' "$T_WORK/e.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/e.json"

expect_ok "config check accepts ui.listen" "$SKYWIRE_BIN" config check -c "$T_WORK/c.json"
jq '.ui = {"listen": "ui.example:8000"}' "$T_WORK/c.json" >"$T_WORK/bad.json" && chmod 600 "$T_WORK/bad.json"
expect_fail "config check refuses a host name for ui.listen" 'ui.listen.*must be an IP address' "$SKYWIRE_BIN" config check -c "$T_WORK/bad.json"

visor_start e $E
visor_start c $C
expect_fail "the exit's UI is off: no login link" 'the web UI is off' cli e url
UI=http://127.0.0.1:8000
for _ in $(seq 1 50); do ip netns exec $C curl -s -o /dev/null "$UI/" && break; sleep 0.1; done
JAR=$T_WORK/jar
# hc ARGS...: curl inside C; prints "STATUS BODY".
hc() { ip netns exec $C curl -s --max-time 60 -w '\n%{http_code}' "$@" | { body=$(cat); echo "${body##*$'\n'} ${body%$'\n'*}"; }; }
# expect_http DESC STATUS PATTERN ARGS...
expect_http() {
    local desc=$1 status=$2 pattern=$3; shift 3
    local out; out=$(hc "$@")
    if [ "${out%% *}" = "$status" ] && grep -qE -- "$pattern" <<<"${out#* }"; then pass "$desc"; else fail "$desc: got $out"; fi
}
J=(-H 'Content-Type: application/json')

# 1. Nothing without a session, on loopback too.
for p in status transports apps vpn vpn/exits vpn-server socks socks/servers session; do
    expect_http "GET /api/$p without a session: 401" 401 '"unauthorized"' "$UI/api/$p"
done
expect_http "POST /api/vpn/stop without a session: 401" 401 unauthorized -X POST "$UI/api/vpn/stop"
expect_http "the page itself loads without a session (no data in it)" 200 'app.js' "$UI/"

# 2. Token login: once only; a wrong token is refused.
expect_http "a made-up token: 401" 401 'wrong or used login token' "${J[@]}" -d "{\"token\":\"$(printf '%064d' 0)\"}" "$UI/api/login"
link=$(cli c url)
[[ $link =~ ^http://127\.0\.0\.1:8000/#/login\?token=[0-9a-f]{64}\&next=overview$ ]] && pass "cli url: $link" || fail "cli url: $link"
vlink=$(cli c vpn url)
[[ $vlink == *"&next=vpn" ]] && pass "cli vpn url opens the VPN page" || fail "cli vpn url: $vlink"
out=$(env -u DISPLAY -u WAYLAND_DISPLAY "$SKYWIRE_BIN" cli --rpc "$T_WORK/c.sock" ui)
[[ $out =~ token=[0-9a-f]{64} ]] && pass "cli ui without a desktop prints the link" || fail "cli ui: $out"
token=${link##*token=}; token=${token%%&*}
expect_http "token login: 200 with the CSRF token" 200 '"csrf":"[0-9a-f]{64}"' -c "$JAR" "${J[@]}" -d "{\"token\":\"$token\"}" "$UI/api/login"
grep -q 'HttpOnly_127.0.0.1' "$JAR" && pass "session cookie is HttpOnly" || fail "cookie jar: $(cat "$JAR")"
expect_http "the same token again: 401" 401 'wrong or used' "${J[@]}" -d "{\"token\":\"$token\"}" "$UI/api/login"
csrf=$(hc -b "$JAR" "$UI/api/session" | sed 's/.*"csrf":"\([0-9a-f]*\)".*/\1/')
X=(-b "$JAR" -H "X-CSRF-Token: $csrf")

# 3. The API with a session: the same answers as the control socket.
expect_http "GET /api/status: the visor's key" 200 "\"pk\":\"$PKC\"" -b "$JAR" "$UI/api/status"
expect_http "GET /api/apps lists the apps" 200 '"name":"vpn-client"' -b "$JAR" "$UI/api/apps"
expect_http "GET /api/vpn-server: the client's server is stopped" 200 '"status":"stopped"' -b "$JAR" "$UI/api/vpn-server"
expect_http "GET /api/socks" 200 '"result"' -b "$JAR" "$UI/api/socks"
expect_http "GET /api/vpn/exits without discovery: 503 naming it" 503 'transport.discovery is not set' -b "$JAR" "$UI/api/vpn/exits?country=DE"
expect_http "GET /api/vpn/exits?country=xx: 400" 400 'ISO 3166' -b "$JAR" "$UI/api/vpn/exits?country=xx"

# 4. CSRF and bad input.
expect_http "POST /api/vpn/start without X-CSRF-Token: 403" 403 'X-CSRF-Token' -b "$JAR" "${J[@]}" -d "{\"pk\":\"$PKE\"}" "$UI/api/vpn/start"
expect_http "POST with a foreign Origin: 403" 403 'cross-origin' "${X[@]}" -H 'Origin: http://attacker.example' -X POST "$UI/api/vpn/stop"
expect_http "a DNS-rebinding Host: 421" 421 'Host header' -b "$JAR" -H 'Host: attacker.example:8000' "$UI/api/status"
expect_http "not JSON: 400 with the position" 400 'not JSON: line 1' "${X[@]}" "${J[@]}" -d '{"pk":' "$UI/api/vpn/start"
expect_http "an unknown member: 400 naming it" 400 'unknown member \\"method\\"' "${X[@]}" "${J[@]}" -d '{"method":"tp.rm"}' "$UI/api/vpn/start"
expect_http "a bad key: 400 from vpn.start itself" 400 'is not a public key' "${X[@]}" "${J[@]}" -d '{"pk":"xyz"}' "$UI/api/vpn/start"
expect_http "form-encoded body: 415" 415 'application/json' "${X[@]}" -d 'pk=1' "$UI/api/vpn/start"
big=$(head -c 9000 /dev/zero | tr '\0' a)
expect_http "a 9 KB header: 431" 431 'request head longer' -H "X-Big: $big" "$UI/api/status"
head -c 17000 /dev/zero | tr '\0' ' ' >"$T_WORK/big-body"
expect_http "a 17 KB body: 413" 413 'body longer' "${X[@]}" "${J[@]}" --data-binary "@$T_WORK/big-body" "$UI/api/vpn/start"

# 5. The VPN through the API: connect, carry traffic, disconnect.
expect_http "POST /api/vpn/start: connected" 200 '"state":"connected"' "${X[@]}" "${J[@]}" -d "{\"pk\":\"$PKE\",\"killswitch\":false}" "$UI/api/vpn/start"
expect_http "GET /api/transports lists the transport to the exit" 200 "\"remote_pk\":\"$PKE\"" -b "$JAR" "$UI/api/transports"
got=$(ip netns exec $C curl -fsS --max-time 60 http://203.0.113.2:8080/big.bin | wc -c)
[ "$got" = 3000000 ] && pass "3 MB through the tunnel" || fail "fetched $got bytes"
expect_http "GET /api/vpn counts the bytes" 200 '"bytes_down":[0-9]{7,}' -b "$JAR" "$UI/api/vpn"
if [ "${SKYWIRE_UI_BROWSER:-1}" = 1 ]; then
    expect_ok "vpn stop before the browser test" cli c vpn stop
    art=${SKYWIRE_UI_ARTIFACTS:-/tmp/skywire-ui-artifacts}; mkdir -p "$art"
    blink=$(cli c url)
    # The browser runs in C (the UI is on C's loopback); traffic for the chart comes from curl.
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && /usr/bin/python3 -c 'import selenium' 2>/dev/null \
        || fail "the browser test needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh), or SKYWIRE_UI_BROWSER=0"
    if ip netns exec $C /usr/bin/python3 "$here/tools/ui-browser.py" --link "$blink" --exit "$PKE" --artifacts "$art" --profile "$T_WORK/chromium" \
        --traffic "http://203.0.113.2:8080/big.bin" >"$T_WORK/browser.log" 2>&1; then
        pass "browser: $(tail -1 "$T_WORK/browser.log")"
    else
        fail "browser test: $(tail -20 "$T_WORK/browser.log")"
    fi
    cli c vpn stop >/dev/null 2>&1 || true
else
    expect_http "POST /api/vpn/stop" 200 '"result":\{\}' "${X[@]}" -X POST "$UI/api/vpn/stop"
fi
expect_http "GET /api/vpn: stopped" 200 '"status":"stopped"' -b "$JAR" "$UI/api/vpn"

# The VPN server page's operations: a malformed whitelist refused, "any" shown as open, stop.
expect_http "vpn-server start with a malformed whitelist: 400" 400 'not a visor public key' "${X[@]}" "${J[@]}" -d '{"whitelist":"nope"}' "$UI/api/vpn-server/start"
expect_http "vpn-server start, whitelist any: access open" 200 '"access":"open"' "${X[@]}" "${J[@]}" -d '{"whitelist":"any","secure":true}' "$UI/api/vpn-server/start"
expect_http "vpn-server stop" 200 '"result":\{\}' "${X[@]}" -X POST "$UI/api/vpn-server/stop"

# 6. Password login, rate limits, logout.
expect_http "no password set: 401 saying so" 401 'no UI password is set' "${J[@]}" -d '{"password":"whatever-123"}' "$UI/api/login"
expect_fail "a 5-byte password is refused" 'must be 8' sh -c "echo short | '$SKYWIRE_BIN' cli --rpc '$T_WORK/c.sock' ui password"
expect_ok "cli ui password (stdin)" sh -c "echo 'correct horse battery' | '$SKYWIRE_BIN' cli --rpc '$T_WORK/c.sock' ui password"
[ "$(stat -c %a "$T_WORK/c-state/ui-password")" = 600 ] && grep -q '^\$argon2id\$' "$T_WORK/c-state/ui-password" \
    && pass "stored as an Argon2id hash, mode 0600" || fail "stored: $(ls -l "$T_WORK/c-state/ui-password")"
expect_http "the old session ended with the password change" 401 unauthorized -b "$JAR" "$UI/api/status"
# Earlier logins from 127.0.0.1 used part of its bucket (5, one back every 12 s): wait for a slot.
for i in 1 2 3; do
    out=$(hc -c "$JAR" "${J[@]}" -d '{"password":"correct horse battery"}' "$UI/api/login")
    [ "${out%% *}" = 429 ] || break
    sleep 12
done
[ "${out%% *}" = 200 ] && grep -q '"csrf"' <<<"$out" && pass "password login" || fail "password login: $out"
codes=""
for _ in $(seq 1 8); do codes+="$(hc "${J[@]}" -d '{"password":"wrong horse battery"}' "$UI/api/login" | cut -d' ' -f1) "; done
[[ $codes == *429* ]] && pass "login attempts rate-limited: $codes" || fail "no 429 after repeated wrong passwords: $codes"
csrf=$(hc -b "$JAR" "$UI/api/session" | sed 's/.*"csrf":"\([0-9a-f]*\)".*/\1/')
expect_http "logout" 200 '\{\}' -b "$JAR" -H "X-CSRF-Token: $csrf" -X POST "$UI/api/logout"
expect_http "after logout: 401" 401 unauthorized -b "$JAR" "$UI/api/status"

# 7. Connection bounds: 100 never-finished requests hold at most 64 slots, each closed at the
# 10 s request deadline; afterwards the UI answers again.
if [ -x "$HOSTILE_BIN" ]; then
    out=$(ip netns exec $C "$HOSTILE_BIN" slowloris --to 127.0.0.1:8000 --connections 100 --interval-ms 300 --max-seconds 25)
    closed=$(sed -n 's/.*closed_by_server=\([0-9]*\).*/\1/p' <<<"$out"); still=$(sed -n 's/.*still_open=\([0-9]*\).*/\1/p' <<<"$out")
    last=$(sed -n 's/.*last_closed_s=\([0-9.]*\).*/\1/p' <<<"$out")
    [ "${still:-1}" = 0 ] && [ "${closed:-0}" -ge 64 ] && awk -v l="$last" 'BEGIN{exit !(l < 20)}' \
        && pass "slowloris: all closed by the server, the last after ${last} s ($out)" || fail "slowloris: $out"
    expect_http "the UI answers after the slowloris" 401 unauthorized "$UI/api/status"
else
    fail "skywire-hostile not built ($HOSTILE_BIN)"
fi
finish
