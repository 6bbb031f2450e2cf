#!/usr/bin/env bash
# Skychat between visors (docs/skychat.md): A and B admit each other, C is a stranger to B.
# Delivery both ways, an offline peer (queued, then delivered when it is back), a stranger's
# messages dropped unread, block/unblock, a group, restart keeps the history, bad input refused,
# `config check` of the app's args, and a hostile flood (skywire-hostile chat-flood) against C
# (--whitelist any): bounded by the rate limit, malformed frames reset, C keeps serving A.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
HOSTILE=$(dirname "$SKYWIRE_BIN")/skywire-hostile
[ -x "$HOSTILE" ] || die "skywire-hostile not built ($HOSTILE)"

A=skwtCA$$ B=skwtCB$$ C=skwtCC$$
netns_add $A; netns_add $B; netns_add $C
veth_pair $A skca0 10.79.20.1/24 $B skcb0 10.79.20.2/24
veth_pair $B skcb1 10.79.21.1/24 $C skcc0 10.79.21.2/24
veth_pair $A skca1 10.79.22.1/24 $C skcc1 10.79.22.2/24

PKA=$(visor_config a)
PKB=$(visor_config b)
PKC=$(visor_config c)
# cfg NAME JQ-ARGS...: edits NAME's config.
cfg() { local n=$1; shift; jq "$@" "$T_WORK/$n.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/$n.json"; }
cfg a --arg b "$PKB" --arg c "$PKC" '.transport.peers[$b] = {"stcpr":"10.79.20.2:7777"} | .transport.peers[$c] = {"stcpr":"10.79.22.2:7777"}
    | .launcher.apps += [{"name":"skychat","args":["--whitelist",($b + "," + $c)],"auto_start":true,"port":1}]'
cfg b --arg a "$PKA" --arg c "$PKC" '.transport.peers[$a] = {"stcpr":"10.79.20.1:7777"} | .transport.peers[$c] = {"stcpr":"10.79.21.2:7777"}
    | .launcher.apps += [{"name":"skychat","args":["--whitelist",$a],"auto_start":true,"port":1}]'
cfg c --arg a "$PKA" --arg b "$PKB" '.transport.peers[$a] = {"stcpr":"10.79.22.1:7777"} | .transport.peers[$b] = {"stcpr":"10.79.21.1:7777"}
    | .launcher.apps += [{"name":"skychat","args":["--whitelist","any"],"auto_start":true,"port":1}]'

# ---- config check ------------------------------------------------------------------------------------
out=$("$SKYWIRE_BIN" config check -c "$T_WORK/c.json" 2>&1) && grep -q "skychat: whitelist any: open to every visor key" <<<"$out" \
    && pass "config check says skychat --whitelist any is open" || fail "config check (any): $out"
cp "$T_WORK/c.json" "$T_WORK/bad.json"
jq '(.launcher.apps[] | select(.name=="skychat") | .args) = ["--rate","0"]' "$T_WORK/c.json" >"$T_WORK/bad.json"
set +e; out=$("$SKYWIRE_BIN" config check -c "$T_WORK/bad.json" 2>&1); rc=$?; set -e
[ "$rc" = 2 ] && grep -q 'launcher.apps\[[0-9]*\].args' <<<"$out" && grep -q -- "--rate needs" <<<"$out" \
    && pass "config check refuses bad skychat args with their path" || fail "config check rc=$rc: $out"

visor_start a $A
visor_start b $B
visor_start c $C

state() { cli "$1" skychat show "$2" --json | jq -r --arg t "$3" '[.messages[] | select(.text==$t) | .state] | first // "none"'; }
# wait_for DESC SECONDS CMD...: retries CMD every 0.5 s until it succeeds (bounded).
wait_for() {
    local desc=$1 secs=$2; shift 2
    local n=$((secs * 2))
    for _ in $(seq 1 $n); do "$@" >/dev/null 2>&1 && { pass "$desc"; return 0; }; sleep 0.5; done
    fail "$desc (not within $secs s)"
}

# ---- direct messages both ways ---------------------------------------------------------------------
out=$(cli a skychat send "$PKB" "hello B, from A" 2>&1) && grep -q "^delivered to $PKB" <<<"$out" \
    && pass "A -> B: delivered" || fail "A -> B: $out"
ls=$(cli b skychat ls --json)
[ "$(jq -r --arg a "$PKA" '.[] | select(.id==$a) | .unread' <<<"$ls")" = 1 ] && pass "B's ls: one unread from A" || fail "B's ls: $ls"
[ "$(state b "$PKA" "hello B, from A")" = received ] && pass "B shows A's message" || fail "B show: $(cli b skychat show "$PKA" --json)"
[ "$(cli b skychat ls --json | jq -r --arg a "$PKA" '.[] | select(.id==$a) | .unread')" = 0 ] && pass "show marks it read" || fail "unread after show"
out=$(cli b skychat send "$PKA" "héllo A ✓ from B" 2>&1) && grep -q "^delivered" <<<"$out" && pass "B -> A: delivered (UTF-8)" || fail "B -> A: $out"
[ "$(state a "$PKB" "héllo A ✓ from B")" = received ] && [ "$(state a "$PKB" "hello B, from A")" = delivered ] \
    && pass "A's conversation: its message delivered, B's reply received" || fail "A show: $(cli a skychat show "$PKB" --json)"
cli a skychat show "$PKB" | grep -q "me  hello B, from A" && pass "show prints the conversation" || fail "show text: $(cli a skychat show "$PKB")"

# ---- bad input ---------------------------------------------------------------------------------------
expect_fail "an empty message is refused" "empty" cli a skychat send "$PKB" ""
big=$(head -c 4097 /dev/zero | tr '\0' x)
expect_fail "a 4097-byte message is refused" "at most 4096" cli a skychat send "$PKB" "$big"
expect_fail "a bad key is refused" "not a public key" cli a skychat send nokey hi
expect_fail "an unknown group is refused" "no group" cli a skychat send g0123456789abcdef hi
expect_fail "sending to one's own key is refused" "own key" cli a skychat send "$PKA" hi

# ---- a stranger: C is not on B's whitelist -------------------------------------------------------------
out=$(cli c skychat send "$PKB" "spam from C" --wait 3 2>&1) && grep -q "^queued" <<<"$out" && grep -qi "refused" <<<"$out" \
    && pass "C -> B: queued, refused by B" || fail "C -> B: $out"
st=$(cli b apps ls --json | jq -c '.[] | select(.name=="skychat") | .info')
[ "$(cli b skychat ls --json | jq -r --arg c "$PKC" '[.[] | select(.id==$c)] | length')" = 0 ] && [ "$(jq -r .refused_strangers <<<"$st")" -ge 1 ] \
    && pass "B stored nothing from C, counted the refusal" || fail "B after C: $(cli b skychat ls --json) $st"

# ---- block and unblock ----------------------------------------------------------------------------------
expect_ok "B blocks A" cli b skychat block "$PKA"
out=$(cli a skychat send "$PKB" "while blocked" --wait 2 2>&1) && grep -q "^queued" <<<"$out" && pass "A -> B while blocked: queued" || fail "blocked: $out"
[ "$(state b "$PKA" "while blocked")" = none ] && pass "B stored nothing while A was blocked" || fail "blocked message stored"
expect_ok "B unblocks A" cli b skychat unblock "$PKA"
wait_for "after unblock, A's queued message is delivered (retry with backoff)" 60 \
    bash -c "[ \"\$(\"$SKYWIRE_BIN\" cli --rpc $T_WORK/a.sock skychat show $PKB --json | jq -r '[.messages[] | select(.text==\"while blocked\") | .state] | first')\" = delivered ]"

# ---- an offline peer ------------------------------------------------------------------------------------
visor_stop b
out=$(cli a skychat send "$PKB" "sent while B was down" --wait 2 2>&1) && grep -q "^queued" <<<"$out" && pass "A -> B (down): queued" || fail "offline: $out"
[ "$(cli a skychat ls --json | jq -r --arg b "$PKB" '.[] | select(.id==$b) | .queued')" = 1 ] && pass "ls shows it queued" || fail "ls queued: $(cli a skychat ls --json)"
visor_stop a
visor_start a $A   # the queue survives A's restart too
visor_start b $B
wait_for "B back up: the queued message arrives" 60 \
    bash -c "\"$SKYWIRE_BIN\" cli --rpc $T_WORK/b.sock skychat show $PKA --json | jq -e '[.messages[] | select(.text==\"sent while B was down\")] | length == 1'"
[ "$(state a "$PKB" "sent while B was down")" = delivered ] && pass "A marks it delivered" || fail "A state: $(state a "$PKB" "sent while B was down")"
# B's history survived its restart.
[ "$(state b "$PKA" "hello B, from A")" = received ] && pass "B's history survived the restart" || fail "B history lost"
[ "$(stat -c %a "$T_WORK/b-state/skychat.json")" = 600 ] && pass "state file mode 0600" || fail "state mode $(stat -c %a "$T_WORK/b-state/skychat.json")"

# ---- a group ----------------------------------------------------------------------------------------------
g=$(cli a skychat group create friends --members "$PKB,$PKC" --json | jq -r .id)
[[ "$g" =~ ^g[0-9a-f]{16}$ ]] && pass "group created: $g" || fail "group create: $g"
out=$(cli a skychat send "$g" "to the group" 2>&1) && grep -q "^delivered" <<<"$out" && pass "group message delivered to B and C" || fail "group send: $out"
[ "$(cli b skychat ls --json | jq -r --arg g "$g" '.[] | select(.id==$g) | .name')" = friends ] && [ "$(state c "$g" "to the group")" = received ] \
    && pass "B and C file it under the group" || fail "group receive: $(cli b skychat ls --json)"
many=$(for i in $(seq 1 33); do "$SKYWIRE_BIN" config gen -o "$T_WORK/k$i.json"; rm -f "$T_WORK/k$i.json"; done | paste -sd,)
expect_fail "a group of 33 members is refused" "at most 32" cli a skychat group create big --members "$many"

# ---- the chat API over HTTP (A's UI, 127.0.0.1:8000 in A): session, CSRF, bad input -----------------
UI=http://127.0.0.1:8000 JAR=$T_WORK/jar J=(-H 'Content-Type: application/json')
hc() { ip netns exec $A curl -s --max-time 60 -w '\n%{http_code}' "$@" | { body=$(cat); echo "${body##*$'\n'} ${body%$'\n'*}"; }; }
expect_http() {
    local desc=$1 status=$2 pattern=$3; shift 3
    local out; out=$(hc "$@")
    if [ "${out%% *}" = "$status" ] && grep -qE -- "$pattern" <<<"${out#* }"; then pass "$desc"; else fail "$desc: got $out"; fi
}
expect_http "GET /api/chat without a session: 401" 401 unauthorized "$UI/api/chat"
token=$(cli a url); token=${token##*token=}; token=${token%%&*}
expect_http "token login" 200 '"csrf"' -c "$JAR" "${J[@]}" -d "{\"token\":\"$token\"}" "$UI/api/login"
csrf=$(hc -b "$JAR" "$UI/api/session" | sed 's/.*"csrf":"\([0-9a-f]*\)".*/\1/')
X=(-b "$JAR" -H "X-CSRF-Token: $csrf")
expect_http "GET /api/chat: A's conversations" 200 "\"id\":\"$PKB\"" -b "$JAR" "$UI/api/chat"
expect_http "POST /api/chat/send without the CSRF token: 403" 403 'X-CSRF-Token' -b "$JAR" "${J[@]}" -d "{\"to\":\"$PKB\",\"text\":\"x\"}" "$UI/api/chat/send"
expect_http "POST /api/chat/send, empty text: 400" 400 'empty' "${X[@]}" "${J[@]}" -d "{\"to\":\"$PKB\",\"text\":\"\"}" "$UI/api/chat/send"
expect_http "POST /api/chat/send, unknown member: 400" 400 'unknown member' "${X[@]}" "${J[@]}" -d "{\"to\":\"$PKB\",\"text\":\"x\",\"wait\":60}" "$UI/api/chat/send"
expect_http "GET /api/chat/show, bad limit: 400" 400 'limit' -b "$JAR" "$UI/api/chat/show?id=$PKB&limit=x"
expect_http "GET /api/chat/show does not mark read" 200 '"messages"' -b "$JAR" "$UI/api/chat/show?id=$PKB"
expect_http "POST /api/chat/send: queued at once, delivered by the loop" 200 '"state":"(queued|delivered)"' "${X[@]}" "${J[@]}" -d "{\"to\":\"$PKB\",\"text\":\"via the API\"}" "$UI/api/chat/send"
wait_for "the API's message is delivered" 30 \
    bash -c "[ \"\$(\"$SKYWIRE_BIN\" cli --rpc $T_WORK/a.sock skychat show $PKB --json | jq -r '[.messages[] | select(.text==\"via the API\") | .state] | first')\" = delivered ]"

# ---- the UI's chat page in headless Chromium (SKYWIRE_UI_BROWSER=0 leaves it out) --------------------
if [ "${SKYWIRE_UI_BROWSER:-1}" != 0 ]; then
    art=${SKYWIRE_UI_ARTIFACTS:-/tmp/skywire-ui-artifacts}; mkdir -p "$art"
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && /usr/bin/python3 -c 'import selenium' 2>/dev/null \
        || fail "the browser test needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh), or SKYWIRE_UI_BROWSER=0"
    msg="typed on the chat page $$"
    if ip netns exec $A /usr/bin/python3 "$here/tools/ui-browser.py" --link "$(cli a url)" --artifacts "$art" --profile "$T_WORK/chromium-a" \
        --chat-send "$PKB" --chat-text "$msg" >"$T_WORK/browser-a.log" 2>&1; then
        pass "browser on A: $(tail -1 "$T_WORK/browser-a.log")"
    else
        fail "browser on A: $(tail -20 "$T_WORK/browser-a.log")"
    fi
    if ip netns exec $B /usr/bin/python3 "$here/tools/ui-browser.py" --link "$(cli b url)" --artifacts "$art" --profile "$T_WORK/chromium-b" \
        --chat-read "$PKA" --chat-text "$msg" >"$T_WORK/browser-b.log" 2>&1; then
        pass "browser on B: $(tail -1 "$T_WORK/browser-b.log")"
    else
        fail "browser on B: $(tail -20 "$T_WORK/browser-b.log")"
    fi
fi

# ---- a hostile flood against C (--whitelist any) --------------------------------------------------------
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID_c/status"; }
rss_before=$(rss)
before=$(cli c apps ls --json | jq -c '.[] | select(.name=="skychat") | .info')
res=$(ip netns exec $A timeout 60 "$HOSTILE" chat-flood --addr 10.79.22.2:7777 --pk "$PKC" --messages 2000 --streams 3 --oversized --seconds 20 2>&1) \
    || fail "chat-flood: $res"
log "chat-flood: $res"
sleep 2
after=$(cli c apps ls --json | jq -c '.[] | select(.name=="skychat") | .info')
log "C's RSS: ${rss_before} kB before the flood, $(rss) kB after (measured, not asserted)"
received=$(( $(jq .received <<<"$after") - $(jq .received <<<"$before") ))
# The default rate is 60 a minute after a burst of 20: the flood (seconds) gets far less than 200.
[ "$(jq .messages_sent <<<"$res")" = 2000 ] && [ "$received" -le 100 ] && [ "$(jq .rate_limited <<<"$after")" -gt 1000 ] \
    && pass "flood of 2000: C stored $received, rate-limited $(jq .rate_limited <<<"$after")" || fail "flood: received $received, $after"
[ "$(jq .busy <<<"$after")" -ge 1 ] && pass "C refused the stream past the per-sender cap" || fail "busy: $after"
[ "$(jq .malformed <<<"$after")" -ge 1 ] && pass "C reset the stream with an oversized frame" || fail "malformed: $after"
[ "$(jq .history_bytes <<<"$after")" -le 1048576 ] && pass "C's history within its byte bound" || fail "history: $after"
kill -0 "$PID_c" && out=$(cli a skychat send "$PKC" "still there?" 2>&1) && grep -q "^delivered" <<<"$out" \
    && pass "C still serves A after the flood" || fail "C after flood: $out"

finish
