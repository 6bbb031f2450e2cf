#!/usr/bin/env bash
# SkyNet port forwarding between two visors (docs/skynet.md): A (client) forwards local ports to
# ports B (server) exposes: B's loopback HTTP server, and a raw TCP echo on a "LAN" host behind B
# (198.51.100.2). Checksums, 200 concurrent connections with half-close, refusals (a key not on
# the list, a closed target port), the resolving SOCKS5 proxy, and `config check` of the app's args.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

A=skwtNA$$ B=skwtNB$$ L=skwtNL$$
netns_add $A; netns_add $B; netns_add $L
veth_pair $A skna0 10.79.9.1/24 $B sknb0 10.79.9.2/24
veth_pair $B sknb1 198.51.100.1/24 $L sknl0 198.51.100.2/24

# B's loopback-only web server (a random 5 MB file and a small one).
mkdir -p "$T_WORK/www"
head -c 5000000 /dev/urandom >"$T_WORK/www/big.bin"
echo hello-skynet >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
ip netns exec $B python3 -c '
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
Server(("127.0.0.1", 8000), functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])).serve_forever()
' "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
# The LAN host's TCP echo: echoes until the client's FIN, then half-closes its side.
ip netns exec $L python3 -c '
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("198.51.100.2", 7000)); srv.listen(1024)
def serve(c):
    try:
        while True:
            d = c.recv(65536)
            if not d: break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
' >"$T_WORK/echo.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do
    ip netns exec $B curl -fsS -o /dev/null http://127.0.0.1:8000/small.txt 2>/dev/null \
        && ip netns exec $B python3 -c 'import socket; socket.create_connection(("198.51.100.2", 7000), 1).close()' 2>/dev/null && break
    [ "$i" = 100 ] && die "test servers did not start: $(cat "$T_WORK/http.log" "$T_WORK/echo.log")"
    sleep 0.1
done

PKA=$(visor_config a)
PKB=$(visor_config b)
jq --arg b "$PKB" '.transport.peers[$b] = {"stcpr":"10.79.9.2:7777","sudph":"10.79.9.2:7778"}' \
    "$T_WORK/a.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/a.json"
visor_start a $A
visor_start b $B

# ---- server side: closed by default ------------------------------------------------------------
out=$(cli b skynet srv start --port 8080 --target 127.0.0.1:8000 2>&1) \
    && grep -q "every key is refused" <<<"$out" && pass "srv start without --wl says every key is refused" || fail "srv start without --wl: $out"
st=$(cli b skynet srv status --json)
[ "$(jq -r '.[0].access' <<<"$st")" = closed ] && pass "srv status: access closed" || fail "srv status: $st"
expect_ok "srv stop --port" cli b skynet srv stop --port 8080
expect_fail "srv stop of a port not exposed" "no exposed port" cli b skynet srv stop --port 8080
expect_ok "expose the web server to A" cli b skynet srv start --port 8080 --name web --target 127.0.0.1:8000 --wl "$PKA"
expect_ok "expose the LAN echo to A" cli b skynet srv start --port 7000 --name echo --target 198.51.100.2:7000 --wl "$PKA"
expect_ok "expose a closed port to A" cli b skynet srv start --port 9999 --name closed --target 127.0.0.1:1 --wl "$PKA"
expect_fail "a second forward on the same port" "already exposed" cli b skynet srv start --port 8080 --wl any
set +e; out=$(cli b skynet srv start --port 8088 --wl "nokey,$PKA" 2>&1); rc=$?; set -e
[ "$rc" = 2 ] && grep -q '"nokey" is not a visor public key' <<<"$out" && pass "a malformed --wl key is refused (exit 2), nothing exposed" \
    || fail "malformed --wl: rc=$rc $out"
set +e; out=$(cli b skynet srv start --port 8088 --wl "any,$PKA" 2>&1); rc=$?; set -e
[ "$rc" = 2 ] && grep -q "cannot be combined" <<<"$out" && pass "--wl any mixed with keys is refused (exit 2)" || fail "any with keys: rc=$rc $out"
st=$(cli b skynet srv status --json)
[ "$(jq -r '[.[].name] | sort | join(",")' <<<"$st")" = closed,echo,web ] && [ "$(jq -r '.[] | select(.name=="web") | .whitelist[0]' <<<"$st")" = "$PKA" ] \
    && pass "srv status lists the three forwards with A whitelisted" || fail "srv status: $st"

# ---- client side -----------------------------------------------------------------------------------
expect_ok "skynet start web" cli a skynet start --pk "$PKB" --remote 8080 --local 9000
expect_ok "skynet start echo" cli a skynet start --pk "$PKB" --remote 7000 --local 9001 --name echo
expect_ok "skynet start closed" cli a skynet start --pk "$PKB" --remote 9999 --local 9002 --name closed
expect_ok "skynet start unexposed" cli a skynet start --pk "$PKB" --remote 4242 --local 9003 --name unexposed
st=$(cli a skynet status --json)
[ "$(jq -r '.[] | select(.name=="fwd-9000") | .local_addr' <<<"$st")" = 127.0.0.1:9000 ] && pass "listens on 127.0.0.1 by default" || fail "status: $st"
ip netns exec $A ss -ltnH | grep -q '127.0.0.1:9000' && ! ip netns exec $A ss -ltnH | grep -q '0.0.0.0:9000' \
    && pass "no listener on other addresses" || fail "listeners: $(ip netns exec $A ss -ltnH)"

got=$( (ip netns exec $A curl -fsS --max-time 120 http://127.0.0.1:9000/big.bin || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && pass "5 MB over SkyNet with a matching checksum" || fail "checksum $got != $want"

# 200 concurrent echo connections through A:9001 -> B -> 198.51.100.2:7000, 64 KiB random each,
# each half-closes its sending side and reads the echo to EOF (bounded: 120 s).
ok=$(ip netns exec $A timeout 150 python3 - <<'PY'
import hashlib, os, socket, sys, threading
N = 200
done, errors, lock = [], {}, threading.Lock()
def one(i):
    phase = "connect"
    try:
        s = socket.create_connection(("127.0.0.1", 9001), timeout=60)
        data = os.urandom(65536)
        phase = "send"
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)   # half-close: the echo still answers, then closes its side
        phase = "recv"
        got = b""
        while True:
            c = s.recv(65536)
            if not c: break
            got += c
        s.close()
        if hashlib.sha256(got).digest() == hashlib.sha256(data).digest():
            with lock: done.append(i)
        else:
            with lock: errors["mismatch %d/%d bytes" % (len(got), len(data))] = errors.get("mismatch", 0) + 1
    except Exception as e:
        k = phase + ": " + repr(e)[:60]
        with lock: errors[k] = errors.get(k, 0) + 1
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join(120)
print(len(done))
for e, n in errors.items(): print(f"  {n} x {e}", file=sys.stderr)
PY
)
[ "$ok" = 200 ] && pass "200 concurrent echo connections with half-close, checksums match" \
    || fail "only $ok/200 echo connections completed; a: $(cli a skynet status --json | jq -c '.[] | select(.name=="echo")'); b: $(cli b skynet srv status --json | jq -c '.[] | select(.name=="echo")')"
for _ in $(seq 50); do
    sa=$(cli a tp ls --json | jq '[.[].streams] | add // 0'); sb=$(cli b tp ls --json | jq '[.[].streams] | add // 0')
    [ "$sa" = 0 ] && [ "$sb" = 0 ] && break
    sleep 0.2
done
[ "$sa" = 0 ] && [ "$sb" = 0 ] && pass "no mux stream left open after the connections ended" || fail "streams still open: a $sa, b $sb"

# prompt_close PORT NS: connects, sends a line, prints the seconds until the connection closed (or "open").
prompt_close() {
    ip netns exec "$2" python3 - "$1" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
t = time.monotonic()
try:
    s.sendall(b"hello\n")
    print("%.2f" % (time.monotonic() - t) if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("%.2f" % (time.monotonic() - t))
except socket.timeout:
    print("open")
PY
}
t=$(prompt_close 9002 $A)
[ "$t" != open ] && [ "$t" != data ] && awk "BEGIN{exit !($t < 5)}" && pass "a closed remote port closes the local connection promptly (${t} s)" \
    || fail "closed remote port: $t"
err=$(cli a skynet status --json | jq -r '.[] | select(.name=="closed") | .last_error')
grep -q "connection refused by the target" <<<"$err" && pass "skynet status says why: $err" || fail "last_error: $err"
t=$(prompt_close 9003 $A)
err=$(cli a skynet status --json | jq -r '.[] | select(.name=="unexposed") | .last_error')
[ "$t" != open ] && [ "$t" != data ] && grep -q "port not exposed" <<<"$err" && pass "a port not exposed: closed in ${t} s, status: $err" \
    || fail "unexposed: $t, $err"
expect_fail "skynet stop of an unknown forward" "no forward named" cli a skynet stop --name nosuch
st=$(cli a skynet status)
grep -q "connection refused by the target" <<<"$st" && pass "skynet status table shows the last error" || fail "status table: $st"

# ---- a key not on the list ---------------------------------------------------------------------
OTHER=$("$SKYWIRE_BIN" config gen -o "$T_WORK/other.json")
jq --arg sock "$T_WORK/other.sock" --arg state "$T_WORK/other-state" --arg b "$PKB" \
    '.cli_addr=$sock | .state_dir=$state | .log_level="debug" | .transport.stcpr_port=7790 | .transport.sudph_port=7791 | .transport.peers[$b]={"stcpr":"10.79.9.2:7777"}' \
    "$T_WORK/other.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/other.json"
visor_start other $A
seen=$(grep -c 'GET /small.txt' "$T_WORK/http.log" || true)
expect_ok "stranger: skynet start" cli other skynet start --pk "$PKB" --remote 8080 --local 9100
t=$(prompt_close 9100 $A)
err=$(cli other skynet status --json | jq -r '.[0].last_error')
[ "$t" != open ] && [ "$t" != data ] && grep -q "key not whitelisted" <<<"$err" && pass "a key not on the list is refused (closed in ${t} s: $err)" \
    || fail "stranger: $t, $err"
ip netns exec $A curl -sS --max-time 10 http://127.0.0.1:9100/small.txt >/dev/null 2>&1 && fail "stranger fetched the page" || pass "stranger cannot fetch the page"
grep "refused stream from a key no forward admits" "$T_WORK/b.log" | grep -q "$OTHER" && pass "B logs the refused key" || fail "no refusal in B's log"
[ "$(grep -c 'GET /small.txt' "$T_WORK/http.log" || true)" = "$seen" ] && pass "the web server saw no request from the stranger" \
    || fail "the web server saw the stranger's request"

# ---- hostile: streams with an unfinished request (skywire-hostile skynet-idle) ----------------------
HOSTILE=$(dirname "$SKYWIRE_BIN")/skywire-hostile
[ -x "$HOSTILE" ] || die "build skywire-hostile first (swift build)"
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID_b/status"; }
attacker_streams() {  # streams B holds on transports from keys other than A and the stranger visor
    cli b tp ls --json | jq --arg a "$PKA" --arg o "$OTHER" '[.[] | select(.remote_pk != $a and .remote_pk != $o) | .streams] | max // 0'
}
rss0=$(rss)
# 1. A key no forward admits: each stream is reset as it arrives, and A is still served.
ip netns exec $A "$HOSTILE" skynet-idle --addr 10.79.9.2:7777 --pk "$PKB" --rcvbuf 262144 --streams 300 --hold 6 --seconds 20 \
    >"$T_WORK/idle1.json" 2>"$T_WORK/idle1.log" &
HP=$!; T_PIDS+=("$HP")
sleep 3
held=$(attacker_streams)
got=$(ip netns exec $A curl -fsS --max-time 10 http://127.0.0.1:9000/small.txt 2>&1)
wait "$HP" || true
log "skynet-idle as a stranger: $(cat "$T_WORK/idle1.json"); B holds $held of its streams after 3 s; B RSS $rss0 -> $(rss) KiB"
[ "$(jq -r .streams "$T_WORK/idle1.json" 2>/dev/null)" = 300 ] || fail "skynet-idle did not open its streams: $(cat "$T_WORK/idle1.json" "$T_WORK/idle1.log")"
[ "$held" = 0 ] && pass "a stranger's 300 unfinished skynet streams are reset at once (0 held)" || fail "B holds $held of a stranger's streams"
[ "$got" = hello-skynet ] && pass "A is served during the stranger's flood" || fail "A during the flood: $got"
# 2. A forward open to every key: unfinished requests are held at most the request timeout (10 s).
expect_ok "expose a port to every key" cli b skynet srv start --port 8099 --name open --target 127.0.0.1:8000 --wl any
ip netns exec $A "$HOSTILE" skynet-idle --addr 10.79.9.2:7777 --pk "$PKB" --rcvbuf 262144 --streams 300 --hold 18 --seconds 25 \
    >"$T_WORK/idle2.json" 2>"$T_WORK/idle2.log" &
HP=$!; T_PIDS+=("$HP")
sleep 3
held_early=$(attacker_streams)
sleep 12
held_late=$(attacker_streams)
rss1=$(rss)
wait "$HP" || true
log "skynet-idle against --wl any: $(cat "$T_WORK/idle2.json"); B holds $held_early streams after 3 s, $held_late after 15 s; B RSS $rss1 KiB"
[ "$held_early" -gt 0 ] && [ "$held_early" -le 512 ] && [ "$held_late" = 0 ] \
    && pass "unfinished requests of an admitted key are held at most the request timeout ($held_early, then 0)" \
    || fail "admitted key's unfinished requests: $held_early after 3 s, $held_late after 15 s"
expect_ok "stop the open forward" cli b skynet srv stop --name open

# ---- resolver ----------------------------------------------------------------------------------------
expect_ok "resolver up" cli a resolver up
[ "$(cli a resolver status --json | jq -r .listen_addr)" = 127.0.0.1:4446 ] && pass "resolver on 127.0.0.1:4446" || fail "resolver status: $(cli a resolver status --json)"
got=$(ip netns exec $A curl -fsS --max-time 30 --socks5-hostname 127.0.0.1:4446 "http://$PKB.skynet:8080/small.txt" 2>&1)
[ "$got" = hello-skynet ] && pass "curl through the resolver: http://<pk>.skynet:8080/" || fail "resolver fetch: $got"
got=$( (ip netns exec $A curl -fsS --max-time 120 --socks5-hostname 127.0.0.1:4446 "http://$PKB.skynet:8080/big.bin" || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && pass "5 MB through the resolver with a matching checksum" || fail "resolver checksum $got != $want"
# socks_reply DESC URL CODE: the resolver refuses URL with SOCKS5 reply CODE.
socks_reply() {
    local out
    if out=$(ip netns exec $A curl -sS --max-time 15 --socks5-hostname 127.0.0.1:4446 "$2" 2>&1); then
        fail "$1: fetched: $(head -c 80 <<<"$out")"
    elif grep -qE "SOCKS5.*\($3\)" <<<"$out"; then
        pass "$1: reply $3"
    else
        fail "$1: not reply $3: $out"
    fi
}
socks_reply "a malformed .skynet name" "http://abc.skynet:8080/" 4
socks_reply "a .dmsg name (no relay yet)" "http://$PKB.dmsg:80/" 4
socks_reply "another name without --upstream" "http://example.org/" 4
socks_reply "an IP address without --upstream" "http://192.0.2.1/" 8
socks_reply "a port B does not expose" "http://$PKB.skynet:4242/" 5
socks_reply "B's closed target port" "http://$PKB.skynet:9999/" 5
[ "$(cli a resolver status --json | jq -r .refused)" -ge 6 ] && pass "resolver status counts refusals" || fail "resolver status: $(cli a resolver status --json)"
# skywire.skynet is the visor itself (B's own exposed port, from B).
expect_ok "resolver up on B" cli b resolver up
got=$(ip netns exec $B curl -fsS --max-time 30 --socks5-hostname 127.0.0.1:4446 "http://skywire.skynet:8080/small.txt" 2>&1)
[ "$got" = hello-skynet ] && pass "skywire.skynet:8080 reaches this visor's exposed port" || fail "skywire.skynet: $got"
# --upstream: every other name goes to another SOCKS5 server (A's proxy client to B's skysocks).
visor_stop b
jq --arg a "$PKA" '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a])' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start b $B
expect_ok "B's forwards again" cli b skynet srv start --port 8080 --name web --target 127.0.0.1:8000 --wl "$PKA"
expect_ok "proxy start" cli a proxy start -k "$PKB"
expect_ok "resolver down" cli a resolver down
expect_fail "resolver down twice" "not up" cli a resolver down
expect_ok "resolver up --upstream" cli a resolver up --upstream 127.0.0.1:1080
ip netns exec $L python3 -m http.server --bind 198.51.100.2 8090 --directory "$T_WORK/www" >"$T_WORK/http-lan.log" 2>&1 &
T_PIDS+=("$!")
got=""
for _ in $(seq 1 50); do
    got=$(ip netns exec $A curl -fsS --max-time 15 --socks5-hostname 127.0.0.1:4446 http://198.51.100.2:8090/small.txt 2>"$T_WORK/up.err") && break
    sleep 0.2
done
[ "$got" = hello-skynet ] && pass "an IP address goes to the upstream SOCKS5 server" || fail "upstream: $got $(cat "$T_WORK/up.err")"
got=""
for _ in $(seq 1 50); do
    got=$(ip netns exec $A curl -fsS --max-time 30 --socks5-hostname 127.0.0.1:4446 "http://$PKB.skynet:8080/small.txt" 2>"$T_WORK/up.err") && break
    sleep 0.2
done
[ "$got" = hello-skynet ] && pass "with --upstream, <pk>.skynet still goes over SkyNet" || fail "skynet with upstream: $got $(cat "$T_WORK/up.err")"
socks_reply "with --upstream, a malformed .skynet name still fails closed" "http://abc.skynet:8080/" 4

# ---- config: app entries, config check ------------------------------------------------------------
cfg=$T_WORK/check.json
jq --arg a "$PKA" '.launcher.apps += [{"name":"skynet","args":["srv","--port","8080","--wl",$a,"client","--pk",$a,"--remote","80","--local","9000"],"auto_start":true,"port":57}]' \
    "$T_WORK/a.json" >"$cfg.t" && install -m600 "$cfg.t" "$cfg"
expect_ok "config check accepts skynet args" "$SKYWIRE_BIN" config check -c "$cfg"
jq '(.launcher.apps[] | select(.name=="skynet") | .args) = ["srv","--port","8080"]' "$cfg" >"$cfg.t" && install -m600 "$cfg.t" "$cfg"
out=$("$SKYWIRE_BIN" config check -c "$cfg" 2>&1) && grep -q "skynet: whitelist empty: refuses every key" <<<"$out" \
    && pass "config check warns that skynet refuses every key" || fail "config check: $out"
jq '(.launcher.apps[] | select(.name=="skynet") | .args) = ["srv","--port","0"]' "$cfg" >"$cfg.t" && install -m600 "$cfg.t" "$cfg"
set +e; out=$("$SKYWIRE_BIN" config check -c "$cfg" 2>&1); rc=$?; set -e
[ "$rc" = 2 ] && grep -q 'launcher.apps\[[0-9]*\].args' <<<"$out" && pass "config check refuses bad skynet args with their path" || fail "config check rc=$rc: $out"
# An auto-started skynet entry from the config: exposes its forward at boot.
visor_stop b
jq --arg a "$PKA" '.launcher.apps += [{"name":"skynet","args":["srv","--port","8081","--name","boot","--target","127.0.0.1:8000","--wl",$a],"auto_start":true,"port":57}]' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start b $B
[ "$(cli b skynet srv status --json | jq -r '.[0].name')" = boot ] && pass "config forward exposed at start" || fail "boot forward: $(cli b skynet srv status --json)"
row=$(cli b apps ls --json | jq -c '.[] | select(.name=="skynet")')
[ "$(jq -r .status <<<"$row")" = running ] && [ "$(jq -r .access <<<"$row")" = listed ] && pass "apps ls: skynet running, access listed" || fail "apps ls: $row"
got=""
for _ in $(seq 1 50); do
    got=$(ip netns exec $A curl -fsS --max-time 15 --socks5-hostname 127.0.0.1:4446 "http://$PKB.skynet:8081/small.txt" 2>/dev/null) && break
    sleep 0.2
done
[ "$got" = hello-skynet ] && pass "the config forward serves" || fail "config forward: $got"

# ---- over sudph: streams arrive on NIO loops and are presented on the datapath loops --------------
expect_ok "tp rm (stcpr)" cli a tp rm "$PKB"
expect_ok "tp add sudph" cli a tp add "$PKB" -t sudph --addr 10.79.9.2:7778
types=$(cli a tp ls --json | jq -r --arg b "$PKB" '[.[] | select(.remote_pk==$b and .state=="up") | .type] | unique | join(",")')
expect_ok "skynet start (over sudph)" cli a skynet start --pk "$PKB" --remote 8081 --local 9005 --name boot
got=$( (ip netns exec $A curl -fsS --max-time 120 http://127.0.0.1:9005/big.bin || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && [ "$types" = sudph ] && pass "5 MB over a sudph transport with a matching checksum" \
    || fail "sudph: transports $types, checksum $got != $want"

finish
