#!/usr/bin/env bash
# Replayed handshakes and pre-authentication floods (issue 16, docs/PROTOCOL.md §2.1, §3, §4.3).
# Visor A (key K) dials visor B; an attacker in a third namespace M:
#   1. resends K's sudph Initiation, built before K's session existed (a capture), 5 times:
#      B keeps K's session (same transport id, one entry), echo answers both ways;
#   2. resends K's stcpr message 1 on 20 connections it holds open: still one entry for K at B,
#      and B's datagram echo to K (connection(to:)) answers;
#   3. 10 s of 2,000 random Initiations/s (v1 and v2 sizes): B answers echo throughout, its log
#      grows by a bounded number of lines; CPU %, RSS and echo RTT are printed (measured, not asserted);
#   4. 6 s of Initiations with a valid mac1 (an attacker who knows B's key): B is under load and
#      answers with cookie replies, and a new sudph dial from A still succeeds (it uses the cookie);
#   5. 10 s of 100 valid Initiations/s from throw-away keys: B creates no peer and no transport
#      for any of them (none confirms), and its RSS stays bounded.
# To show the attacks on a visor built before the fix, run the attack tools with the old wire:
#   HOSTILE_WIRE=v1 SKYWIRE_BIN=/tmp/base/skywire SKYWIRE_HOSTILE=.build/debug/skywire-hostile bash t-hostile-handshake.sh
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

HOSTILE=${SKYWIRE_HOSTILE:-$(dirname "$SKYWIRE_BIN")/skywire-hostile}
WIRE=${HOSTILE_WIRE:-v2}
[ -x "$HOSTILE" ] || die "no skywire-hostile at $HOSTILE (swift build)"
FLOOD_RATE=2000 FLOOD_SECONDS=10
# Sizes of the random Initiations, used in turn: 137 is v1's Initiation (a DH each on a visor
# built before the fix), 181 the current one (refused at mac1).
FLOOD_SIZES=${FLOOD_SIZES:-137,181}
# Generous bounds (a loaded 2-core machine): log lines added by 10 s of flood; RSS growth under
# 10 s of throw-away-key Initiations.
MAX_FLOOD_LOG_LINES=100
THROWAWAY_RATE=100 MAX_THROWAWAY_RSS_GROWTH_KB=65536

A=skwtA$$ B=skwtB$$ M=skwtM$$
netns_add $A; netns_add $B; netns_add $M
veth_pair $A skwa0 10.78.0.1/24 $B skwb0 10.78.0.2/24
veth_pair $M skwm0 10.79.0.1/24 $B skwb1 10.79.0.2/24

PKA=$(visor_config a)
PKB=$(visor_config b)
# info, as on a board: every line B logs under attack counts.
for v in a b; do
    jq '.log_level = "info"' "$T_WORK/$v.json" >"$T_WORK/$v.tmp" && install -m 600 "$T_WORK/$v.tmp" "$T_WORK/$v.json"
done
visor_start a $A
visor_start b $B
ip netns exec $A ping -c1 -W2 10.78.0.2 >/dev/null || die "no underlay A-B"
ip netns exec $M ping -c1 -W2 10.79.0.2 >/dev/null || die "no underlay M-B"

# Capture time T0: K's message 1 to B on both transports, before any session exists.
expect_ok "replay make sudph (T0)" "$HOSTILE" replay make --config "$T_WORK/a.json" --remote-pk "$PKB" \
    --transport sudph --wire "$WIRE" --out "$T_WORK/init-sudph.bin"
expect_ok "replay make stcpr (T0)" "$HOSTILE" replay make --config "$T_WORK/a.json" --remote-pk "$PKB" \
    --transport stcpr --wire "$WIRE" --out "$T_WORK/init-stcpr.bin"
sleep 0.1

entries_for_a() { cli b tp ls --json | jq -c --arg pk "$PKA" '[.[] | select(.remote_pk == $pk)]'; }
echo_ok() {  # echo_ok FROM TO_PK: a stream echo and a datagram echo both answer
    cli "$1" visor ping "$2" --size 20000 --timeout 15 >/dev/null 2>&1 \
        && cli "$1" visor ping "$2" --datagram --count 5 --timeout 15 --json 2>/dev/null | jq -e '.received > 0' >/dev/null
}

# --- 1. replayed sudph Initiation
expect_ok "tp add sudph" cli a tp add "$PKB" -t sudph --addr 10.78.0.2:7778
before=$(entries_for_a)
id_before=$(jq -r '.[0].id' <<<"$before")
[ "$(jq length <<<"$before")" = 1 ] && pass "B has one sudph entry for K" || fail "entries before replay: $before"
out=$(ip netns exec $M "$HOSTILE" replay send --file "$T_WORK/init-sudph.bin" --target 10.79.0.2:7778 \
    --transport sudph --count 5 --interval 1) || fail "replay send sudph: $out"
log "sudph replay: $out"
sleep 1
after=$(entries_for_a)
[ "$(jq length <<<"$after")" = 1 ] && [ "$(jq -r '.[0].id' <<<"$after")" = "$id_before" ] \
    && [ "$(jq -r '.[0].state' <<<"$after")" = up ] \
    && pass "replayed sudph initiation left K's session in place (transport $id_before)" \
    || fail "K's sudph session at B changed after the replay: before $before, after $after"
echo_ok a "$PKB" && pass "K -> B echo answers after the sudph replay" || fail "K -> B echo after the sudph replay"
echo_ok b "$PKA" && pass "B -> K echo answers after the sudph replay" || fail "B -> K echo after the sudph replay"
grep -q "replaced by a new" "$T_WORK/b.log" && fail "B replaced a session: $(grep "replaced by a new" "$T_WORK/b.log" | head -2)" \
    || pass "B never replaced K's session"

# --- 2. 20 replayed stcpr message 1s
expect_ok "tp rm sudph" cli a tp rm "$PKB"
for _ in $(seq 1 50); do [ "$(entries_for_a | jq length)" = 0 ] && break; sleep 0.1; done
expect_ok "tp add stcpr" cli a tp add "$PKB" -t stcpr --addr 10.78.0.2:7777
stcpr_id=$(entries_for_a | jq -r '.[0].id')
ip netns exec $M "$HOSTILE" replay send --file "$T_WORK/init-stcpr.bin" --target 10.79.0.2:7777 \
    --transport stcpr --count 20 --interval 0.05 --hold 8 >"$T_WORK/replay-stcpr.out" 2>&1 &
REPLAY_PID=$!
T_PIDS+=("$REPLAY_PID")
sleep 3   # 20 connections sent their message 1 and are held open
during=$(entries_for_a)
[ "$(jq length <<<"$during")" = 1 ] && [ "$(jq -r '.[0].id' <<<"$during")" = "$stcpr_id" ] \
    && pass "20 replayed stcpr message 1s added no entry for K (one entry: $stcpr_id)" \
    || fail "entries for K at B during the stcpr replay: $(jq -c 'map({id, type, state})' <<<"$during")"
echo_ok b "$PKA" && pass "B -> K echo (connection(to:)) answers during the stcpr replay" || fail "B -> K echo during the stcpr replay"
echo_ok a "$PKB" && pass "K -> B echo answers during the stcpr replay" || fail "K -> B echo during the stcpr replay"
wait "$REPLAY_PID" || true
log "stcpr replay: $(cat "$T_WORK/replay-stcpr.out")"
jq -e '.answered == 0' "$T_WORK/replay-stcpr.out" >/dev/null && pass "no replayed stcpr message 1 got a message 2" \
    || fail "replayed stcpr message 1s were answered: $(cat "$T_WORK/replay-stcpr.out")"

# --- 3. 10 s of random Initiations at 2,000/s
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
rtt() { cli a visor ping "$PKB" --datagram --count 5 --timeout 10 --json 2>/dev/null | jq -r '.rtt_ms // "lost"'; }
idle0=$(cpu_ticks "$PID_b"); i0=$(date +%s.%N)
idle_rtts=()
for _ in 1 2 3 4 5 6 7 8; do idle_rtts+=("$(rtt)"); sleep 0.5; done
idle1=$(cpu_ticks "$PID_b"); i1=$(date +%s.%N)
idle_cpu=$(awk -v d=$((idle1 - idle0)) -v hz="$(getconf CLK_TCK)" -v t0="$i0" -v t1="$i1" 'BEGIN { printf "%.0f", 100 * d / hz / (t1 - t0) }')
log "B without flood (echo pings only): cpu ${idle_cpu}%, rss $(rss_kb "$PID_b") kB, echo rtt ms [$(IFS=,; echo "${idle_rtts[*]}")]"
lines0=$(wc -l <"$T_WORK/b.log")
ticks0=$(cpu_ticks "$PID_b")
ip netns exec $M "$HOSTILE" garbage-init --target 10.79.0.2:7778 --rate $FLOOD_RATE --duration $FLOOD_SECONDS \
    --sizes "$FLOOD_SIZES" >"$T_WORK/flood.out" 2>&1 &
FLOOD_PID=$!
T_PIDS+=("$FLOOD_PID")
t0=$(date +%s.%N)
rtts=() lost=0
while kill -0 "$FLOOD_PID" 2>/dev/null; do
    r=$(rtt)
    if [ "$r" = lost ] || [ -z "$r" ]; then lost=$((lost + 1)); else rtts+=("$r"); fi
    sleep 0.5
done
wait "$FLOOD_PID" || fail "garbage-init failed: $(cat "$T_WORK/flood.out")"
t1=$(date +%s.%N)
ticks1=$(cpu_ticks "$PID_b")
lines1=$(wc -l <"$T_WORK/b.log")
hz=$(getconf CLK_TCK)
cpu=$(awk -v d=$((ticks1 - ticks0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", 100 * d / hz / (t1 - t0) }')
rtt_list=$(IFS=,; echo "${rtts[*]:-}")
log "flood: $(cat "$T_WORK/flood.out")"
log "B under $FLOOD_RATE garbage initiations/s for ${FLOOD_SECONDS}s: cpu ${cpu}%, rss $(rss_kb "$PID_b") kB, echo rtt ms [$rtt_list], lost $lost, log +$((lines1 - lines0)) lines"
echo "FIGURES wire=$WIRE sizes=$FLOOD_SIZES idle_cpu_pct=$idle_cpu cpu_pct=$cpu rss_kb=$(rss_kb "$PID_b") rtt_ms=[$rtt_list] lost=$lost log_lines=$((lines1 - lines0))"
kill -0 "$PID_b" && pass "B survived the flood" || fail "B died under the flood"
[ "${#rtts[@]}" -gt 0 ] && [ "$lost" -le 1 ] && pass "B answered echo throughout the flood (${#rtts[@]} answered, $lost lost)" \
    || fail "B stopped answering echo under the flood (${#rtts[@]} answered, $lost lost)"
[ $((lines1 - lines0)) -le $MAX_FLOOD_LOG_LINES ] && pass "B's log grew by $((lines1 - lines0)) lines (bound $MAX_FLOOD_LOG_LINES)" \
    || fail "B's log grew by $((lines1 - lines0)) lines under the flood: $(sed -n "$((lines0 + 1)),$((lines0 + 3))p" "$T_WORK/b.log")"
echo_ok a "$PKB" && pass "K -> B echo answers after the flood" || fail "K -> B echo after the flood"

# --- 4. Initiations with a valid mac1: cookies under load, and a real dial still gets through
ip netns exec $M "$HOSTILE" garbage-init --target 10.79.0.2:7778 --rate $FLOOD_RATE --duration 6 \
    --mac1-pk "$PKB" >"$T_WORK/flood-mac1.out" 2>&1 &
FLOOD_PID=$!
T_PIDS+=("$FLOOD_PID")
sleep 1
expect_ok "a sudph dial from K succeeds while B is under load (cookie, mac2)" \
    cli a tp add "$PKB" -t sudph --addr 10.78.0.2:7778
wait "$FLOOD_PID" || true
log "mac1 flood: $(cat "$T_WORK/flood-mac1.out")"
jq -e '.cookie_replies > 0' "$T_WORK/flood-mac1.out" >/dev/null && pass "B answered the mac1-valid flood with cookie replies" \
    || fail "no cookie replies: $(cat "$T_WORK/flood-mac1.out")"
grep -q "refusals in the last .*handshake" "$T_WORK/b.log" && pass "B logged a refusal summary: $(grep "refusals in the last .*handshake" "$T_WORK/b.log" | tail -1 | cut -c1-200)" \
    || fail "no refusal summary in B's log"

# --- 5. valid Initiations from throw-away keys
entries0=$(cli b tp ls --json | jq length)
rss0=$(rss_kb "$PID_b")
out=$(ip netns exec $M "$HOSTILE" garbage-init --target 10.79.0.2:7778 --rate $THROWAWAY_RATE --duration 10 \
    --mac1-pk "$PKB" --valid --wire "$WIRE") || fail "garbage-init --valid: $out"
sleep 1
entries1=$(cli b tp ls --json | jq length)
rss1=$(rss_kb "$PID_b")
log "throw-away initiations: $out; B's transports $entries0 -> $entries1, rss $rss0 -> $rss1 kB"
echo "FIGURES-THROWAWAY wire=$WIRE rate=$THROWAWAY_RATE entries_before=$entries0 entries_after=$entries1 rss_before_kb=$rss0 rss_after_kb=$rss1"
[ "$entries1" -le "$entries0" ] && pass "no transport for unconfirmed throw-away handshakes ($entries0 -> $entries1)" \
    || fail "throw-away initiations created transports at B: $entries0 -> $entries1"
[ $((rss1 - rss0)) -le $MAX_THROWAWAY_RSS_GROWTH_KB ] && pass "B's RSS grew by $((rss1 - rss0)) kB (bound $MAX_THROWAWAY_RSS_GROWTH_KB)" \
    || fail "B's RSS grew by $((rss1 - rss0)) kB under throw-away initiations"
echo_ok a "$PKB" && pass "K -> B echo answers after the throw-away flood" || fail "K -> B echo after the throw-away flood"
finish
