#!/usr/bin/env bash
# SOCKS5 through two visors: client namespace (skysocks-client) -> exit namespace (skysocks)
# -> an "internet" host (203.0.113.2) that only the exit can reach.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

A=skwtSA$$ B=skwtSB$$ N=skwtSN$$
netns_add $A; netns_add $B; netns_add $N
veth_pair $A skwsa0 10.79.0.1/24 $B skwsb0 10.79.0.2/24
veth_pair $B skwsb1 203.0.113.1/24 $N skwsn0 203.0.113.2/24
ip -n $N route add default via 203.0.113.1

# The internet host serves a random 20 MB file and a small one.
mkdir -p "$T_WORK/www"
head -c 20000000 /dev/urandom >"$T_WORK/www/big.bin"
echo hello >"$T_WORK/www/small.txt"
want=$(sha256sum <"$T_WORK/www/big.bin" | cut -d' ' -f1)
# python's http.server listens with a backlog of 5, which stalls hundreds of concurrent connects
# in the kernel's accept queue (SYN-ACK retransmits); this one listens with 1024.
ip netns exec $N python3 -c '
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
Server(("203.0.113.2", 8080), handler).serve_forever()
' "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
for i in $(seq 1 100); do ip netns exec $B curl -fsS -o /dev/null http://203.0.113.2:8080/small.txt 2>/dev/null && break; [ "$i" = 100 ] && die "the test HTTP server did not start: $(cat "$T_WORK/http.log")"; sleep 0.1; done

PKA=$(visor_config a)
PKB=$(visor_config b)
OTHER=$("$SKYWIRE_BIN" config gen -o "$T_WORK/other.json")
# B (the exit) runs skysocks for A only; A knows where B listens.
jq --arg a "$PKA" '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$a])' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
jq --arg b "$PKB" '.transport.peers[$b] = {"stcpr":"10.79.0.2:7777","sudph":"10.79.0.2:7778"}' \
    "$T_WORK/a.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/a.json"
visor_start a $A
visor_start b $B

expect_ok "proxy start" cli a proxy start -k "$PKB"
st=$(cli a proxy status --json)
[ "$(jq -r .status <<<"$st")" = running ] && pass "proxy status: running" || fail "proxy status: $st"
[ "$(jq -r .info.listen_addr <<<"$st")" = 127.0.0.1:1080 ] && pass "listens on 127.0.0.1:1080 only" || fail "listen: $st"

got=$( (ip netns exec $A curl -fsS --max-time 120 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2:8080/big.bin || true) | sha256sum | cut -d" " -f1)
[ "$got" = "$want" ] && pass "20 MB through SOCKS5 with a matching checksum" || fail "checksum $got != $want"
grep -q '"GET /big.bin' "$T_WORK/http.log" && grep -q '^203.0.113.1 ' "$T_WORK/http.log" \
    && pass "the internet host saw the exit's address" || fail "http log: $(tail -2 "$T_WORK/http.log")"
ip netns exec $A curl -fsS --max-time 3 http://203.0.113.2:8080/small.txt >/dev/null 2>&1 \
    && fail "the client reaches the internet host directly (test topology broken)" || pass "no direct path from the client"

# 500 concurrent connections (bounded: 120 s).
ok=$(ip netns exec $A python3 - <<'PY'
import socket, struct, threading
N = 500
done = []
errors = {}
lock = threading.Lock()
def one(i):
    phase = "tcp connect"
    try:
        s = socket.create_connection(("127.0.0.1", 1080), timeout=60)
        phase = "greeting"
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        phase = "connect"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("203.0.113.2") + struct.pack(">H", 8080))
        rep = s.recv(10)
        assert rep[:2] == b"\x05\x00", rep
        phase = "body"
        s.sendall(b"GET /small.txt HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            c = s.recv(4096)
            if not c: break
            data += c
        if data.endswith(b"hello\n"):
            with lock: done.append(i)
    except Exception as e:
        with lock: errors[phase + ": " + repr(e)[:60]] = errors.get(phase + ": " + repr(e)[:60], 0) + 1
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join(120)
print(len(done))
import sys
for e, n in errors.items(): print(f"  {n} x {e}", file=sys.stderr)
PY
)
[ "$ok" = 500 ] && pass "500 concurrent SOCKS5 connections completed" \
    || fail "only $ok/500 concurrent connections completed; proxy: $(cli a proxy status --json | jq -c .info); exit: $(cli b apps ls --json | jq -c '.[] | select(.name=="skysocks") | .info')"
# Every proxied connection ended: no stream may stay open on either visor (bounded wait: 10 s).
for _ in $(seq 50); do
    sa=$(cli a tp ls --json | jq '[.[].streams] | add // 0'); sb=$(cli b tp ls --json | jq '[.[].streams] | add // 0')
    [ "$sa" = 0 ] && [ "$sb" = 0 ] && break
    sleep 0.2
done
[ "$sa" = 0 ] && [ "$sb" = 0 ] && pass "no mux stream left open after the sessions ended" \
    || fail "streams still open: client $sa, exit $sb; proxy: $(cli a proxy status --json | jq -c .info)"

# A malformed greeting gets an error reply and a closed connection; the proxy keeps serving.
rep=$(ip netns exec $A python3 -c '
import socket; s = socket.create_connection(("127.0.0.1", 1080), timeout=10)
s.sendall(b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"); print(s.recv(16).hex(), s.recv(16).hex())')
[ "$rep" != "" ] && pass "malformed greeting answered and closed ($rep)" || fail "malformed greeting: no answer"

# A visor outside the whitelist is refused.
jq --arg sock "$T_WORK/other.sock" --arg b "$PKB" '.cli_addr=$sock | .state_dir="/tmp/skwt-other" | .transport.stcpr_port=7790 | .transport.sudph_port=7791 | .transport.peers[$b]={"stcpr":"10.79.0.2:7777"}' \
    "$T_WORK/other.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/other.json"
visor_start other $A
expect_ok "non-whitelisted visor: proxy start" cli other proxy start -k "$PKB" --addr 127.0.0.1:1081
out=$(ip netns exec $A curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1081 http://203.0.113.2:8080/small.txt 2>&1) \
    && fail "non-whitelisted visor got through: $out" \
    || { grep -qE "SOCKS5 connection to 203.0.113.2. \(2\)" <<<"$out" && pass "non-whitelisted visor refused with reply 0x02 not allowed" || fail "unexpected error: $out"; }

# ---- access (issue 16): closed by default ------------------------------------------------------
# skysocks started with no whitelist, or an empty one, refuses every visor (reply 0x02) and says
# so; `--whitelist any` admits the visor no list names. `apps.start` with `args` replaces the
# configured arguments for one run (docs/cli.md, control socket).
ctl() {  # ctl NAME METHOD PARAMS_JSON: one control request; prints the response line
    python3 - "$T_WORK/$1.sock" "$2" "$3" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.sendall((json.dumps({"id": 1, "method": sys.argv[2], "params": json.loads(sys.argv[3])}) + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    c = s.recv(65536)
    if not c: break
    buf += c
print(buf.decode().strip())
PY
}
socks_restart() {  # socks_restart ARGS_JSON: restarts B's skysocks with these arguments
    ctl b apps.stop '{"name":"skysocks"}' >/dev/null
    r=$(ctl b apps.start "{\"name\":\"skysocks\",\"args\":$1}")
    jq -e 'has("result")' <<<"$r" >/dev/null || fail "access: apps.start skysocks $1: $r"
}
other_fetch() { ip netns exec $A curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1081 http://203.0.113.2:8080/small.txt 2>&1; }
for args in '[]' '["--whitelist",""]'; do
    socks_restart "$args"
    st=$(cli b apps ls --json | jq -c '.[] | select(.name=="skysocks")')
    [ "$(jq -r .access <<<"$st")" = closed ] && grep -q "refuses every key (whitelist empty)" <<<"$(jq -r .detail <<<"$st")" \
        && pass "access: skysocks $args: apps ls says it refuses every key" || fail "access: skysocks $args: apps ls: $st"
    out=$(other_fetch) && fail "access: skysocks $args let a stranger through: $out" \
        || { grep -qE "SOCKS5 connection to 203.0.113.2. \(2\)" <<<"$out" && pass "access: skysocks $args refuses a stranger with reply 0x02" \
             || fail "access: skysocks $args: unexpected error: $out"; }
done
grep -q "skysocks: whitelist empty: refuses every key; use --whitelist PK,... or --whitelist any" "$T_WORK/b.log" \
    && pass "access: the exit's log says skysocks refuses every key" || fail "access: no refusal notice in the exit's log"
ctl b apps.stop '{"name":"skysocks"}' >/dev/null
r=$(ctl b apps.start '{"name":"skysocks","args":["--whitelist","any,'"$PKA"'"]}')
jq -r '.error.message // empty' <<<"$r" | grep -q "cannot be combined with keys" \
    && pass "access: --whitelist any mixed with a key is refused" || fail "access: any mixed with a key: $r"
socks_restart '["--whitelist","any"]'
[ "$(cli b apps ls --json | jq -r '.[] | select(.name=="skysocks") | .access')" = open ] \
    && pass "access: apps ls --json: skysocks access open" || fail "access: apps ls: $(cli b apps ls --json)"
grep -q "skysocks: whitelist any: open to every visor key" "$T_WORK/b.log" \
    && pass "access: the exit's log says skysocks is open to every key" || fail "access: no open notice in the exit's log"
out=$(other_fetch) && [ "$out" = hello ] && pass "access: skysocks --whitelist any admits a stranger" \
    || fail "access: --whitelist any: $out"
ctl b apps.stop '{"name":"skysocks"}' >/dev/null
r=$(ctl b apps.start '{"name":"skysocks"}')
jq -e 'has("result")' <<<"$r" >/dev/null && pass "access: skysocks back on its configured whitelist" || fail "access: restart skysocks: $r"
# ---- end access ---------------------------------------------------------------------------------

# Kill the exit mid-transfer: the application gets a clean error; the proxy recovers after a restart.
# 1 MB/s: after 2 s curl has read ~2 MB. On top of that the client side can hold curl's receive
# buffer, the client visor's send buffer and one mux window. Receive-buffer autotuning follows
# net.ipv4.tcp_rmem, whose maximum a new namespace copies from the host (32 MB on some hosts: then
# the whole 20 MB file can be buffered before the kill, and curl succeeds); capped at 4 MB here,
# what can be held stays well below the file (curl then received 10.9-11.1 MB of the 20 MB in
# three runs), so the kill always lands mid-transfer.
ip netns exec $A sysctl -qw net.ipv4.tcp_rmem="4096 131072 4194304"
ip netns exec $A curl -sS --max-time 60 --limit-rate 1M --socks5-hostname 127.0.0.1:1080 \
    -o /dev/null http://203.0.113.2:8080/big.bin >"$T_WORK/curl-kill.log" 2>&1 &
cpid=$!
sleep 2
kill -9 "$PID_b"
wait "$cpid" && fail "download completed despite the exit being killed: $(tr -d '\n' <"$T_WORK/curl-kill.log" | cut -c1-80)" \
    || pass "application saw an error when the exit died: $(tr -d '\n' <"$T_WORK/curl-kill.log" | cut -c1-80)"
visor_start b $B
for _ in $(seq 1 60); do
    if got=$(ip netns exec $A curl -fsS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2:8080/small.txt 2>"$T_WORK/recover.err") \
        && [ "$got" = hello ]; then break; fi
    sleep 1
done
[ "${got:-}" = hello ] && pass "the proxy recovered after the exit came back" \
    || fail "no recovery after the exit restarted: $(cat "$T_WORK/recover.err"); tp: $(cli a tp ls --json | jq -c '[.[] | {state, last_error}]')"

# ---- socksdest: skysocks --secure, the exit's destination filter (issue 16) -------------------------
# Default --secure: the exit refuses its own loopback, its LAN, link-local/metadata addresses, names
# resolving to loopback and its own addresses (also one added after start) with SOCKS5 reply 0x02,
# and still reaches the documentation-range "internet" host; --secure=false reaches the loopback server.
L=skwtSL$$
netns_add $L
veth_pair $B skwsb2 192.168.77.1/24 $L skwsl0 192.168.77.2/24
ip -n $B addr add 169.254.0.1/16 dev skwsb2
ip -n $L addr add 169.254.169.254/16 dev skwsl0
mkdir -p "$T_WORK/exit-www" "$T_WORK/lan-www"
echo "exit-loopback-secret" >"$T_WORK/exit-www/secret.txt"
echo "lan-secret" >"$T_WORK/lan-www/secret.txt"
# The exit's loopback-only service, a service on all of the exit's addresses, and a LAN host that
# also answers as the metadata address 169.254.169.254.
ip netns exec $B python3 -m http.server --bind 127.0.0.1 8081 --directory "$T_WORK/exit-www" >"$T_WORK/http-exit-lo.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $B python3 -m http.server --bind 0.0.0.0 8082 --directory "$T_WORK/exit-www" >"$T_WORK/http-exit-any.log" 2>&1 &
T_PIDS+=("$!")
ip netns exec $L python3 -m http.server --bind 0.0.0.0 80 --directory "$T_WORK/lan-www" >"$T_WORK/http-lan.log" 2>&1 &
T_PIDS+=("$!")
# The exit reaches each itself (it asks for "/", so a request for /secret.txt in a log came through the proxy).
for url in http://127.0.0.1:8081/ http://203.0.113.1:8082/ http://192.168.77.2/ http://169.254.169.254/; do
    for i in $(seq 1 100); do
        ip netns exec $B curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && break
        [ "$i" = 100 ] && die "the exit cannot reach $url itself (test topology broken)"
        sleep 0.1
    done
done

# socks_refused DESC URL: fetching URL through the proxy fails with SOCKS5 reply 2 (not allowed by ruleset).
socks_refused() {
    local out
    if out=$(ip netns exec $A curl -sS --max-time 15 --socks5-hostname 127.0.0.1:1080 "$2" 2>&1); then
        fail "$1: fetched through the exit: $(head -c 80 <<<"$out")"
    elif grep -qE "SOCKS5 connection to .*\(2\)" <<<"$out"; then
        pass "$1: refused with reply 0x02"
    else
        fail "$1: not refused with 0x02: $out"
    fi
}
refused_before=$(cli b apps ls --json | jq '.[] | select(.name=="skysocks") | .info.refused_destinations // 0')
socks_refused "the exit's 127.0.0.1 (HTTP server bound to loopback)" http://127.0.0.1:8081/secret.txt
socks_refused "the exit's loopback as ::ffff:127.0.0.1" 'http://[::ffff:127.0.0.1]:8081/secret.txt'
socks_refused "0.0.0.0 (Linux connects it to the host itself)" http://0.0.0.0:8081/secret.txt
socks_refused "a name resolving to 127.0.0.1 (localhost)" http://localhost:8081/secret.txt
socks_refused "a private address on the exit's LAN" http://192.168.77.2/secret.txt
socks_refused "the exit's own LAN address" http://10.79.0.2:8082/secret.txt
socks_refused "the metadata address 169.254.169.254" http://169.254.169.254/secret.txt
socks_refused "the exit's own public address" http://203.0.113.1:8082/secret.txt
ip -n $B addr add 198.51.100.1/24 dev skwsb1
ip netns exec $B curl -fsS -o /dev/null --max-time 5 http://198.51.100.1:8082/ \
    || fail "the exit cannot reach its new address itself (test topology broken)"
socks_refused "an address added to the exit after start" http://198.51.100.1:8082/secret.txt
got=$(ip netns exec $A curl -fsS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://203.0.113.2:8080/small.txt 2>&1)
[ "$got" = hello ] && pass "--secure still reaches the documentation-range internet host" || fail "internet host: $got"
if grep -q 'GET /secret.txt' "$T_WORK/http-exit-lo.log" "$T_WORK/http-exit-any.log" "$T_WORK/http-lan.log"; then
    fail "a refused destination saw a request: $(grep -h 'GET /secret.txt' "$T_WORK"/http-*.log | head -3)"
else
    pass "no refused destination saw a request"
fi
info=$(cli b apps ls --json | jq -c '.[] | select(.name=="skysocks") | .info')
[ "$(jq -r .secure <<<"$info")" = true ] && [ "$(jq -r .refused_destinations <<<"$info")" -ge $((refused_before + 9)) ] \
    && pass "apps ls: secure, refused_destinations counted" || fail "apps ls info: $info"
grep -q 'destination refused by --secure' "$T_WORK/b.log" && grep -q 'loopback 127.0.0.0/8' "$T_WORK/b.log" \
    && grep -q 'an address of this host (198.51.100.1)' "$T_WORK/b.log" \
    && pass "the exit logs each refusal with its rule" || fail "no refusal log line naming the rule: $(grep -i refused "$T_WORK/b.log" | tail -3)"

# --secure=false: the exit's loopback is reachable again.
visor_stop b
jq '(.launcher.apps[] | select(.name=="skysocks") | .args) += ["--secure=false"]' "$T_WORK/b.json" >"$T_WORK/t" \
    && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start b $B
got=""
for _ in $(seq 1 60); do
    got=$(ip netns exec $A curl -fsS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:8081/secret.txt 2>"$T_WORK/insecure.err") \
        && [ "$got" = exit-loopback-secret ] && break
    sleep 1
done
[ "$got" = exit-loopback-secret ] && pass "--secure=false reaches the exit's loopback server" \
    || fail "--secure=false: $(cat "$T_WORK/insecure.err"); skysocks: $(cli b apps ls --json | jq -c '.[] | select(.name=="skysocks")')"
# ---- end socksdest ---------------------------------------------------------------------------------

finish
