#!/usr/bin/env bash
# PTY app (docs/pty.md): visor A runs `skywire cli pty` against visor B's pty app (port 22),
# each visor in its own namespace. exec (stdout/stderr apart, exit codes, a signal, ~10 MB,
# --timeout), an interactive shell driven through tmux, cp of 50 MB both ways, a stranger refused.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v tmux >/dev/null || die "tmux is missing (scripts/install-deps.sh)"

A=skwtPA$$ B=skwtPB$$
netns_add $A; netns_add $B
veth_pair $A skwpa0 10.81.0.1/24 $B skwpb0 10.81.0.2/24

PKA=$(visor_config a)
PKB=$(visor_config b)
OTHER=$("$SKYWIRE_BIN" config gen -o "$T_WORK/other.json")
# B runs pty for A only, as root; A and the stranger know where B listens.
jq --arg a "$PKA" '.launcher.apps += [{"name":"pty","args":["--whitelist",$a],"auto_start":true,"port":22}]' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
jq --arg b "$PKB" '.transport.peers[$b] = {"stcpr":"10.81.0.2:7777"}' \
    "$T_WORK/a.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/a.json"
visor_start a $A
visor_start b $B

st=$(cli b apps ls --json | jq -c '.[] | select(.name=="pty")')
[ "$(jq -r .status <<<"$st")" = running ] && [ "$(jq -r .access <<<"$st")" = listed ] \
    && pass "pty runs on B, access listed" || fail "pty on B: $st"

# ---- exec ------------------------------------------------------------------------------------
rc=0; out=$(cli a pty exec "$PKB" -- sh -c 'echo out; echo err >&2; exit 3' 2>"$T_WORK/err") || rc=$?
[ "$out" = out ] && [ "$(cat "$T_WORK/err")" = err ] && [ $rc = 3 ] \
    && pass "exec: stdout, stderr apart and exit code 3" || fail "exec: rc=$rc out=$out err=$(cat "$T_WORK/err")"
rc=0; out=$(cli a pty exec "$PKB" -- printf '%s|' 'a b' '' "c'd" 2>&1) || rc=$?
[ "$out" = "a b||c'd|" ] && [ $rc = 0 ] && pass "exec: argv passed exactly" || fail "exec argv: rc=$rc $out"
rc=0; cli a pty exec "$PKB" -- sh -c 'kill -KILL $$' >/dev/null 2>&1 || rc=$?
[ $rc = 137 ] && pass "exec: a command killed by SIGKILL exits 137" || fail "exec killed: rc=$rc"
rc=0; cli a pty exec "$PKB" -- no-such-command-here >/dev/null 2>"$T_WORK/err" || rc=$?
[ $rc = 127 ] && pass "exec: a missing command exits 127" || fail "exec missing: rc=$rc $(cat "$T_WORK/err")"
t0=$(date +%s)
rc=0; cli a pty exec "$PKB" --timeout 2 -- sleep 30.$$ >/dev/null 2>&1 || rc=$?
t1=$(date +%s)
[ $rc = 124 ] && [ $((t1 - t0)) -lt 15 ] && pass "exec --timeout 2: exit 124 after $((t1 - t0)) s" || fail "exec timeout: rc=$rc after $((t1 - t0)) s"
# The timed-out command was killed on B (SIGHUP, then SIGKILL within 2 s).
for _ in $(seq 50); do ip netns exec $B pgrep -x -f "sleep 30.$$" >/dev/null || break; sleep 0.2; done
ip netns exec $B pgrep -x -f "sleep 30.$$" >/dev/null && fail "the timed-out command still runs on B" || pass "the timed-out command was killed on B"
want=$(head -c 10000000 /dev/zero | tr '\0' x | sha256sum | cut -d' ' -f1)
t0=$(date +%s.%N)
got=$(cli a pty exec "$PKB" -- sh -c 'head -c 10000000 /dev/zero | tr "\0" x; echo done >&2' 2>"$T_WORK/err" | sha256sum | cut -d' ' -f1)
t1=$(date +%s.%N)
[ "$got" = "$want" ] && [ "$(cat "$T_WORK/err")" = done ] \
    && pass "exec: 10 MB of stdout intact ($(echo "$t1 - $t0" | bc) s)" || fail "exec 10 MB: $got != $want; err=$(head -c 300 "$T_WORK/err")"
got=$(head -c 3000000 /dev/urandom | tee "$T_WORK/in.bin" | cli a pty exec "$PKB" -- sha256sum | cut -d' ' -f1)
[ "$got" = "$(sha256sum <"$T_WORK/in.bin" | cut -d' ' -f1)" ] && pass "exec: 3 MB of stdin reach the command" || fail "exec stdin: $got"

# A client flooding stdin to a command that never reads it: the host holds a bounded backlog
# (256 KiB, docs/pty.md), so its memory stays flat while the client is held back. Measured: with
# the bound +0.6 MB over 8 s; with it disabled +8.7 MB (debug build), hence the 5 MB limit.
pidb=$(eval echo \$PID_b)
rss0=$(awk '/VmRSS/ {print $2}' /proc/$pidb/status)
rc=0; { head -c 200000000 /dev/zero || true; } | timeout 30 "$SKYWIRE_BIN" cli --rpc "$T_WORK/a.sock" pty exec "$PKB" -- sleep 8 || rc=$?
rss1=$(awk '/VmRSS/ {print $2}' /proc/$pidb/status)
[ $rc = 0 ] && [ $((rss1 - rss0)) -lt 5000 ] && pass "stdin flood to a non-reading command: exit 0, host RSS ${rss0} -> ${rss1} kB" \
    || fail "stdin flood: rc=$rc, host RSS ${rss0} -> ${rss1} kB"

# Hostile frames from an admitted key, straight through stream.open on A's control socket: a
# header announcing 2 GiB, then an unknown type. Each gets an error frame and the end of the
# stream; B keeps serving.
for frame in 027fffffff ee00000000; do
    got=$(python3 - "$T_WORK/a.sock" "$PKB" "$frame" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])
s.sendall((json.dumps({"id": 1, "method": "stream.open", "params": {"pk": sys.argv[2], "port": 22}}) + "\n").encode())
line = b""
while not line.endswith(b"\n"): line += s.recv(1)
assert "result" in json.loads(line), line
s.sendall(bytes.fromhex(sys.argv[3]))
data = b""
while True:
    c = s.recv(65536)
    if not c: break
    data += c
print(data[:1].hex(), data[5:].decode(errors="replace"))
PY
) || true
    [[ "$got" == 09\ * ]] && pass "hostile frame $frame: error frame and end of stream (${got#09 })" || fail "hostile frame $frame: got '$got'"
done
out=$(cli a pty exec "$PKB" -- echo still-served 2>&1) && [ "$out" = still-served ] && pass "B serves the next session" || fail "after hostile frames: $out"

# ---- cp --------------------------------------------------------------------------------------
head -c 50000000 /dev/urandom >"$T_WORK/big.bin"; chmod 0751 "$T_WORK/big.bin"
sum=$(sha256sum <"$T_WORK/big.bin" | cut -d' ' -f1)
rdir=$T_WORK/remote; mkdir -p "$rdir"
t0=$(date +%s.%N)
expect_ok "cp 50 MB to B" cli a pty cp "$T_WORK/big.bin" "$PKB:$rdir/big.bin"
t1=$(date +%s.%N)
[ "$(sha256sum <"$rdir/big.bin" | cut -d' ' -f1)" = "$sum" ] && [ "$(stat -c %a "$rdir/big.bin")" = 751 ] \
    && pass "cp to B: checksum and mode 751 kept ($(echo "$t1 - $t0" | bc) s)" || fail "cp to B: $(stat -c %a "$rdir/big.bin" 2>&1)"
chmod 0640 "$rdir/big.bin"
t0=$(date +%s.%N)
expect_ok "cp 50 MB from B" cli a pty cp "$PKB:$rdir/big.bin" "$T_WORK/back.bin"
t1=$(date +%s.%N)
[ "$(sha256sum <"$T_WORK/back.bin" | cut -d' ' -f1)" = "$sum" ] && [ "$(stat -c %a "$T_WORK/back.bin")" = 640 ] \
    && pass "cp from B: checksum and mode 640 kept ($(echo "$t1 - $t0" | bc) s)" || fail "cp from B: $(stat -c %a "$T_WORK/back.bin" 2>&1)"
expect_fail "cp of a missing remote file" "No such file" cli a pty cp "$PKB:$rdir/missing" "$T_WORK/missing"
[ ! -e "$T_WORK/missing" ] && ! ls "$T_WORK" | grep -q skw-part && pass "a failed cp leaves no file behind" || fail "leftovers: $(ls "$T_WORK")"
rm -rf "$rdir"

# ---- interactive shell through tmux ------------------------------------------------------------
tm="skwtpty$$"
tmux -L "$tm" new-session -d -x 100 -y 30 -s s "bash --norc --noprofile"
T_PIDS+=("$(tmux -L "$tm" display -p '#{pid}')")
tsend() { tmux -L "$tm" send-keys -t s "$@"; }
tshow() { tmux -L "$tm" capture-pane -p -t s -S -200; }
twait() { for _ in $(seq 100); do tshow | grep -q "$1" && return 0; sleep 0.1; done; return 1; }
tsend "PS1='local\$ '; stty -g > $T_WORK/stty.before" Enter
twait 'local\$' || fail "local shell in tmux did not start"
tsend "$SKYWIRE_BIN cli --rpc $T_WORK/a.sock pty start $PKB; rc=\$?; stty -g > $T_WORK/stty.after; echo RC=\$rc" Enter
sleep 2
tsend "PS1='remote# '" Enter
twait 'remote#' && pass "interactive: a remote shell prompt" || fail "interactive: no prompt: $(tshow | tail -5)"
tsend "echo marker-\$((6*7))" Enter
twait 'marker-42' && pass "interactive: a command's output" || fail "interactive: $(tshow | tail -5)"
tsend "stty size" Enter
twait '^30 100' && pass "interactive: remote stty size 30 100" || fail "interactive size: $(tshow | tail -3)"
tmux -L "$tm" resize-window -t s -x 120 -y 40
sleep 1
tsend "stty size" Enter
twait '^40 120' && pass "interactive: resize reaches the remote terminal (40 120)" || fail "interactive resize: $(tshow | tail -3)"
tsend "sleep 100" Enter
sleep 1
tsend C-c
tsend "echo after-sleep-\$?" Enter
twait 'after-sleep-130' && pass "interactive: Ctrl-C interrupts the remote command" || fail "interactive ctrl-c: $(tshow | tail -3)"
tsend "exit 5" Enter
twait 'RC=5' && pass "interactive: exit status 5 passed through" || fail "interactive exit: $(tshow | tail -3)"
cmp -s "$T_WORK/stty.before" "$T_WORK/stty.after" && pass "local terminal settings unchanged (stty -g)" \
    || fail "stty before $(cat "$T_WORK/stty.before") after $(cat "$T_WORK/stty.after")"
tmux -L "$tm" kill-server

# ---- the session log ---------------------------------------------------------------------------
grep "pty: session ended" "$T_WORK/b.log" | grep "pk=$PKA" | grep -q 'exit=exited(3)'  \
    && pass "sessions logged with the client key and exit status" || fail "session log: $(grep 'pty:' "$T_WORK/b.log" | tail -3)"

# ---- a stranger --------------------------------------------------------------------------------
jq --arg sock "$T_WORK/other.sock" --arg b "$PKB" --arg st "$T_WORK/other-state" '.cli_addr=$sock | .state_dir=$st | .transport.stcpr_port=7790 | .transport.sudph_port=7791 | .transport.peers[$b]={"stcpr":"10.81.0.2:7777"}' \
    "$T_WORK/other.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/other.json"
visor_start other $A
rc=0; cli other pty exec "$PKB" -- id >"$T_WORK/out" 2>&1 || rc=$?
[ $rc = 255 ] && grep -qi "refused" "$T_WORK/out" \
    && pass "a stranger's exec is refused (255: $(head -c 120 "$T_WORK/out"))" || fail "stranger: rc=$rc $(cat "$T_WORK/out")"
grep "pty: refused a session from a key not on the whitelist" "$T_WORK/b.log" | grep -q "pk=$OTHER" \
    && pass "the refusal is logged with the stranger's key" || fail "refusal log: $(grep 'pty:' "$T_WORK/b.log" | tail -2)"
list=$(cli a pty list --json)
[ "$(jq -r --arg b "$PKB" '.[] | select(.pk==$b) | .pty' <<<"$list")" = admitted ] && pass "pty list: B admits A" || fail "pty list (a): $list"
list=$(cli other pty list --json)
[ "$(jq -r --arg b "$PKB" '.[] | select(.pk==$b) | .pty' <<<"$list")" = refused ] && pass "pty list: B refuses the stranger" || fail "pty list (other): $list"
# --pk adds visors without a transport: one nobody can reach is reported, bounded by --timeout.
NOBODY=$("$SKYWIRE_BIN" config gen -o "$T_WORK/nobody.json")
t0=$(date +%s)
list=$(cli a pty list --pk "$NOBODY" --timeout 2 --json)
jq -e --arg n "$NOBODY" --arg b "$PKB" '(.[] | select(.pk==$n) | .pty | startswith("error")) and (.[] | select(.pk==$b) | .pty == "admitted")' <<<"$list" >/dev/null \
    && [ $(( $(date +%s) - t0 )) -le 20 ] && pass "pty list --pk: an unreachable key is reported as an error, B still admitted" || fail "pty list --pk: $list"
expect_fail "pty list --max 0 is refused" "must be 1...10000" cli a pty list --max 0

# Every session ended: no mux stream may stay open on A or B. The `streams` count of `tp ls` is
# refreshed when a mux frame arrives; a stream whose last frame was our own FIN is counted until
# the next one (at the latest the 10 s PING), hence the wait of up to 25 s.
for _ in $(seq 125); do
    sa=$(cli a tp ls --json | jq '[.[].streams] | add // 0'); sb=$(cli b tp ls --json | jq '[.[].streams] | add // 0')
    [ "$sa" = 0 ] && [ "$sb" = 0 ] && break
    sleep 0.2
done
[ "$sa" = 0 ] && [ "$sb" = 0 ] && pass "no mux stream left open after the sessions" || fail "streams still open: A $sa, B $sb"
st=$(cli b apps ls --json | jq -c '.[] | select(.name=="pty") | .info')
[ "$(jq -r .active_sessions <<<"$st")" = 0 ] && pass "pty: no session left active ($st)" || fail "pty sessions: $st"


# ---- through the session host (docs/pty.md "Session host") ------------------------------------
# B's pty app hands each admitted session to `skywire pty-host --socket` (started here, as the
# board's socket-activated skywire-pty@.service would be): the same checks again, and the visor
# itself never forks a session (the command's parent is the host, the visor has no child).
hsock="$T_WORK/pty-host.sock"
"$SKYWIRE_BIN" pty-host --socket "$hsock" --max-sessions 4 >>"$T_WORK/host.log" 2>&1 &
HOST_PID=$!; T_PIDS+=("$HOST_PID")
for _ in $(seq 50); do [ -S "$hsock" ] && break; sleep 0.1; done
[ "$(stat -c %a "$hsock" 2>&1)" = 600 ] && pass "session host socket is mode 0600" || fail "host socket: $(stat -c %a "$hsock" 2>&1)"
visor_stop b
jq --arg a "$PKA" --arg s "$hsock" '.launcher.apps = [.launcher.apps[] | if .name == "pty" then .args = ["--whitelist", $a, "--session-host", $s] else . end]' \
    "$T_WORK/b.json" >"$T_WORK/t" && install -m600 "$T_WORK/t" "$T_WORK/b.json"
visor_start b $B
rc=0; out=$(cli a pty exec "$PKB" -- sh -c 'echo out; echo err >&2; exit 3' 2>"$T_WORK/err") || rc=$?
[ "$out" = out ] && [ "$(cat "$T_WORK/err")" = err ] && [ $rc = 3 ] \
    && pass "host: exec stdout, stderr apart and exit code 3" || fail "host exec: rc=$rc out=$out err=$(cat "$T_WORK/err")"
got=$(cli a pty exec "$PKB" -- sha256sum <"$T_WORK/in.bin" | cut -d' ' -f1)
[ "$got" = "$(sha256sum <"$T_WORK/in.bin" | cut -d' ' -f1)" ] && pass "host: 3 MB of stdin reach the command" || fail "host exec stdin: $got"
ppid=$(cli a pty exec "$PKB" -- sh -c 'echo $PPID')
[ "$ppid" = "$HOST_PID" ] && pass "host: the command is the session host's child (ppid $ppid)" || fail "host: command's parent $ppid, host $HOST_PID, visor $PID_b"
cli a pty exec "$PKB" -- sleep 5 &
sleep_client=$!
for _ in $(seq 50); do pgrep -P "$HOST_PID" >/dev/null && break; sleep 0.1; done
kids=$(pgrep -P "$PID_b" | tr "\n" " " || true)
pgrep -P "$HOST_PID" >/dev/null && [ -z "$kids" ] && pass "host: the visor forks nothing while a session runs" \
    || fail "host: visor children '$kids', host children '$(pgrep -P "$HOST_PID" | tr '\n' ' ')'"
wait $sleep_client || true
head -c 2000000 /dev/urandom >"$T_WORK/h.bin"; chmod 640 "$T_WORK/h.bin"
rdir=$(mktemp -d /tmp/skwpty-host.XXXXXX)
cli a pty cp "$T_WORK/h.bin" "$PKB:$rdir/" && cli a pty cp "$PKB:$rdir/h.bin" "$T_WORK/h.back" \
    && cmp -s "$T_WORK/h.bin" "$rdir/h.bin" && cmp -s "$T_WORK/h.bin" "$T_WORK/h.back" && [ "$(stat -c %a "$T_WORK/h.back")" = 640 ] \
    && pass "host: cp both ways, checksum and mode kept" || fail "host cp: $(ls -l "$rdir" "$T_WORK/h.back" 2>&1)"
rm -rf "$rdir"
tm="skwtptyh$$"
tmux -L "$tm" new-session -d -x 100 -y 30 -s s "bash --norc --noprofile"
T_PIDS+=("$(tmux -L "$tm" display -p '#{pid}')")
tsend "PS1='local\$ '" Enter
twait 'local\$' || fail "local shell in tmux did not start"
tsend "$SKYWIRE_BIN cli --rpc $T_WORK/a.sock pty start $PKB; echo RC=\$?" Enter
sleep 2
tsend "PS1='remote# '; tty" Enter
twait 'remote#' && twait '^/dev/pts/' && pass "host: interactive shell on a pty" || fail "host interactive: $(tshow | tail -5)"
tsend "stty size" Enter
twait '^30 100' && pass "host: remote stty size 30 100" || fail "host interactive size: $(tshow | tail -3)"
tsend "exit 5" Enter
twait 'RC=5' && pass "host: interactive exit status 5 passed through" || fail "host interactive exit: $(tshow | tail -3)"
tmux -L "$tm" kill-server
grep "pty: session ended" "$T_WORK/host.log" | grep "pk=$PKA" | grep -q 'exit=exited(3)' \
    && pass "host: sessions logged by the host with the client key" || fail "host log: $(tail -3 "$T_WORK/host.log")"
grep -q "pty: session handed to the session host" "$T_WORK/b.log" && ! grep "pty: session started" "$T_WORK/b.log" | grep -q "$hsock" \
    && pass "host: the visor logs the hand-over" || fail "visor log: $(grep 'pty:' "$T_WORK/b.log" | tail -3)"
kill "$HOST_PID"; wait "$HOST_PID" 2>/dev/null || true; rm -f "$hsock"
# As on a board (skywire-pty.socket, Accept=yes): one `skywire pty-host` per connection, the
# connection as its stdin (systemd-socket-activate --inetd), gone once its session ended.
systemd-socket-activate --inetd -a -l "$hsock" "$SKYWIRE_BIN" pty-host 2>>"$T_WORK/host.log" &
ACT_PID=$!; T_PIDS+=("$ACT_PID")
for _ in $(seq 50); do [ -S "$hsock" ] && break; sleep 0.1; done
rc=0; out=$(cli a pty exec "$PKB" -- sh -c 'echo out; echo err >&2; exit 3' 2>"$T_WORK/err") || rc=$?
[ "$out" = out ] && [ "$(cat "$T_WORK/err")" = err ] && [ $rc = 3 ] \
    && pass "socket-activated host: exec stdout, stderr apart and exit code 3" || fail "socket-activated exec: rc=$rc out=$out err=$(cat "$T_WORK/err")"
rdir=$(mktemp -d /tmp/skwpty-act.XXXXXX)
cli a pty cp "$T_WORK/h.bin" "$PKB:$rdir/" && cli a pty cp "$PKB:$rdir/h.bin" "$T_WORK/h.back2" \
    && cmp -s "$T_WORK/h.bin" "$rdir/h.bin" && cmp -s "$T_WORK/h.bin" "$T_WORK/h.back2" \
    && pass "socket-activated host: cp both ways" || fail "socket-activated cp: $(ls -l "$rdir" "$T_WORK/h.back2" 2>&1)"
rm -rf "$rdir"
for _ in $(seq 50); do pgrep -P "$ACT_PID" >/dev/null || break; sleep 0.1; done
left=$(pgrep -P "$ACT_PID" | tr "\n" " " || true)
[ -z "$left" ] && pass "socket-activated host: each pty-host exited after its session" || fail "pty-host processes left: $left"
kill "$ACT_PID"; wait "$ACT_PID" 2>/dev/null || true; rm -f "$hsock"
# The host gone: a session gets an error, not a hang.
rc=0; cli a pty exec "$PKB" -- true >"$T_WORK/out" 2>&1 || rc=$?
[ $rc = 255 ] && grep -q "session host" "$T_WORK/out" && pass "host unreachable: exec fails with 255 ($(head -c 100 "$T_WORK/out"))" \
    || fail "host unreachable: rc=$rc $(cat "$T_WORK/out")"
st=$(cli b apps ls --json | jq -c '.[] | select(.name=="pty") | .info')
[ "$(jq -r .active_sessions <<<"$st")" = 0 ] && pass "host: no session left active ($st)" || fail "host pty sessions: $st"

finish
