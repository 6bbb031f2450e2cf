#!/usr/bin/env bash
# Delivery of update bundles over the mesh (docs/update.md, "Delivery over the mesh"): host H
# runs the update-server app over a directory holding a ~20 MB x.raucb; board B fetches it with
# `skywire cli update apply --from PK_H` (rauc replaced by a fake through the test hook
# SKYWIRE_UPDATE_RAUC), an interrupted fetch resumes, an unlisted key, a name with ../ and a
# symlink are refused, and H's memory stays flat while a reader stalls.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

H=skwtUH$$ B=skwtUB$$
netns_add $H; netns_add $B
veth_pair $H skwuh0 10.83.0.1/24 $B skwub0 10.83.0.2/24
# Slow the link a little (5 MB/s) so that the fetch can be interrupted half way; without tbf the
# interruption check still runs, on a faster transfer.
ip netns exec $H tc qdisc add dev skwuh0 root tbf rate 40mbit burst 64kb latency 400ms 2>/dev/null \
    && log "link shaped to 40 Mbit/s" || log "tc tbf unavailable: link not shaped"

PKH=$(visor_config h)
PKB=$(visor_config b)
OTHER=$("$SKYWIRE_BIN" config gen -o "$T_WORK/other.json")
srv=$T_WORK/bundles; mkdir -p "$srv"
head -c 20000000 /dev/urandom >"$srv/x.raucb"
SUM=$(sha256sum <"$srv/x.raucb" | cut -d' ' -f1)
echo secret >"$T_WORK/outside.raucb"
ln -s "$T_WORK/outside.raucb" "$srv/link.raucb"
jq --arg b "$PKB" --arg d "$srv" '.launcher.apps += [{"name":"update-server","args":["--dir",$d,"--whitelist",$b],"auto_start":true,"port":24}]' \
    "$T_WORK/h.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/h.json"
jq --arg h "$PKH" '.transport.peers[$h] = {"stcpr":"10.83.0.1:7777"}' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start h $H
visor_start b $B

st=$(cli h apps ls --json | jq -c '.[] | select(.name=="update-server")')
[ "$(jq -r .status <<<"$st")" = running ] && [ "$(jq -r .access <<<"$st")" = listed ] \
    && pass "update-server runs on H, access listed" || fail "update-server on H: $st"

# The fake rauc records its argv and the SHA-256 of the file it is given.
fake=$T_WORK/fake-rauc
cat >"$fake" <<FAKE
#!/bin/sh
echo "\$@" >"$T_WORK/rauc.argv"
sha256sum <"\$3" | cut -d' ' -f1 >"$T_WORK/rauc.sum"
FAKE
chmod 755 "$fake"
dl=$T_WORK/dl
apply() { SKYWIRE_UPDATE_RAUC=$fake "$SKYWIRE_BIN" cli --rpc "$T_WORK/b.sock" update apply --from "$PKH" --download-dir "$dl" "$@"; }
sent() { cli h apps ls --json | jq -r '.[] | select(.name=="update-server") | .info.bytes_sent'; }

# ---- an interrupted fetch, then a rerun that resumes ----------------------------------------
# Started without a shell function around it, so that $! is the CLI itself.
env SKYWIRE_UPDATE_RAUC="$fake" "$SKYWIRE_BIN" cli --rpc "$T_WORK/b.sock" update apply --from "$PKH" --download-dir "$dl" --json 2>"$T_WORK/p1.log" &
cpid=$!
T_PIDS+=("$cpid")
for _ in $(seq 400); do
    s=$(stat -c %s "$dl/x.raucb.part" 2>/dev/null || echo 0)
    [ "$s" -gt 4000000 ] && break
    kill -0 $cpid 2>/dev/null || break
    sleep 0.05
done
kill -9 $cpid 2>/dev/null || true; wait $cpid 2>/dev/null || true
part=$(stat -c %s "$dl/x.raucb.part" 2>/dev/null || echo 0)
[ "$part" -gt 0 ] && [ "$part" -lt 20000000 ] && [ ! -e "$dl/x.raucb" ] && ! grep -q '"fetched"' "$T_WORK/p1.log" \
    && pass "fetch killed at byte $part of 20000000: partial file kept" || fail "interrupt: part=$part, $(ls -l "$dl" 2>&1)"
[ "$(stat -c %a "$dl/x.raucb.part" 2>/dev/null)" = 600 ] && pass "the partial file is 0600" || fail "mode $(stat -c %a "$dl/x.raucb.part" 2>&1)"
sleep 1
before=$(sent)
t0=$(date +%s.%N)
rc=0; apply --json 2>"$T_WORK/p2.log" || rc=$?
t1=$(date +%s.%N)
after=$(sent)
second=$((after - before))
received=$(grep '"fetched"' "$T_WORK/p2.log" | jq -r .received || true)
[ $rc = 0 ] && [ "$(cat "$T_WORK/rauc.sum" 2>/dev/null)" = "$SUM" ] && [ "$(cat "$T_WORK/rauc.argv")" = "install --progress $dl/x.raucb" ] \
    && pass "rerun: rauc got $dl/x.raucb with the right SHA-256 ($(echo "$t1 - $t0" | bc) s)" \
    || fail "rerun: rc=$rc argv=$(cat "$T_WORK/rauc.argv" 2>&1) $(tail -3 "$T_WORK/p2.log")"
[ "$second" -lt 20000000 ] && [ "$received" = "$((20000000 - part))" ] \
    && pass "resumed: H sent $second bytes the second time (client received $received, total 20000000)" \
    || fail "not resumed: H sent $second bytes, client received $received, partial was $part"
grep -q '"progress"' "$T_WORK/p1.log" "$T_WORK/p2.log" && pass "progress lines on stderr" || fail "no progress: $(head -3 "$T_WORK/p1.log")"
[ ! -e "$dl/x.raucb.part" ] && pass "no partial file left" || fail "partial left: $(ls "$dl")"

# ---- a whole fetch, --bundle named, text progress -------------------------------------------
rm -f "$dl/x.raucb" "$T_WORK/rauc.sum"
rc=0; apply --bundle x.raucb 2>"$T_WORK/p3.log" || rc=$?
[ $rc = 0 ] && [ "$(cat "$T_WORK/rauc.sum" 2>/dev/null)" = "$SUM" ] && grep -q "SHA-256 $SUM verified" "$T_WORK/p3.log" \
    && pass "whole fetch with --bundle: checksum verified" || fail "whole fetch: rc=$rc $(tail -3 "$T_WORK/p3.log")"

# A partial file whose bytes are not the bundle's (1 MB of zeros, recorded as this bundle): the
# resumed fetch fails its checksum and removes the partial file; the next run starts over.
head -c 1000000 /dev/zero >"$dl/x.raucb.part"; echo -n "$SUM" >"$dl/x.raucb.part.sha256"
rm -f "$T_WORK/rauc.sum"
expect_fail "a corrupt partial file: checksum mismatch" "checksum mismatch" apply --bundle x.raucb
[ ! -e "$dl/x.raucb.part" ] && [ ! -e "$T_WORK/rauc.sum" ] && pass "after the mismatch: partial file removed, rauc not run" \
    || fail "after the mismatch: $(ls "$dl") $(cat "$T_WORK/rauc.sum" 2>&1)"

# ---- refusals ---------------------------------------------------------------------------------
expect_fail "a bundle that is not there" "no such bundle" apply --bundle nothere.raucb
expect_fail "a symlink in the directory is not served" "no such bundle" apply --bundle link.raucb
expect_fail "--bundle with ../ refused by the CLI" "start with '.'" apply --bundle ../outside.raucb
# A raw GET of ../outside.raucb and of a name without .raucb, straight through stream.open.
raw_get() {
    python3 - "$T_WORK/b.sock" "$PKH" "$1" <<'PY'
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])
s.sendall((json.dumps({"id": 1, "method": "stream.open", "params": {"pk": sys.argv[2], "port": 24}}) + "\n").encode())
line = b""
while not line.endswith(b"\n"): line += s.recv(1)
assert "result" in json.loads(line), line
name = sys.argv[3].encode()
payload = struct.pack(">Q", 0) + name
s.sendall(bytes([1, 2]) + struct.pack(">I", len(payload)) + payload)
data = b""
while True:
    c = s.recv(65536)
    if not c: break
    data += c
print(data[1:2].hex(), data[6:7].hex(), data[7:].decode(errors="replace"))
PY
}
for name in ../outside.raucb outside secret/../x.raucb; do
    got=$(raw_get "$name" 2>&1) || true
    [[ "$got" == "1f 02 "* ]] && pass "raw get '$name': error bad_request (${got#1f 02 })" || fail "raw get '$name': '$got'"
done
# Another key: H's app restarted with a whitelist that does not hold B's key.
ctl() {
    python3 - "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
print(s.makefile().readline().strip())
PY
}
ctl "$T_WORK/h.sock" '{"id":1,"method":"apps.stop","params":{"name":"update-server"}}' >/dev/null
ctl "$T_WORK/h.sock" "{\"id\":2,\"method\":\"apps.start\",\"params\":{\"name\":\"update-server\",\"args\":[\"--dir\",\"$srv\",\"--whitelist\",\"$OTHER\"]}}" >/dev/null
expect_fail "a key not on the whitelist is refused" "does not list our key" apply --bundle x.raucb
ctl "$T_WORK/h.sock" '{"id":3,"method":"apps.stop","params":{"name":"update-server"}}' >/dev/null
ctl "$T_WORK/h.sock" "{\"id\":4,\"method\":\"apps.start\",\"params\":{\"name\":\"update-server\",\"args\":[\"--dir\",\"$srv\"]}}" >/dev/null
expect_fail "no whitelist: nobody is served" "does not list our key" apply --bundle x.raucb
ctl "$T_WORK/h.sock" '{"id":5,"method":"apps.stop","params":{"name":"update-server"}}' >/dev/null
# Back to B's key, with one request at a time per key (checked while the reader below stalls).
ctl "$T_WORK/h.sock" "{\"id\":6,\"method\":\"apps.start\",\"params\":{\"name\":\"update-server\",\"args\":[\"--dir\",\"$srv\",\"--whitelist\",\"$PKB\",\"--max-per-key\",\"1\"]}}" >/dev/null

# ---- a reader that stalls: H's memory stays flat ------------------------------------------------
pidh=$(eval echo \$PID_h)
rss0=$(awk '/VmRSS/ {print $2}' /proc/$pidh/status)
python3 - "$T_WORK/b.sock" "$PKH" >"$T_WORK/stall.out" 2>&1 <<'PY' &
import json, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall((json.dumps({"id": 1, "method": "stream.open", "params": {"pk": sys.argv[2], "port": 24}}) + "\n").encode())
line = b""
while not line.endswith(b"\n"): line += s.recv(1)
payload = struct.pack(">Q", 0) + b"x.raucb"
s.sendall(bytes([1, 2]) + struct.pack(">I", len(payload)) + payload)
print(len(s.recv(100)))
time.sleep(10)
PY
spid=$!
T_PIDS+=("$spid")
sleep 6
expect_fail "a second request from the key while one runs (--max-per-key 1): busy" "busy" apply --bundle x.raucb
sleep 2
rss1=$(awk '/VmRSS/ {print $2}' /proc/$pidh/status)
st=$(cli h apps ls --json | jq -c '.[] | select(.name=="update-server") | .info')
wait $spid 2>/dev/null || true
# Buffering the bundle would add ~20 MB; one chunk and the stream's window add well under 8 MB.
[ $((rss1 - rss0)) -lt 8000 ] && pass "stalled reader: H RSS ${rss0} -> ${rss1} kB ($st)" \
    || fail "stalled reader: H RSS ${rss0} -> ${rss1} kB ($st)"
out=$(apply --bundle x.raucb 2>&1) && [ "$(cat "$T_WORK/rauc.sum")" = "$SUM" ] \
    && pass "H serves the next fetch after the stalled one" || fail "after the stall: $out"

# ---- an unreachable peer --------------------------------------------------------------------
expect_fail "an unreachable peer" "not reachable|cannot reach|no transport|timed out" \
    env SKYWIRE_UPDATE_RAUC=$fake "$SKYWIRE_BIN" cli --rpc "$T_WORK/b.sock" update apply --from "$OTHER" --download-dir "$dl" --dial-timeout 2
finish
