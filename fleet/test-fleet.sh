#!/usr/bin/env bash
# fleet/test-fleet.sh: tests fleet/fleet.py end to end (make fleet-test).
#
# A three-device fleet (exit, gateway, client; board qemu-arm64): the provisioning
# files read back from the images with mtools hold the right keys, whitelists and
# peers; a re-run keeps every key and image; adding and removing a device updates
# the whitelists; manifest errors name the place and change nothing. Then
# (FLEET_BOOT_TEST=1, default) the exit's image boots under QEMU in a private
# network namespace, and host-side visors check that the fleet's client is
# accepted by the VPN exit and the SOCKS server while a key from outside the fleet
# is refused ("forbidden" / stream reset).
#
# Needs: root (network namespace), HOST_SKYWIRE_BIN (or `swift build`), the base
# image (built by fleet.py through image/build.sh; SKYWIRE_BIN= for the board binary).
set -euo pipefail
{
REPO=$(cd "$(dirname "$0")/.." && pwd)
FLEET=$REPO/fleet/fleet.py
BOARD=qemu-arm64
FLEET_BOOT_TEST=${FLEET_BOOT_TEST:-1}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}       # TCG on a shared 2-core host
SSH_TIMEOUT=${SSH_TIMEOUT:-300}
CMD_TIMEOUT=60
export MTOOLS_SKIP_CHECK=1 TZ=UTC LC_ALL=C.UTF-8
# The base image's segment streams survive the test (made once per base image).
export FLEET_CACHE=${FLEET_CACHE:-$REPO/out/.fleet-cache}

PASS=0 FAIL=0 SKIP=0
pass() { PASS=$((PASS + 1)); echo "PASS: $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
skip() { SKIP=$((SKIP + 1)); echo "SKIP: $*"; }
die()  { echo "test-fleet: $*" >&2; exit 1; }

T=$(mktemp -d /tmp/fleet-test.XXXXXX)
NS=""
PIDS=()
cleanup() {
    set +e
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
    if [ -n "${KEEP_TEST_DIR:-}" ]; then echo "test-fleet: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# Fleet operations' pure logic (fleet/ops.py: selection, staging, parsing, outcomes).
python3 -m unittest "$REPO/fleet/test_ops.py" >"$T/unit.log" 2>&1 && pass "fleet/test_ops.py unit tests ($(grep -o 'Ran [0-9]* tests' "$T/unit.log"))" \
    || { cat "$T/unit.log"; fail "fleet/test_ops.py unit tests"; }

if [ -z "${HOST_SKYWIRE_BIN:-}" ]; then
    (cd "$REPO" && swift build --product skywire >&2)
    HOST_SKYWIRE_BIN=$(cd "$REPO" && swift build --show-bin-path)/skywire
fi
export HOST_SKYWIRE_BIN
"$HOST_SKYWIRE_BIN" config gen -o "$T/probe.json" >/dev/null 2>&1 && jq -e '.sk | test("^[0-9a-f]{128}$")' "$T/probe.json" >/dev/null \
    || die "$HOST_SKYWIRE_BIN has no working 'config gen' (set HOST_SKYWIRE_BIN to a real skywire build)"
for t in jq mtype mcopy sfdisk xz; do command -v "$t" >/dev/null || die "$t missing (image/host-deps.sh installs it)"; done

OUT=$T/out
ssh-keygen -q -t ed25519 -N '' -C fleet-test -f "$T/id_ed25519"
SSH_PUB=$(cat "$T/id_ed25519.pub")
EXIT_ADDR_STCPR=198.51.100.7:7777 EXIT_ADDR_SUDPH=198.51.100.7:7778

# manifest DEVICES_JSON_ARRAY -> $T/fleet.json
write_manifest() {
    jq -n --arg key "$SSH_PUB" --arg board "$BOARD" --argjson devs "$1" \
        '{fleet: "test", defaults: {board: $board, ssh_authorized_keys: [$key]}, devices: $devs}' >"$T/fleet.json"
}
BASE_DEVICES=$(jq -nc --arg s "$EXIT_ADDR_STCPR" --arg u "$EXIT_ADDR_SUDPH" '[
    {name: "exit-1", role: "exit", hostname: "exit-berlin-1", address: {stcpr: $s, sudph: $u}},
    {name: "gw-1", role: "gateway"},
    {name: "client-1", role: "client"}]')
run_fleet() { "$FLEET" "$T/fleet.json" -o "$OUT" "$@"; }

# Reads skywire-provision.json back out of a device image (.img.xz) with mtools:
# only the disk's head up to the end of the FAT partition is decompressed.
read_provision() { # $1 = image, prints the file
    local img=$1 head=$T/head.img size start nsec
    size=$(xz --robot -l "$img" | awk '$1 == "totals" { print $5 }')
    rm -f "$head"
    { xz -dc "$img" 2>/dev/null || true; } | head -c $((1 << 20)) >"$head"
    truncate -s "$size" "$head"
    read -r start nsec < <(sfdisk -J "$head" 2>/dev/null | jq -r '.partitiontable.partitions[0] | "\(.start) \(.size)"')
    rm -f "$head"
    { xz -dc "$img" 2>/dev/null || true; } | head -c $(((start + nsec) * 512)) >"$head"
    mtype -i "$head@@$((start * 512))" ::/skywire-provision.json
    rm -f "$head"
}
pk_of() { jq -r --arg n "$1" '.devices[] | select(.name == $n) | .pk' "$OUT/inventory.json"; }
img_of() { echo "$OUT/$(jq -r --arg n "$1" '.devices[] | select(.name == $n) | .image' "$OUT/inventory.json")"; }
# Reads every device's provisioning file from its image into $T/prov/<name>.json.
read_all() {
    rm -rf "$T/prov"; mkdir -p "$T/prov"
    local n
    for n in $(jq -r '.devices[].name' "$OUT/inventory.json"); do
        read_provision "$(img_of "$n")" >"$T/prov/$n.json" || fail "cannot read skywire-provision.json from $n's image"
    done
}
wl() { jq -c '.whitelist' "$T/prov/$1.json"; }
sorted_pks() { printf '%s\n' "$@" | LC_ALL=C sort | jq -Rsc 'split("\n") | map(select(. != ""))'; }
# Every path with its mode and size, files also with their inode (rewritten files get new ones).
snapshot() { (cd "$OUT" && find . \( -type f -printf '%P %i %s %m\n' \) -o -printf '%P %m\n' | LC_ALL=C sort
              cat inventory.json keys/*) | sha256sum; }

# --- 1. first run ----------------------------------------------------------------
write_manifest "$BASE_DEVICES"
t0=$SECONDS
run_fleet >"$T/run1.log" 2>&1 || { cat "$T/run1.log"; die "first fleet run failed"; }
echo "test-fleet: first run (base image build/cache + 3 devices) took $((SECONDS - t0))s" >&2
grep -E 'image written|base image|preparing' "$T/run1.log" | sed 's/^/    /' >&2 || true
[ "$(jq '.devices | length' "$OUT/inventory.json")" = 3 ] && pass "inventory lists 3 devices" || fail "inventory: $(cat "$OUT/inventory.json")"
EXIT_PK=$(pk_of exit-1) GW_PK=$(pk_of gw-1) CLIENT_PK=$(pk_of client-1)
[ "$(stat -c %a "$OUT")" = 700 ] && [ "$(stat -c %a "$OUT/keys")" = 700 ] && pass "output and key directories are 0700" \
    || fail "directory modes: $(stat -c '%n %a' "$OUT" "$OUT/keys")"
bad_modes=$(find "$OUT" -name '*.sk' ! -perm 600; find "$OUT" \( -name '*.img.xz' -o -name 'skywire-provision.json' \) ! -perm 600)
[ -z "$bad_modes" ] && pass "secret keys, provisioning files and images are 0600" || fail "modes: $bad_modes"

read_all
ok=1
for n in exit-1 gw-1 client-1; do
    p=$T/prov/$n.json sk=$(cat "$OUT/keys/$n.sk")
    [ "$(jq -r .sk "$p")" = "$sk" ] && [ "${sk:64}" = "$(pk_of "$n")" ] || { ok=0; fail "$n: sk in the image is not keys/$n.sk / inventory pk"; }
    [ "$(jq -r '.ssh_authorized_keys[0]' "$p")" = "$SSH_PUB" ] || { ok=0; fail "$n: SSH key missing"; }
    # The image's own copy is the one fleet.py recorded.
    cmp -s "$p" "$OUT/devices/$n/skywire-provision.json" || { ok=0; fail "$n: image and devices/$n/skywire-provision.json differ"; }
    sha=$(sha256sum <"$(img_of "$n")" | cut -d' ' -f1)
    [ "$sha" = "$(jq -r --arg n "$n" '.devices[] | select(.name == $n) | .image_sha256' "$OUT/inventory.json")" ] \
        || { ok=0; fail "$n: image sha256 differs from inventory"; }
done
((ok)) && pass "each image holds its own secret key (keys/<name>.sk), the SSH key; sha256 matches inventory"
[ "$(jq -r .hostname "$T/prov/exit-1.json")" = exit-berlin-1 ] && [ "$(jq -r .hostname "$T/prov/gw-1.json")" = gw-1 ] \
    && pass "host names (explicit and defaulted to the name)" || fail "host names wrong"
[ "$(wl exit-1)" = "$(sorted_pks "$GW_PK" "$CLIENT_PK")" ] && pass "exit whitelists the gateway and the client" \
    || fail "exit whitelist $(wl exit-1)"
[ "$(wl gw-1)" = "$(sorted_pks "$CLIENT_PK")" ] && pass "gateway whitelists the client" || fail "gateway whitelist $(wl gw-1)"
[ "$(wl client-1)" = '[]' ] && pass "client whitelists nobody" || fail "client whitelist $(wl client-1)"
[ "$(jq -c .role "$T/prov/exit-1.json")" = '["vpn-exit","socks-proxy"]' ] && [ "$(jq -c .role "$T/prov/gw-1.json")" = '["socks-proxy"]' ] \
    && [ "$(jq -c .role "$T/prov/client-1.json")" = '"visor"' ] && pass "roles map to the overlay apps started" || fail "roles wrong"
want_peer=$(jq -nc --arg pk "$EXIT_PK" --arg s "$EXIT_ADDR_STCPR" --arg u "$EXIT_ADDR_SUDPH" '{($pk): {stcpr: $s, sudph: $u}}')
[ "$(jq -c .peers "$T/prov/client-1.json")" = "$want_peer" ] && [ "$(jq -c .peers "$T/prov/gw-1.json")" = "$want_peer" ] \
    && [ "$(jq -c '.peers // {}' "$T/prov/exit-1.json")" = '{}' ] \
    && pass "client and gateway get the exit's address as a static peer" || fail "peers: $(jq -c .peers "$T"/prov/*.json)"
raw_ok=1
for n in exit-1; do
    [ "$(xz -dc "$(img_of "$n")" | sha256sum | cut -d' ' -f1)" = "$(jq -r '.devices[0].image_raw_sha256' "$OUT/inventory.json")" ] || raw_ok=0
done
((raw_ok)) && xz -t "$(img_of client-1)" && pass "device image decompresses (xz -t) and its raw sha256 matches" || fail "raw image checksum"

# --- 2. re-run: idempotent ---------------------------------------------------------
before=$(snapshot)
keys_before=$(cat "$OUT"/keys/*.pk | sort)
t0=$SECONDS
run_fleet >"$T/run2.log" 2>&1 || { cat "$T/run2.log"; fail "second run failed"; }
echo "test-fleet: re-run (nothing changed) took $((SECONDS - t0))s" >&2
[ "$(cat "$OUT"/keys/*.pk | sort)" = "$keys_before" ] && pass "re-run keeps every key" || fail "keys changed on re-run"
[ "$(snapshot)" = "$before" ] && pass "re-run changes nothing (same files, same inodes, same inventory)" || fail "re-run changed the output"
grep -q 'new key' "$T/run2.log" && fail "re-run generated a key" || true

# --- 3. add a device ----------------------------------------------------------------
write_manifest "$(jq -c '. + [{name: "client-2", role: "client", hostname: "laptop-2"}]' <<<"$BASE_DEVICES")"
t0=$SECONDS
run_fleet >"$T/run3.log" 2>&1 || { cat "$T/run3.log"; fail "run with client-2 failed"; }
echo "test-fleet: adding one device took $((SECONDS - t0))s ($(grep -c 'image written' "$T/run3.log") images rewritten)" >&2
C2_PK=$(pk_of client-2)
[ "$(grep -c 'new key' "$T/run3.log")" = 1 ] && [ "$(pk_of exit-1)" = "$EXIT_PK" ] && [ "$(pk_of client-1)" = "$CLIENT_PK" ] \
    && pass "adding a device makes exactly one new key" || fail "keys after adding: $(grep 'new key' "$T/run3.log")"
read_all
[ "$(wl exit-1)" = "$(sorted_pks "$GW_PK" "$CLIENT_PK" "$C2_PK")" ] && [ "$(wl gw-1)" = "$(sorted_pks "$CLIENT_PK" "$C2_PK")" ] \
    && pass "exit and gateway images now whitelist client-2" || fail "whitelists after adding: exit $(wl exit-1) gw $(wl gw-1)"
grep -q 'client-1: image unchanged' "$T/run3.log" && pass "client-1's image was not rebuilt" || fail "client-1 rebuilt needlessly"

# --- 4. remove it again ----------------------------------------------------------------
write_manifest "$BASE_DEVICES"
run_fleet >"$T/run4.log" 2>&1 || { cat "$T/run4.log"; fail "run without client-2 failed"; }
read_all
[ "$(wl exit-1)" = "$(sorted_pks "$GW_PK" "$CLIENT_PK")" ] && [ "$(wl gw-1)" = "$(sorted_pks "$CLIENT_PK")" ] \
    && pass "removing client-2 takes it out of the whitelists" || fail "whitelists after removing: $(wl exit-1)"
[ ! -e "$OUT/devices/client-2" ] && [ ! -e "$OUT/keys/client-2.sk" ] && ls "$OUT"/archive/client-2-*/client-2.sk >/dev/null 2>&1 \
    && [ "$(jq '[.devices[].name] | index("client-2")' "$OUT/inventory.json")" = null ] \
    && pass "client-2's outputs removed, its key archived" || fail "client-2 not cleaned up: $(ls -R "$OUT" | head -n 30)"

# --- 4b. raw format: the same disks, as sparse .img files -----------------------------------
raw_want=$(jq -c '[.devices[] | .image_raw_sha256]' "$OUT/inventory.json")
run_fleet --format raw >"$T/run-raw.log" 2>&1 || { cat "$T/run-raw.log"; fail "--format raw failed"; }
ok=1
for n in exit-1 gw-1 client-1; do
    i=$(img_of "$n")
    [[ $i == *.img ]] && [ "$(sha256sum <"$i" | cut -d' ' -f1)" = "$(jq -r --arg n "$n" '.devices[] | select(.name == $n) | .image_raw_sha256' "$OUT/inventory.json")" ] \
        && mtype -i "$i@@$((2048 * 512))" ::/skywire-provision.json | cmp -s - "$OUT/devices/$n/skywire-provision.json" || ok=0
done
((ok)) && [ "$(jq -c '[.devices[] | .image_raw_sha256]' "$OUT/inventory.json")" = "$raw_want" ] \
    && pass "--format raw gives the same disks (sha256) with the same provisioning files" || fail "--format raw differs"
run_fleet >"$T/run-xz.log" 2>&1 || fail "back to xz failed"
[ -z "$(find "$OUT/devices" -name '*.img')" ] && pass "switching formats leaves no stale images" || fail "stale raw images left"

# --- 4c. closed by default: "trusts": [] refuses every key, only "trusts": "any" opens -------
# (provisioning files only, in a separate output tree)
jq '.devices[0].trusts = "any" | .devices[1].trusts = []' "$T/fleet.json" >"$T/any.json"
out=$("$FLEET" "$T/any.json" -o "$T/out-any" --no-images 2>&1) || fail "\"trusts\": \"any\" run failed: $out"
[ "$(jq -c .whitelist "$T/out-any/devices/exit-1/skywire-provision.json")" = '"any"' ] \
    && [ "$(jq -c '.devices[] | select(.name == "exit-1") | .whitelist' "$T/out-any/inventory.json")" = '"any"' ] \
    && pass "\"trusts\": \"any\" gives \"whitelist\": \"any\" (provisioning file and inventory)" \
    || fail "trusts any: $(cat "$T/out-any/devices/exit-1/skywire-provision.json" 2>/dev/null)"
[ "$(jq -c .whitelist "$T/out-any/devices/gw-1/skywire-provision.json")" = '[]' ] && pass "\"trusts\": [] gives an empty whitelist" \
    || fail "trusts []: $(jq -c .whitelist "$T/out-any/devices/gw-1/skywire-provision.json" 2>/dev/null)"
grep -qF '"exit-1".trusts: vpn-server: whitelist any: open to every visor key' <<<"$out" \
    && grep -qF '"gw-1".trusts: skysocks: whitelist empty: refuses every key' <<<"$out" \
    && pass "fleet warns about the exit open to every key and the gateway refusing every key" || fail "access warnings: $out"
# The operators' key in defaults.app_trusts.pty: every device's pty admits it (docs/fleet.md, "Operations").
OPK=$(printf 'ab%.0s' $(seq 32))
jq --arg k "$OPK" '.defaults.app_trusts = {pty: [$k]} | .devices[2].app_trusts = {pty: [$k, "gw-1"]}' "$T/fleet.json" >"$T/pty.json"
out=$("$FLEET" "$T/pty.json" -o "$T/out-pty" --no-images 2>&1) || fail "app_trusts.pty run failed: $out"
[ "$(jq -c .app_whitelists.pty "$T/out-pty/devices/exit-1/skywire-provision.json")" = "[\"$OPK\"]" ] \
    && [ "$(jq -c '.app_whitelists.pty | length' "$T/out-pty/devices/client-1/skywire-provision.json")" = 2 ] \
    && pass "defaults.app_trusts.pty gives every device the operator's key (a device's own entry replaces it)" \
    || fail "app_whitelists.pty: $(jq -c .app_whitelists "$T/out-pty/devices/"*/skywire-provision.json)"
[ "$(jq -c --arg pk "$(cat "$T/out-any/keys/exit-1.pk")" '.peers | has($pk)' "$T/out-any/devices/client-1/skywire-provision.json")" = true ] \
    && pass "an exit open to every key is every device's static peer" || fail "peers with trusts any: $(jq -c .peers "$T/out-any/devices/client-1/skywire-provision.json")"

# --- 5. manifest errors: reported with their place, nothing changed ------------------------
before=$(snapshot)
expect_error() { # $1 = label, $2 = manifest text, $3 = regex the error must match
    printf '%s\n' "$2" >"$T/bad.json"
    local out rc=0
    out=$("$FLEET" "$T/bad.json" -o "$OUT" 2>&1) || rc=$?
    if ((rc == 2)) && grep -qE "$3" <<<"$out" && [ "$(snapshot)" = "$before" ]; then
        pass "manifest error ($1) reported: $(grep -m1 'error:' <<<"$out" | sed 's/^fleet: error: //')"
    else
        fail "manifest error ($1): rc=$rc, output: $out"
    fi
}
good=$(jq --indent 2 . "$T/fleet.json")
expect_error "unknown board" "$(jq --indent 2 '.devices[1].board = "pi-zero"' <<<"$good")" \
    'bad\.json:[0-9]+: devices\[1\] "gw-1"\.board: unknown board "pi-zero"'
expect_error "duplicate name" "$(jq --indent 2 '.devices[2].name = "gw-1"' <<<"$good")" \
    'devices\[2\] "gw-1"\.name: duplicate device name .gw-1.'
expect_error "dangling trust" "$(jq --indent 2 '.devices[0].trusts = ["client-1", "client-9"]' <<<"$good")" \
    'bad\.json:[0-9]+: devices\[0\] "exit-1"\.trusts\[1\]: .client-9. names no device'
expect_error "any inside a trust list" "$(jq --indent 2 '.devices[0].trusts = ["any", "client-1"]' <<<"$good")" \
    'devices\[0\] "exit-1"\.trusts\[0\]: .any. \(every visor key\) stands alone'
expect_error "pty open to every key" "$(jq --indent 2 '.devices[0].app_trusts = {pty: "any"}' <<<"$good")" \
    'devices\[0\] "exit-1"\.app_trusts\.pty: pty is a root shell on the board: name its keys'
expect_error "bad role" "$(jq --indent 2 '.devices[2].role = "server"' <<<"$good")" \
    'devices\[2\] "client-1"\.role: "server" is not a role'
expect_error "missing field" "$(jq --indent 2 'del(.devices[1].role)' <<<"$good")" \
    'devices\[1\] "gw-1": missing field "role"'
expect_error "not JSON" "$(sed '$d' <<<"$good")" 'bad\.json:[0-9]+:[0-9]+: not valid JSON'
# A failure after validation (here: key generation) leaves the output as it was too.
jq '.devices += [{name: "client-3", role: "client"}]' "$T/fleet.json" >"$T/bad.json"
rc=0; out=$(HOST_SKYWIRE_BIN=/bin/false "$FLEET" "$T/bad.json" -o "$OUT" 2>&1) || rc=$?
((rc == 1)) && [ "$(snapshot)" = "$before" ] && [ -z "$(ls -d "$OUT".new-* 2>/dev/null)" ] \
    && pass "a failing key generation changes nothing: $(grep -m1 error: <<<"$out" | cut -c1-100)" || fail "failed run changed the output (rc=$rc): $out"
# Line numbers point at the offending value.
line=$(jq --indent 2 '.devices[1].board = "pi-zero"' <<<"$good" | grep -n '"pi-zero"' | cut -d: -f1)
printf '%s\n' "$(jq --indent 2 '.devices[1].board = "pi-zero"' <<<"$good")" >"$T/bad.json"
{ "$FLEET" "$T/bad.json" -o "$OUT" 2>&1 || true; } | grep -q "bad.json:$line: " && pass "error names the manifest line ($line)" \
    || fail "error line is not $line"

out=$("$FLEET" "$REPO/fleet/example-fleet.json" --check 2>&1) && pass "fleet/example-fleet.json (groups, app_trusts, outside keys) validates" \
    || fail "example manifest: $out"

# --- 6. boot the exit's image: the client is accepted, an outsider refused ---------------------
boot_check() {
    [ "$FLEET_BOOT_TEST" = 1 ] || { skip "boot check (FLEET_BOOT_TEST=0)"; return; }
    [ "$(id -u)" = 0 ] || { skip "boot check needs root (network namespace)"; return; }
    local img disk=$T/exit-disk.img ns=skyfleet$$ q serial=$T/serial.log
    img=$(img_of exit-1)
    xz -dc "$img" >"$disk"; truncate -s 3G "$disk"
    ip netns add "$ns"; NS=$ns
    ip -n "$ns" link set lo up
    # Private namespace: fixed ports, and a VPN client changing routes touches nothing outside.
    q=(qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg,thread=multi -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd
       -smp 2 -m 1024 -display none -monitor none -serial "file:$serial"
       -drive "if=none,id=hd0,format=raw,file=$disk" -device virtio-blk-pci,drive=hd0
       -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:7777-:7777,hostfwd=udp:127.0.0.1:7778-:7778"
       -device virtio-net-pci,netdev=n0,romfile= -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0)
    ip netns exec "$ns" "${q[@]}" >"$T/qemu.log" 2>&1 &
    local qpid=$!; PIDS+=("$qpid")
    local t0=$SECONDS deadline=$((SECONDS + BOOT_TIMEOUT))
    while ((SECONDS < deadline)) && kill -0 "$qpid" 2>/dev/null && ! grep -aqF "$EXIT_PK" "$serial" 2>/dev/null; do sleep 3; done
    if ! grep -aqF "$EXIT_PK" "$serial" 2>/dev/null; then
        fail "exit did not start its visor with its fleet key within ${BOOT_TIMEOUT}s; console:"; tail -n 30 "$serial" | sed 's/^/    | /'
        return
    fi
    pass "exit image booted with its fleet key $EXIT_PK ($((SECONDS - t0))s)"
    grep -a 'provision:\|apps:\|config:' "$serial" | head -n 20 | sed 's/^/    console| /'
    local SSH=(ip netns exec "$ns" ssh -i "$T/id_ed25519" -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no
               -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o LogLevel=ERROR root@127.0.0.1)
    deadline=$((SECONDS + SSH_TIMEOUT))
    until timeout 20 "${SSH[@]}" true 2>/dev/null; do
        ((SECONDS < deadline)) || { fail "SSH with the fleet's key did not answer"; return; }
        sleep 3
    done
    [ "$(timeout 20 "${SSH[@]}" hostname)" = exit-berlin-1 ] && pass "SSH with the manifest's key; host name exit-berlin-1" \
        || fail "host name on the exit is not exit-berlin-1"
    local cfg
    cfg=$(timeout 20 "${SSH[@]}" cat /etc/skywire/skywire-config.json)
    local wl_cfg
    wl_cfg=$(jq -r '.launcher.apps[] | select(.name == "vpn-server") | .args[1] // ""' <<<"$cfg")
    [ "$wl_cfg" = "$(jq -r '.whitelist | join(",")' "$T/prov/exit-1.json")" ] && pass "exit's vpn-server whitelist is the fleet's client and gateway" \
        || fail "vpn-server args on the exit: $(jq -c '.launcher.apps' <<<"$cfg")"
    local help
    help=$(timeout 20 "${SSH[@]}" skywire cli --help 2>&1 || true)
    if ! grep -qw vpn <<<"$help"; then
        skip "VPN/SOCKS acceptance checks: the image's skywire has no 'cli vpn' (stand-in binary?)"
        return
    fi
    # A host-side visor in the namespace, dialing the exit over the forwarded stcpr port.
    host_visor() { # $1 = label, $2 = sk
        local c=$T/hv-$1.json
        "$HOST_SKYWIRE_BIN" config gen -o "$c" --force --sk "$2" --stcpr-port 0 --sudph-port 0 \
            --cli-addr "$T/hv-$1.sock" --state-dir "$T/hv-$1-state" >/dev/null 2>&1 || return 1
        jq --arg pk "$EXIT_PK" '.transport.peers[$pk] = {stcpr: "127.0.0.1:7777"}' "$c" >"$c.t" && mv "$c.t" "$c"
        chmod 600 "$c"
        ip netns exec "$ns" "$HOST_SKYWIRE_BIN" visor -c "$c" >"$T/hv-$1.log" 2>&1 &
        PIDS+=("$!")
        local i
        for i in $(seq 1 20); do [ -S "$T/hv-$1.sock" ] && return 0; sleep 0.5; done
        return 1
    }
    hcli() { local who=$1; shift; timeout "$CMD_TIMEOUT" ip netns exec "$ns" "$HOST_SKYWIRE_BIN" cli --rpc "$T/hv-$who.sock" "$@"; }
    "$HOST_SKYWIRE_BIN" config gen -o "$T/outsider.json" >/dev/null 2>&1
    host_visor outsider "$(jq -r .sk "$T/outsider.json")" || { fail "host visor (outsider) did not start: $(tail -n 5 "$T/hv-outsider.log")"; return; }
    host_visor client "$(cat "$OUT/keys/client-1.sk")" || { fail "host visor (client-1) did not start: $(tail -n 5 "$T/hv-client.log")"; return; }
    local out rc
    rc=0; out=$(hcli outsider vpn start -k "$EXIT_PK" -t 30 2>&1) || rc=$?
    if ((rc != 0)) && grep -qi forbidden <<<"$out"; then pass "VPN exit refuses a key from outside the fleet (forbidden)"
    else fail "VPN exit and the outsider: rc=$rc $out"; fi
    rc=0; out=$(hcli client vpn start -k "$EXIT_PK" -t 30 2>&1) || rc=$?
    if ((rc == 0)); then pass "VPN exit accepts the fleet's client-1"
    else fail "VPN exit refused client-1: $out"; fi
    hcli client vpn status 2>&1 | sed 's/^/    vpn status| /' || true
    hcli client vpn stop >/dev/null 2>&1 || true
    # SOCKS: a page in the namespace, fetched by the guest (10.0.2.2 = the namespace's loopback).
    mkdir -p "$T/www"; echo "fleet-test-$EXIT_PK" >"$T/www/index.html"
    ip netns exec "$ns" timeout 300 python3 -m http.server 8080 --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 &
    PIDS+=("$!")
    hcli client proxy start -k "$EXIT_PK" --addr 127.0.0.1:1080 -t 30 >/dev/null 2>&1 || true
    hcli outsider proxy start -k "$EXIT_PK" --addr 127.0.0.1:1081 -t 30 >/dev/null 2>&1 || true
    sleep 1
    if ip netns exec "$ns" curl -fsS --max-time 30 --socks5-hostname 127.0.0.1:1080 http://10.0.2.2:8080/ 2>/dev/null | grep -qF "$EXIT_PK"; then
        pass "SOCKS server on the exit serves client-1"
    else
        fail "SOCKS fetch through the exit as client-1 failed"
    fi
    # The outsider's local SOCKS listener must be up, so that a failed fetch is the exit's refusal.
    if ! timeout 5 ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/1081' 2>/dev/null; then
        fail "the outsider's local SOCKS proxy did not start (cannot test the exit's refusal)"
    elif ip netns exec "$ns" curl -fsS --max-time 30 --socks5-hostname 127.0.0.1:1081 http://10.0.2.2:8080/ >/dev/null 2>&1; then
        fail "SOCKS server on the exit served a key from outside the fleet"
    else
        pass "SOCKS server on the exit refuses a key from outside the fleet"
    fi
    if ((FAIL)); then
        echo "    --- exit's visor log:"; timeout 20 "${SSH[@]}" journalctl -u skywire -n 40 --no-pager 2>&1 | sed 's/^/    | /'
        for who in outsider client; do echo "    --- host visor $who:"; tail -n 15 "$T/hv-$who.log" | sed 's/^/    | /'; done
    fi
    timeout 20 "${SSH[@]}" systemctl poweroff >/dev/null 2>&1 || true
}
boot_check

echo "test-fleet: $PASS passed, $FAIL failed, $SKIP skipped"
((FAIL == 0))
exit
}
