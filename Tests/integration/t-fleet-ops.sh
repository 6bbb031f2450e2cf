#!/usr/bin/env bash
# Fleet operations (docs/fleet.md, "Operations"): `fleet/fleet.py status|exec|update` on the owner's
# host, through the owner's visor and the devices' pty app. No QEMU: an owner visor and three
# device visors, each in its own namespace on one "internet" bridge (198.51.100.0/24) with a
# discovery service. The device keys and their pty whitelist (the owner's key) come from a
# manifest run through fleet.py, as on real boards.
#
# TEST DOUBLE: the devices here are plain visors, with no A/B slots and no rauc, so `update` runs
# against a stand-in: the devices' `skywire` is $T_WORK/bin/devsky (--remote-skywire), which
# answers `cli update apply|status` and `reboot` from a per-device state file, and passes every
# other command to the real skywire. It exists only inside this test; the real update path (rauc,
# reboot, health check, rollback) is tested under QEMU by `make update-test` (image/update-test.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
REPO=$(cd "$here/../.." && pwd)
FLEET=$REPO/fleet/fleet.py
DISC_BIN=$(dirname "$SKYWIRE_BIN")/skywire-discovery
[ -x "$DISC_BIN" ] || die "$DISC_BIN not found: build it with 'swift build' (product skywire-discovery)"

python3 -m unittest "$REPO/fleet/test_ops.py" >"$T_WORK/unit.log" 2>&1 && pass "fleet/test_ops.py unit tests" \
    || { cat "$T_WORK/unit.log" >&2; fail "fleet/test_ops.py unit tests"; }

PUB=skwtFOp$$ OWN=skwtFOo$$
netns_add $PUB; netns_add $OWN
ip -n $PUB link add skwt-fobr type bridge
ip -n $PUB addr add 198.51.100.1/24 dev skwt-fobr
ip -n $PUB link set skwt-fobr up
attach() {  # attach NS IFNAME ADDR/24
    ip link add "$2" netns "$1" type veth peer name "$2p" netns $PUB
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
    ip -n $PUB link set "$2p" master skwt-fobr
    ip -n $PUB link set "$2p" up
}
attach $OWN skwt-foo0 198.51.100.2/24
DEVS=(dev1 dev2 dev3)
declare -A NS ADDR
i=0
for d in "${DEVS[@]}"; do
    i=$((i + 1))
    NS[$d]=skwtFO$i$$; ADDR[$d]=198.51.100.1$i
    netns_add "${NS[$d]}"
    attach "${NS[$d]}" "skwt-fo$i" "${ADDR[$d]}/24"
done
ip netns exec $OWN ping -c1 -W2 198.51.100.13 >/dev/null || die "no connectivity owner -> dev3"

ip netns exec $PUB "$DISC_BIN" --http 198.51.100.1:9090 --udp 198.51.100.1:9091 --db "sqlite:$T_WORK/disc.sqlite" \
    >>"$T_WORK/discovery.log" 2>&1 &
T_PIDS+=("$!")
for _ in $(seq 1 50); do ip netns exec $OWN curl -s -m 1 -o /dev/null http://198.51.100.1:9090/v1/info && break; sleep 0.1; done

# ---- the owner's visor and the fleet's manifest ----------------------------------------------------
"$SKYWIRE_BIN" config gen -o "$T_WORK/owner.json" >"$T_WORK/owner.pk"
OWNER_PK=$(cat "$T_WORK/owner.pk")
cat >"$T_WORK/fleet.json" <<EOF
{
  "fleet": "opstest",
  "defaults": {"board": "qemu-arm64", "app_trusts": {"pty": ["$OWNER_PK"]}},
  "groups": {"pair": ["dev1", "dev2"]},
  "devices": [
    {"name": "dev1", "role": "client"},
    {"name": "dev2", "role": "client"},
    {"name": "dev3", "role": "client"}
  ]
}
EOF
OUT=$T_WORK/out
HOST_SKYWIRE_BIN=$SKYWIRE_BIN "$FLEET" "$T_WORK/fleet.json" -o "$OUT" --no-images >"$T_WORK/provision.log" 2>&1 \
    || die "fleet.py provisioning failed: $(cat "$T_WORK/provision.log")"
wl=$(jq -c '.app_whitelists.pty' "$OUT/devices/dev2/skywire-provision.json")
[ "$wl" = "[\"$OWNER_PK\"]" ] && pass "manifest defaults.app_trusts.pty gives every device app_whitelists.pty = the owner's key" \
    || fail "app_whitelists.pty of dev2: $wl"

peers='{}'
for d in "${DEVS[@]}"; do
    pk=$(cat "$OUT/keys/$d.pk")
    peers=$(jq -c --arg pk "$pk" --arg a "${ADDR[$d]}:7777" '.[$pk] = {"stcpr": $a}' <<<"$peers")
    # The device's visor: its fleet key, the pty app as 30-provision/50-apps set it up from the
    # provisioning file (whitelist = app_whitelists.pty), registered with discovery.
    "$SKYWIRE_BIN" config gen -o "$T_WORK/$d.json" --sk "$(cat "$OUT/keys/$d.sk")" >/dev/null || die "config gen $d"
    jq --arg sock "$T_WORK/$d.sock" --arg st "$T_WORK/$d-state" --arg a "${ADDR[$d]}:7777" \
        --argjson wl "$(jq -c '.app_whitelists.pty' "$OUT/devices/$d/skywire-provision.json")" \
        '.cli_addr = $sock | .state_dir = $st | .transport.discovery = "http://198.51.100.1:9090" | .transport.public_addr = $a
         | .launcher.apps += [{"name":"pty","args":["--whitelist", ($wl | join(","))],"auto_start":true,"port":22}]' \
        "$T_WORK/$d.json" >"$T_WORK/t" && install -m 600 "$T_WORK/t" "$T_WORK/$d.json"
done
jq --arg sock "$T_WORK/owner.sock" --arg st "$T_WORK/owner-state" --argjson p "$peers" \
    '.cli_addr = $sock | .state_dir = $st | .transport.discovery = "http://198.51.100.1:9090"
     | .transport.public_addr = "198.51.100.2:7777" | .transport.peers = $p' "$T_WORK/owner.json" >"$T_WORK/t" \
    && install -m 600 "$T_WORK/t" "$T_WORK/owner.json"
visor_start owner $OWN
for d in "${DEVS[@]}"; do
    visor_start "$d" "${NS[$d]}"
    mkdir -p "$T_WORK/upd-$d"; echo v1 >"$T_WORK/upd-$d/version"; echo A >"$T_WORK/upd-$d/slot"
done

# ---- the test double for the devices' `skywire` (see the top of this file) ----------------------------
mkdir -p "$T_WORK/bin"
cat >"$T_WORK/bin/devsky" <<EOF
#!/usr/bin/env bash
# TEST DOUBLE (t-fleet-ops.sh only): stands in for the devices' skywire. Finds its device by the
# config of the visor that runs it (a pty session is the visor's child), answers
# 'cli update apply|status' and 'reboot' from \$T_WORK/upd-<device>/, passes the rest on.
set -u
real=$SKYWIRE_BIN work=$T_WORK
EOF
cat >>"$T_WORK/bin/devsky" <<'EOF'
p=$PPID cfg=
for _ in 1 2 3 4 5 6; do
    # The visor: `skywire visor -c CONFIG` (not a shell's `sh -c SCRIPT`).
    cfg=$(tr '\0' '\n' </proc/$p/cmdline 2>/dev/null | sed -n '2{/^visor$/!q};/^-c$/{n;p;q}')
    [ -n "$cfg" ] && break
    p=$(awk '{print $4}' /proc/$p/stat 2>/dev/null) || break
done
[ -n "$cfg" ] || { echo "devsky: no visor above me" >&2; exit 99; }
dev=$(basename "$cfg" .json) st=$work/upd-$dev
now() { date +%s%N; }
if [ "${1:-}" = reboot ]; then
    # A reboot: the device answers nothing for 3 s, then runs the outcome of the pending install.
    echo $(( $(date +%s) + 3 )) >"$st/down_until"
    if [ -e "$st/pending" ]; then
        new=$(cat "$st/pending") old=$(cat "$st/version") slot=$(cat "$st/slot")
        other=$([ "$slot" = A ] && echo B || echo A)
        if [ -e "$st/bad" ]; then
            jq -nc --arg s "$other" --arg v "$new" --arg t "$(now)" \
                '{state: "rolled-back", slot: $s, version: $v, reason: "health check: skywire.service is not active", time: $t}' >"$st/last.json"
        else
            echo "$new" >"$st/version"; echo "$other" >"$st/slot"
            jq -nc --arg s "$other" --arg v "$new" --arg t "$(now)" '{state: "committed", slot: $s, version: $v, time: $t}' >"$st/last.json"
        fi
        rm -f "$st/pending"
    fi
    exit 0
fi
if [ "${1:-} ${2:-}" = "cli update" ]; then
    if [ -e "$st/down_until" ] && [ "$(date +%s)" -lt "$(cat "$st/down_until")" ]; then
        echo "skywire cli: cannot reach the visor (rebooting)" >&2; exit 1
    fi
    case "${3:-}" in
        status)
            jq -nc --arg v "$(cat "$st/version")" --arg s "$(cat "$st/slot")" --slurpfile l <(cat "$st/last.json" 2>/dev/null || echo null) \
                '{board: "test-double", version: $v, slot: $s, last_update: $l[0]}'
            exit 0 ;;
        apply)
            shift 3
            echo "$(now) $dev apply $*" >>"$work/applied.log"
            v=$(grep -o 'v[0-9][0-9]*' <<<"$*" | tail -n1)
            [ -n "$v" ] || { echo "devsky: no version in '$*'" >&2; exit 2; }
            echo "  0% Installing"; sleep 1; echo "100% Installing done."
            echo "$v" >"$st/pending"; exit 0 ;;
    esac
    exit 2
fi
if [ "${1:-}" = cli ]; then shift; exec "$real" cli -c "$cfg" "$@"; fi
exec "$real" "$@"
EOF
chmod 755 "$T_WORK/bin/devsky"

ops() {  # ops OP ARGS...: fleet/fleet.py OP in the owner's namespace, against the owner's visor
    local op=$1; shift
    ip netns exec $OWN "$FLEET" "$op" "$T_WORK/fleet.json" -o "$OUT" --skywire "$SKYWIRE_BIN" --rpc "$T_WORK/owner.sock" \
        --config "$T_WORK/owner.json" --remote-skywire "$T_WORK/bin/devsky" "$@"
}

# Wait until every device is registered with discovery (the visors write their entry at start).
for _ in $(seq 1 60); do
    n=0
    for d in "${DEVS[@]}"; do
        ip netns exec $OWN curl -sf -m 2 -o /dev/null "http://198.51.100.1:9090/v1/transports/$(cat "$OUT/keys/$d.pk")" && n=$((n + 1))
    done
    [ $n = 3 ] && break; sleep 0.5
done
[ $n = 3 ] || fail "only $n of 3 devices registered with discovery"

# ---- status -------------------------------------------------------------------------------------
rc=0; ops status --json >"$T_WORK/status1.json" 2>"$T_WORK/status1.err" || rc=$?
ok=$(jq '[.devices[] | select(.reachable and .version == "v1" and .slot == "A" and .transports_up >= 1
         and .last_seen_seconds_ago != null and .uptime_seconds > 0 and .visor_uptime_seconds != null)] | length' "$T_WORK/status1.json" 2>/dev/null)
[ $rc = 0 ] && [ "$ok" = 3 ] && pass "status --json: 3 devices reachable with version, slot, uptime, transports up and last seen" \
    || fail "status: rc=$rc ok=$ok $(cat "$T_WORK/status1.json" "$T_WORK/status1.err")"
ops status >"$T_WORK/status1.txt" 2>&1 || true
grep -q '^NAME  *ROLE  *REACH' "$T_WORK/status1.txt" && [ "$(grep -c ' up  *v1 ' "$T_WORK/status1.txt")" = 3 ] \
    && pass "status: table with the 3 devices" || fail "status table: $(cat "$T_WORK/status1.txt")"
sed 's/^/    | /' "$T_WORK/status1.txt" >&2

visor_stop dev3
t0=$SECONDS
rc=0; ops status --json --timeout 8 >"$T_WORK/status2.json" 2>"$T_WORK/status2.err" || rc=$?
took=$((SECONDS - t0))
st=$(jq -c '[.devices[] | [.name, .reachable]]' "$T_WORK/status2.json" 2>/dev/null)
[ $rc = 1 ] && [ "$st" = '[["dev1",true],["dev2",true],["dev3",false]]' ] && [ $took -lt 60 ] \
    && pass "status with dev3 stopped: dev3 unreachable, the others answer (${took}s, exit 1)" \
    || fail "status with dev3 stopped: rc=$rc took=${took}s $st $(cat "$T_WORK/status2.err")"

# ---- exec ---------------------------------------------------------------------------------------
rc=0; ops exec --timeout 8 -- uname -n >"$T_WORK/exec1.out" 2>"$T_WORK/exec1.err" || rc=$?
host=$(uname -n)
[ $rc = 1 ] && [ "$(grep -c "^dev[12]: $host\$" "$T_WORK/exec1.out")" = 2 ] && ! grep -q '^dev3:' "$T_WORK/exec1.out" \
    && grep -q 'exec: 2 ok, 1 unreachable' "$T_WORK/exec1.err" \
    && pass "exec -- uname -n: output prefixed by device, 2 ok, 1 unreachable, exit 1" \
    || fail "exec uname: rc=$rc out=$(cat "$T_WORK/exec1.out") err=$(cat "$T_WORK/exec1.err")"

visor_start dev3 "${NS[dev3]}"
rc=0; ops exec --json --group pair -- sh -c 'echo to-stderr >&2; exit 3' >"$T_WORK/exec2.json" 2>"$T_WORK/exec2.err" || rc=$?
[ $rc = 1 ] && [ "$(jq -c '[.devices[] | [.name, .outcome, .exit]]' "$T_WORK/exec2.json")" = '[["dev1","failed",3],["dev2","failed",3]]' ] \
    && [ "$(jq -c .summary "$T_WORK/exec2.json")" = '{"failed":2}' ] && [ "$(grep -c ': to-stderr$' "$T_WORK/exec2.err")" = 2 ] \
    && pass "exec --group pair of a failing command: 2 failed with exit 3, JSON summary, exit 1" \
    || fail "exec failing: rc=$rc $(cat "$T_WORK/exec2.json" "$T_WORK/exec2.err")"

rc=0; ops exec --out "$T_WORK/exec3" -- sh -c 'echo hi-from-$(hostname)' >/dev/null 2>"$T_WORK/exec3.err" || rc=$?
[ $rc = 0 ] && [ "$(cat "$T_WORK"/exec3/dev{1,2,3}.out | grep -c '^hi-from-')" = 3 ] \
    && pass "exec --out DIR: one output file per device, all ok (dev3 back), exit 0" \
    || fail "exec --out: rc=$rc $(ls "$T_WORK/exec3" 2>&1) $(cat "$T_WORK/exec3.err")"

# Parallelism: each command notes its start and end; at no time more than --parallel run at once.
: >"$T_WORK/par.log"
rc=0; ops exec --parallel 2 --timeout 30 -- sh -c "echo \"\$(date +%s%N) 1\" >>$T_WORK/par.log; sleep 2; echo \"\$(date +%s%N) -1\" >>$T_WORK/par.log" \
    >/dev/null 2>"$T_WORK/par.err" || rc=$?
maxpar=$(sort -n "$T_WORK/par.log" | awk '{c += $2; if (c > m) m = c} END {print m + 0}')
[ $rc = 0 ] && [ "$maxpar" = 2 ] && [ "$(wc -l <"$T_WORK/par.log")" = 6 ] \
    && pass "exec --parallel 2 on 3 devices: at most 2 commands at once (max seen $maxpar)" \
    || fail "exec --parallel 2: rc=$rc max at once $maxpar; $(cat "$T_WORK/par.log" "$T_WORK/par.err")"
: >"$T_WORK/par.log"
ops exec --parallel 1 -- sh -c "echo \"\$(date +%s%N) 1\" >>$T_WORK/par.log; sleep 1; echo \"\$(date +%s%N) -1\" >>$T_WORK/par.log" >/dev/null 2>&1 || true
maxpar=$(sort -n "$T_WORK/par.log" | awk '{c += $2; if (c > m) m = c} END {print m + 0}')
[ "$maxpar" = 1 ] && pass "exec --parallel 1: one at a time" || fail "exec --parallel 1: max at once $maxpar"

# ---- update (against the test double) ------------------------------------------------------------------
touch "$T_WORK/upd-dev2/bad"      # dev2's "health check" fails: it rolls back
: >"$T_WORK/applied.log"
rc=0; ops update --json --from "$OWNER_PK" --bundle skywire-test-v2.raucb --version v2 --canary 1 --poll 1 --wait 60 \
    --reboot-cmd "$T_WORK/bin/devsky reboot" >"$T_WORK/upd1.json" 2>"$T_WORK/upd1.err" || rc=$?
res=$(jq -c '[.devices[] | [.name, .result]]' "$T_WORK/upd1.json" 2>/dev/null)
[ $rc = 1 ] && [ "$res" = '[["dev1","updated"],["dev2","rolled-back"],["dev3","skipped"]]' ] && [ "$(jq .stopped "$T_WORK/upd1.json")" = true ] \
    && pass "update: canary dev1 updated, dev2 rolled back, rollout stopped (dev3 skipped), exit 1" \
    || fail "update: rc=$rc $res $(cat "$T_WORK/upd1.json" "$T_WORK/upd1.err")"
sed 's/^/    | /' "$T_WORK/upd1.err" >&2
first=$(awk 'NR == 1 {print $2}' "$T_WORK/applied.log")
[ "$first" = dev1 ] && ! grep -q dev3 "$T_WORK/applied.log" && grep -q "dev1 apply --from $OWNER_PK --bundle skywire-test-v2.raucb" "$T_WORK/applied.log" \
    && pass "update: the canary installed first (update apply --from PK --bundle NAME); dev3 never installed" \
    || fail "update order: $(cat "$T_WORK/applied.log")"
[ "$(jq -r '.devices[1].reason' "$T_WORK/upd1.json")" = "v2 rolled back to v1: health check: skywire.service is not active" ] \
    && pass "update: the rollback's reason is reported" || fail "rollback reason: $(jq -c '.devices[1]' "$T_WORK/upd1.json")"

rm -f "$T_WORK/upd-dev2/bad"
rc=0; ops update --url http://198.51.100.1:8080/skywire-test-v2.raucb --version v2 --canary 50% --poll 1 --wait 60 \
    --reboot-cmd "$T_WORK/bin/devsky reboot" >"$T_WORK/upd2.txt" 2>"$T_WORK/upd2.err" || rc=$?
[ $rc = 0 ] && grep -qE '^dev1 +skipped .*already runs v2' "$T_WORK/upd2.txt" && grep -qE '^dev2 +updated +v1 +v2 ' "$T_WORK/upd2.txt" \
    && grep -qE '^dev3 +updated +v1 +v2 ' "$T_WORK/upd2.txt" && grep -q 'stage 1/2 (canary): dev1, dev2' "$T_WORK/upd2.err" \
    && pass "update --url, --canary 50%: dev1 already on v2 skipped, dev2 and dev3 updated, exit 0" \
    || fail "update 2: rc=$rc $(cat "$T_WORK/upd2.txt" "$T_WORK/upd2.err")"
sed 's/^/    | /' "$T_WORK/upd2.txt" >&2
ops status --json >"$T_WORK/status3.json" 2>/dev/null || true
[ "$(jq -c '[.devices[] | .version]' "$T_WORK/status3.json")" = '["v2","v2","v2"]' ] \
    && pass "status after the rollout: every device reports v2" || fail "status after: $(jq -c '[.devices[] | .version]' "$T_WORK/status3.json")"

# A canary that cannot be reached proves nothing: the rest is not started.
visor_stop dev1
: >"$T_WORK/applied.log"
rc=0; ops update --json --url http://198.51.100.1:8080/skywire-test-v3.raucb --canary 1 --poll 1 --wait 30 --status-timeout 8 \
    --reboot-cmd "$T_WORK/bin/devsky reboot" >"$T_WORK/upd3.json" 2>"$T_WORK/upd3.err" || rc=$?
[ $rc = 1 ] && [ "$(jq -c '[.devices[] | [.name, .result]]' "$T_WORK/upd3.json")" = '[["dev1","skipped"],["dev2","skipped"],["dev3","skipped"]]' ] \
    && [ ! -s "$T_WORK/applied.log" ] && grep -q 'no canary device was updated' "$T_WORK/upd3.err" \
    && pass "update with the canary unreachable: nothing installed anywhere, exit 1" \
    || fail "update, canary unreachable: rc=$rc $(cat "$T_WORK/upd3.json" "$T_WORK/upd3.err" "$T_WORK/applied.log")"

finish
