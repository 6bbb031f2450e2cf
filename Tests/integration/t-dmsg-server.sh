#!/usr/bin/env bash
# The dmsg relay server (docs/dmsg.md, PROTOCOL.md §7), issue 18. A relay in namespace R; honest
# clients (skywire-hostile dmsg-pipe, the project's DmsgClientSession) in namespace C; attackers
# in namespace M:
#   1. an echo client and a sender: 4 MB through the relay, checked byte for byte; /health counts
#      the stream and the bytes both ways; a stream to a key without a session is refused (no-session);
#   2. stream cap: a client asking for 20 streams gets --max-streams-per-client (8);
#   3. a client that opens 4 streams to the echo, sends within its credit and never reads: the
#      relay queues at most its credit (it stops reading the client), its RSS stays bounded and the
#      honest pair still works (the echo's stream cap of 8 leaves it room: see docs/dmsg.md on
#      streams held open to a victim);
#   4. a flood of OPENs to absent keys whose answers are never read: refusals counted, RSS bounded,
#      the honest pair still works;
#   5. 2,000 TCP connections that never complete a handshake (skywire-hostile half-open): closed
#      by the admission limits, the honest pair still works;
#   6. client cap: a relay with --max-clients 5 and 10 clients: 5 are closed after their handshake
#      and /health counts them;
#   7. memory per idle client: 1,000 authenticated idle clients; RSS growth / clients is printed
#      (FIGURES-DMSG-RSS, measured, not asserted beyond a generous bound);
#   8. discovery: a relay started with --discovery lists itself as a `dmsg` service whose
#      transport entry carries its --public-addr, and refreshes both;
#   9. closed by default: a relay without --clients says at startup that it refuses everyone and
#      refuses every client right after its handshake (the client reports why, /health counts
#      refused_keys, no session appears); with --clients-file only listed keys are served, and
#      SIGHUP re-reads the file (a key added is served, a key removed is cut off);
#  10. SIGTERM: the relay deletes its discovery entries (transport and service) before it exits.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

HOSTILE=${SKYWIRE_HOSTILE:-$(dirname "$SKYWIRE_BIN")/skywire-hostile}
DMSG=${SKYWIRE_DMSG:-$(dirname "$SKYWIRE_BIN")/skywire-dmsg}
[ -x "$HOSTILE" ] || die "no skywire-hostile at $HOSTILE (swift build)"
[ -x "$DMSG" ] || die "no skywire-dmsg at $DMSG (swift build)"
# Generous bounds (a loaded 2-core machine, debug build).
MAX_ATTACK_RSS_GROWTH_KB=65536
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}
MAX_KB_PER_IDLE_CLIENT=200

R=skwtR$$ C=skwtC$$ M=skwtM$$
netns_add $R; netns_add $C; netns_add $M
veth_pair $R skwr0 10.81.0.1/24 $C skwc0 10.81.0.2/24
veth_pair $R skwr1 10.82.0.1/24 $M skwm0 10.82.0.2/24

# relay_start NAME PORT HTTP_PORT ARGS...: a relay in R; sets RPK_<NAME>, PID_<NAME>.
relay_start() {
    local name=$1 port=$2 http=$3; shift 3
    ip netns exec $R "$DMSG" --listen 0.0.0.0:$port --http 127.0.0.1:$http --key-file "$T_WORK/$name-key.json" \
        --log-level debug "$@" >>"$T_WORK/$name.log" 2>&1 &
    local pid=$!
    T_PIDS+=("$pid")
    eval "PID_$name=$pid"
    for _ in $(seq 1 100); do
        if health $http >/dev/null 2>&1; then break; fi
        kill -0 "$pid" 2>/dev/null || die "relay $name exited early"
        sleep 0.1
    done
    [ "$(stat -c %a "$T_WORK/$name-key.json")" = 600 ] && pass "$name key file created with mode 0600" || fail "$name key file mode"
    eval "RPK_$name=$(jq -r .public_key "$T_WORK/$name-key.json")"
}
health() { ip netns exec $R curl -sf "http://127.0.0.1:$1/health"; }

relay_start r1 8081 8082 --clients any --max-streams-per-client 8
ip netns exec $C ping -c1 -W2 10.81.0.1 >/dev/null || die "no underlay C-R"
ECHO_SEED=7
pipe() { ip netns exec $C "$HOSTILE" dmsg-pipe --addr 10.81.0.1:8081 --relay "$RPK_r1" "$@"; }
pipe --mode echo --seed $ECHO_SEED --seconds 600 >"$T_WORK/echo.out" 2>>"$T_WORK/echo.log" &
T_PIDS+=("$!")
for _ in $(seq 1 50); do [ -s "$T_WORK/echo.out" ] && break; sleep 0.1; done
EPK=$(head -1 "$T_WORK/echo.out" | jq -r .pk)
[ ${#EPK} = 64 ] || die "the echo client did not come up: $(cat "$T_WORK/echo.out")"
# The sender's last line is its result (the first is its key).
honest() { pipe --mode send --to "$EPK" --bytes "${1:-262144}" --seconds 60 | tail -1; }

# --- 1. a stream through the relay
out=$(honest 4000000) && echo "$out" | jq -e '.ok' >/dev/null && pass "4 MB through the relay: $out" || fail "4 MB through the relay: $out"
h=$(health 8082)
echo "$h" | jq -e '.streams_opened >= 1 and .data_opener_to_acceptor >= 4000000 and .data_acceptor_to_opener >= 4000000 and .clients >= 1' >/dev/null \
    && pass "/health counts the stream and its bytes" || fail "/health after the transfer: $h"
out=$(pipe --mode send --to "$RPK_r1" --bytes 10 --seconds 10 2>&1 | tail -1) && fail "a stream to a key without a session opened: $out" \
    || { echo "$out" | grep -q "no session" && pass "a stream to a key without a session is refused: $out" || fail "absent key: $out"; }
health 8082 | jq -e '.refusals.open["no-session"] >= 1' >/dev/null && pass "/health counts the no-session refusal" || fail "no no-session refusal counted: $(health 8082)"

# --- 2. stream cap
out=$(ip netns exec $M "$HOSTILE" dmsg-no-read --addr 10.82.0.1:8081 --relay "$RPK_r1" --to "$EPK" --streams 20 --seconds 2)
echo "$out" | jq -e '.streams == 8' >/dev/null && pass "20 OPENs, 8 streams (the cap): $out" || fail "stream cap: $out"
health 8082 | jq -e '.refusals.open.limit >= 12' >/dev/null && pass "/health counts 12 limit refusals" || fail "limit refusals: $(health 8082)"

# --- 3. a client that never reads
rss0=$(health 8082 | jq .rss_kib)
ip netns exec $M "$HOSTILE" dmsg-no-read --addr 10.82.0.1:8081 --relay "$RPK_r1" --to "$EPK" --streams 4 --seconds 15 >"$T_WORK/noread.out" 2>&1 &
NR=$!; T_PIDS+=("$NR")
sleep 5
out=$(honest 1000000) && echo "$out" | jq -e '.ok' >/dev/null && pass "honest pair served while a client does not read: $out" || fail "honest pair during no-read: $out"
rss1=$(health 8082 | jq .rss_kib)
wait $NR || true
log "no-read: $(cat "$T_WORK/noread.out"); relay rss $rss0 -> $rss1 kB"
echo "FIGURES-DMSG-NOREAD rss_before_kb=$rss0 rss_during_kb=$rss1 $(cat "$T_WORK/noread.out")"
[ $((rss1 - rss0)) -le $MAX_ATTACK_RSS_GROWTH_KB ] && pass "relay RSS grew by $((rss1 - rss0)) kB under a non-reading client" \
    || fail "relay RSS grew by $((rss1 - rss0)) kB under a non-reading client"

# --- 4. OPEN flood to absent keys
rss0=$(health 8082 | jq .rss_kib)
ip netns exec $M "$HOSTILE" dmsg-open-flood --addr 10.82.0.1:8081 --relay "$RPK_r1" --seconds 10 >"$T_WORK/flood.out" 2>&1 &
FL=$!; T_PIDS+=("$FL")
sleep 4
out=$(honest 1000000) && echo "$out" | jq -e '.ok' >/dev/null && pass "honest pair served during an OPEN flood: $out" || fail "honest pair during OPEN flood: $out"
rss1=$(health 8082 | jq .rss_kib)
wait $FL || true
h=$(health 8082)
log "open flood: $(cat "$T_WORK/flood.out"); relay rss $rss0 -> $rss1 kB; refusals $(echo "$h" | jq -c .refusals.open)"
echo "FIGURES-DMSG-OPENFLOOD rss_before_kb=$rss0 rss_during_kb=$rss1 $(cat "$T_WORK/flood.out") refusals=$(echo "$h" | jq -c .refusals.open)"
echo "$h" | jq -e '.refusals.open["no-session"] >= 1000' >/dev/null && pass "OPENs to absent keys refused and counted" || fail "open flood refusals: $h"
[ $((rss1 - rss0)) -le $MAX_ATTACK_RSS_GROWTH_KB ] && pass "relay RSS grew by $((rss1 - rss0)) kB under the OPEN flood" \
    || fail "relay RSS grew by $((rss1 - rss0)) kB under the OPEN flood"

# --- 5. unauthenticated connections
out=$(ip netns exec $M "$HOSTILE" half-open --addr 10.82.0.1:8081 --count 2000 --hold 3 --seconds 20)
h=$(health 8082)
log "half-open: $out; connection refusals $(echo "$h" | jq -c .refusals.connection)"
echo "$h" | jq -e '.refusals.connection | length > 0' >/dev/null && pass "half-open sockets beyond the limits closed at accept" || fail "no connection refusals: $h"
out=$(honest 1000000) && echo "$out" | jq -e '.ok' >/dev/null && pass "honest pair served after 2,000 half-open connections" || fail "after half-open: $out"
kill -0 "$PID_r1" && pass "relay still running after the attacks" || fail "relay died"

# --- 6. client cap
relay_start r2 8083 8084 --clients any --max-clients 5
out=$(ip netns exec $C "$HOSTILE" dmsg-clients --addr 10.81.0.1:8083 --relay "$RPK_r2" --count 10 --rate 50 --hold 2)
h=$(health 8084)
echo "$out" | jq -e '.closed_by_relay == 5' >/dev/null && echo "$h" | jq -e '.refusals.clients_full == 5' >/dev/null \
    && pass "10 clients on a relay capped at 5: 5 closed after their handshake ($out)" || fail "client cap: $out / $h"

# --- 7. memory per idle client
relay_start r3 8085 8086 --clients any --max-connections-per-address $((IDLE_CLIENTS + 100))
rss0=$(health 8086 | jq .rss_kib)
# 100 per second: all come from one address, and the relay admits 16 half-open sockets per
# address (StcprAdmission), which a faster start on a loaded machine would exceed.
ip netns exec $C "$HOSTILE" dmsg-clients --addr 10.81.0.1:8085 --relay "$RPK_r3" --count $IDLE_CLIENTS --rate 100 --hold 30 \
    >"$T_WORK/idle.out" 2>&1 &
IC=$!; T_PIDS+=("$IC")
clients=0
# Until 99 % are in, or the start time plus 15 s has passed (the generator then holds them 30 s).
for _ in $(seq 1 $(( (IDLE_CLIENTS / 100 + 15) * 2 ))); do
    clients=$(health 8086 | jq .clients)
    [ "$clients" -ge $((IDLE_CLIENTS * 99 / 100)) ] && break
    sleep 0.5
done
sleep 2
h=$(health 8086); clients=$(echo "$h" | jq .clients); rss1=$(echo "$h" | jq .rss_kib)
wait $IC || true
per=$(( clients > 0 ? (rss1 - rss0) * 1024 / clients : -1 ))
log "idle clients: $(cat "$T_WORK/idle.out"); relay rss $rss0 -> $rss1 kB with $clients clients: $per bytes per client"
echo "FIGURES-DMSG-RSS clients=$clients rss_before_kb=$rss0 rss_after_kb=$rss1 bytes_per_client=$per"
[ "$clients" -ge $((IDLE_CLIENTS * 9 / 10)) ] && pass "$clients idle clients connected" || fail "only $clients of $IDLE_CLIENTS idle clients connected"
[ "$per" -ge 0 ] && [ "$per" -le $((MAX_KB_PER_IDLE_CLIENT * 1024)) ] && pass "$per bytes of RSS per idle client" || fail "$per bytes per idle client"

# --- 8. discovery registration
DISCOVERY=$(dirname "$SKYWIRE_BIN")/skywire-discovery
ip netns exec $R "$DISCOVERY" --http 127.0.0.1:9090 --udp 127.0.0.1:9091 --db "sqlite:$T_WORK/discovery.sqlite" \
    --allow-private-addresses --ttl 6 >>"$T_WORK/discovery.log" 2>&1 &
T_PIDS+=("$!")
for _ in $(seq 1 100); do ip netns exec $R curl -sf http://127.0.0.1:9090/v1/info >/dev/null && break; sleep 0.1; done
relay_start r4 8087 8088 --clients any --discovery http://127.0.0.1:9090 --public-addr 10.81.0.1:8087 --country DE
listed() { ip netns exec $R curl -sf http://127.0.0.1:9090/v1/services/dmsg; }
for _ in $(seq 1 50); do listed | jq -e --arg pk "$RPK_r4" '.services | any(.pk == $pk)' >/dev/null 2>&1 && break; sleep 0.2; done
listed | jq -e --arg pk "$RPK_r4" '.services | any(.pk == $pk and .type == "dmsg" and .country == "DE")' >/dev/null \
    && pass "the relay lists itself as a dmsg service" || fail "dmsg service entry: $(listed)"
entry=$(ip netns exec $R curl -sf "http://127.0.0.1:9090/v1/transports/$RPK_r4")
echo "$entry" | jq -e '.stcpr == ["10.81.0.1:8087"]' >/dev/null && pass "its transport entry carries --public-addr" || fail "relay transport entry: $entry"
e0=$(listed | jq --arg pk "$RPK_r4" '.services[] | select(.pk == $pk) | .expires_ms')
sleep 4
e1=$(listed | jq --arg pk "$RPK_r4" '.services[] | select(.pk == $pk) | .expires_ms')
[ "$e1" -gt "$e0" ] && pass "the relay refreshes its entry (expires $e0 -> $e1)" || fail "no refresh: $e0 -> $e1"

# --- 9. closed by default
relay_start r5 8089 8090
grep -q "every client will be refused" "$T_WORK/r5.log" && pass "a relay without --clients says it refuses everyone" \
    || fail "no startup warning: $(cat "$T_WORK/r5.log")"
pipe5() { ip netns exec $C "$HOSTILE" dmsg-pipe --addr 10.81.0.1:$1 --relay "$2" "${@:3}"; }
out=$(pipe5 8089 "$RPK_r5" --mode send --to "$EPK" --bytes 10 --seconds 10 2>&1 | tail -1) || true
h=$(health 8090)
echo "$out" | grep -q "not on the relay's client list" && pass "a client of a relay without --clients is refused and told why: $out" \
    || fail "unlisted client on r5: $out"
echo "$h" | jq -e '.clients == 0 and .refusals.refused_keys >= 1 and .client_list == "0 listed keys"' >/dev/null \
    && pass "/health: no session, refused_keys counted" || fail "r5 /health: $h"
LISTED_SEED=21 OTHER_SEED=22
listed_pk=$(pipe5 8089 "$RPK_r5" --mode echo --seed $LISTED_SEED --seconds 2 2>/dev/null | head -1 | jq -r .pk) || true
other_pk=$(pipe5 8089 "$RPK_r5" --mode echo --seed $OTHER_SEED --seconds 2 2>/dev/null | head -1 | jq -r .pk) || true
[ ${#listed_pk} = 64 ] && [ ${#other_pk} = 64 ] || die "seeded keys not printed: $listed_pk $other_pk"
printf '# test clients\n%s\n' "$listed_pk" >"$T_WORK/clients.txt"
relay_start r6 8091 8092 --clients-file "$T_WORK/clients.txt"
pipe5 8091 "$RPK_r6" --mode echo --seed $LISTED_SEED --seconds 120 >"$T_WORK/listed.out" 2>>"$T_WORK/listed.log" &
LISTED=$!; T_PIDS+=("$LISTED")
for _ in $(seq 1 50); do [ "$(health 8092 | jq .clients)" = 1 ] && break; sleep 0.1; done
out=$(pipe5 8091 "$RPK_r6" --mode send --seed $OTHER_SEED --to "$listed_pk" --bytes 100000 --seconds 10 2>&1 | tail -1) || true
h=$(health 8092)
echo "$out" | grep -q "not on the relay's client list" && echo "$h" | jq -e '.clients == 1 and .refusals.refused_keys == 1' >/dev/null \
    && pass "an unlisted key is refused and its session never appears (clients stays 1): $out" || fail "unlisted on r6: $out / $h"
printf '%s\n%s\n' "$listed_pk" "$other_pk" >"$T_WORK/clients.txt"
kill -HUP "$PID_r6"
for _ in $(seq 1 50); do grep -q "client list re-read: 2 listed keys" "$T_WORK/r6.log" && break; sleep 0.1; done
out=$(pipe5 8091 "$RPK_r6" --mode send --seed $OTHER_SEED --to "$listed_pk" --bytes 100000 --seconds 20 2>&1 | tail -1) || true
echo "$out" | jq -e '.ok' >/dev/null && pass "a listed key (added, SIGHUP) reaches another listed key: $out" || fail "listed pair on r6: $out"
printf '%s\n' "$other_pk" >"$T_WORK/clients.txt"
kill -HUP "$PID_r6"
for _ in $(seq 1 50); do [ "$(health 8092 | jq .clients)" = 0 ] && break; sleep 0.1; done
wait "$LISTED" 2>/dev/null || true
grep -q "not on the relay's client list" "$T_WORK/listed.out" && [ "$(health 8092 | jq .clients)" = 0 ] \
    && pass "a key removed from the file (SIGHUP) is cut off and told why" || fail "removed key: $(cat "$T_WORK/listed.out") / $(health 8092)"
kill -0 "$PID_r6" && pass "SIGHUP does not stop the relay" || fail "r6 exited on SIGHUP"

# --- 10. SIGTERM deletes the discovery entries
kill -TERM "$PID_r4"
for _ in $(seq 1 50); do kill -0 "$PID_r4" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID_r4" 2>/dev/null && fail "r4 still running 5 s after SIGTERM" || pass "r4 exits on SIGTERM"
code=$(ip netns exec $R curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:9090/v1/transports/$RPK_r4")
[ "$code" = 404 ] && pass "SIGTERM deleted the relay's transport entry" || fail "transport entry after SIGTERM: HTTP $code"
listed | jq -e --arg pk "$RPK_r4" '.services | any(.pk == $pk) | not' >/dev/null \
    && pass "SIGTERM deleted the relay's dmsg service entry" || fail "service entry after SIGTERM: $(listed)"
grep -q "discovery: entries deleted" "$T_WORK/r4.log" && pass "r4 logs the deletion" || fail "r4 log: $(tail -3 "$T_WORK/r4.log")"
finish
