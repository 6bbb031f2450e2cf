#!/usr/bin/env bash
# image/boot-test.sh: boots a board image under QEMU with a test
# skywire-provision.json and checks it from outside the guest.
#
#   image/boot-test.sh [IMAGE.img.xz]     (default: out/$BOARD/skywire-$BOARD-latest.img.xz)
#
# Environment:
#   BOARD=qemu-arm64|qemu-arm64-ab|x86-64   which QEMU machine to use (default qemu-arm64)
#   BOOT_TIMEOUT=420          seconds to wait for the visor to log its key
#   SSH_TIMEOUT=120           seconds to wait for SSH after that
#   CHECK_PORTS=1             require the visor's stcpr port (7777/tcp) to accept connections
#   DEEP_CHECKS=1             VPN exit and SOCKS5 checks through the board (default when
#                             HOST_SKYWIRE_BIN is set; 0 turns them off)
#   HOST_SKYWIRE_BIN=path     host (x86-64) skywire used as the client visor for DEEP_CHECKS
#   KEEP_TEST_DIR=1           keep the work directory (disk, serial log)
#   OVERLAYS=base,gateway     the image's overlays (default: the overlays= line of the image's
#                             .manifest, else the board's default). With `gateway` the guest gets a
#                             second NIC (its LAN) on a tap device in a network namespace with a
#                             LAN client, and the gateway checks run (docs/boards.md)
#   USE_KVM=auto              x86-64 only: KVM when /dev/kvm is usable (tried first), else TCG;
#                             0: TCG; 1: KVM or fail (image/testing/qemu-machine.sh)
# Every wait is bounded. Exit status 0 only when every enabled check passed.
set -euo pipefail
# The whole script is one compound command, so bash parses it completely before running:
# editing this file while a build runs cannot change the running build.
{
export LC_ALL=C.UTF-8 TZ=UTC
REPO=$(cd "$(dirname "$0")/.." && pwd)
BOARD=${BOARD:-qemu-arm64}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-420}
SSH_TIMEOUT=${SSH_TIMEOUT:-120}
SHUTDOWN_TIMEOUT=60
CHECK_PORTS=${CHECK_PORTS:-1}
# Deep checks (VPN exit and SOCKS5 through the board) run by default when a host build of
# skywire is available (HOST_SKYWIRE_BIN); DEEP_CHECKS=0 turns them off.
DEEP_CHECKS=${DEEP_CHECKS:-1}
[ -x "${HOST_SKYWIRE_BIN:-}" ] || DEEP_CHECKS=0
POLL_SECONDS=2
GUEST_MEM_MIB=1024
GUEST_CPUS=2                 # the build host has 2 cores; never more
DISK_GROW_TO=3G              # the test disk is at least this (root must grow; A/B images stay as they are)
IMAGE=${1:-$REPO/out/$BOARD/skywire-$BOARD-latest.img.xz}
# The gateway's LAN: a second virtio-net NIC at a fixed PCI slot, so its predictable name is known
# before the boot (the image keeps systemd's predictable names: enp0s8; the test checks it).
GW_LAN_SLOT=8 GW_LAN=enp0s8 GW_LAN_MAC=52:54:00:5c:00:08
GW_SUBNET=192.168.50.1/24 GW_ADDR=192.168.50.1 GW_CLIENT=192.168.50.20

PASS=0 FAIL=0 SKIP=0
pass() { PASS=$((PASS + 1)); echo "PASS: $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
skip() { SKIP=$((SKIP + 1)); echo "SKIP: $*"; }
die()  { echo "boot-test: $*" >&2; exit 1; }

QEMU_PID=""
T=$(mktemp -d /tmp/skywire-boot-test.XXXXXX)
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" 2>/dev/null || true; fi
    [ -n "${HOST_VISOR_PID:-}" ] && kill "$HOST_VISOR_PID" 2>/dev/null || true
    if [ -n "${HOST_NS:-}" ]; then ip netns del "$HOST_NS" 2>/dev/null || true; ip link del "skwbt$$h" 2>/dev/null || true; fi
    [ -n "${HTTP_PID:-}" ] && kill "$HTTP_PID" 2>/dev/null || true
    if [ -n "${LAN_NS:-}" ]; then ip netns del "$LAN_NS" 2>/dev/null || true; ip link del "$LAN_TAP" 2>/dev/null || true; fi
    if [ -n "${KEEP_TEST_DIR:-}" ]; then echo "boot-test: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

[ -f "$IMAGE" ] || die "no image $IMAGE: run 'make image BOARD=$BOARD' first"
MANIFEST=$(readlink -f "$IMAGE"); MANIFEST=${MANIFEST%.img.xz}.manifest
IMAGE_OVERLAYS=${OVERLAYS:-$(sed -n 's/^overlays=//p' "$MANIFEST" 2>/dev/null)}
IMAGE_OVERLAYS=${IMAGE_OVERLAYS:-$(sed -n 's/^DEFAULT_OVERLAYS="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/board-configs/$BOARD.conf")}
has_overlay() { [[ ",$IMAGE_OVERLAYS," == *",$1,"* ]]; }
GATEWAY=0; has_overlay gateway && GATEWAY=1
echo "boot-test: image overlays: $IMAGE_OVERLAYS" >&2
"$REPO/image/host-deps.sh"

# --- keys ---------------------------------------------------------------------
. "$REPO/image/testing/boot-lib.sh"     # ed25519_pair, elapsed, wait_visor_key
read -r VISOR_SK VISOR_PK < <(ed25519_pair)
read -r _ WL_PK1 < <(ed25519_pair)
read -r WL_CLIENT_SK WL_PK2 < <(ed25519_pair)
read -r STRANGER_SK STRANGER_PK < <(ed25519_pair)
ssh-keygen -q -t ed25519 -N '' -C skywire-boot-test -f "$T/id_ed25519"
TEST_HOSTNAME=skywire-boot-test
jq -n --arg sk "$VISOR_SK" --arg w1 "$WL_PK1" --arg w2 "$WL_PK2" --arg key "$(cat "$T/id_ed25519.pub")" \
      --arg host "$TEST_HOSTNAME" --argjson gw "$GATEWAY" --arg lan "$GW_LAN" --arg sub "$GW_SUBNET" '{
    version: 1, hostname: $host, ssh_authorized_keys: [$key], sk: $sk,
    role: "all", whitelist: [$w1, $w2], app_whitelists: {pty: [$w2]}, log_level: "info" }
    + (if $gw == 1 then {gateway: {lan: $lan, lan_subnet: $sub}} else {} end)' >"$T/skywire-provision.json"

# --- disk ---------------------------------------------------------------------
echo "boot-test: preparing disk from $IMAGE" >&2
xz -dc "$IMAGE" >"$T/disk.img"
RAW_SIZE=$(stat -c %s "$T/disk.img")
truncate -s ">$DISK_GROW_TO" "$T/disk.img"     # never smaller: an A/B x86-64 image is larger
boot_start=$(sfdisk -J "$T/disk.img" 2>/dev/null | jq '.partitiontable.partitions[0].start') \
    || die "cannot read the partition table of $IMAGE"
BOOT_OFFSET=$((boot_start * 512))
# scan_boot_partition [baseline]: the raw bytes of the boot partition (deleted files and free
# clusters included, which mtools never shows) searched for secret key material. Prints
# "<new runs> <visor key forms found>": the number of distinct runs of 128 or more hex digits
# (the "sk" form of skywire-provision.json, any key) that are not in the image as shipped
# (the kernel holds a few test strings such as 0123456789…; `baseline` saves the runs of the
# image before the provisioning file is added), and which forms of the visor key appear: hex
# key, hex seed half (either case), raw seed bytes.
scan_boot_partition() {
    python3 - "$T/disk.img" "$BOOT_OFFSET" "$BOOT_SIZE" "$VISOR_SK" "$T/boot-hex-runs" "${1:-}" <<'PY'
import re, sys
path, off, size, sk, runs_file, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
with open(path, "rb") as f:
    f.seek(off)
    data = f.read(size)
runs = set(re.findall(rb"[0-9a-fA-F]{128,}", data))
if mode == "baseline":
    with open(runs_file, "wb") as f:
        f.write(b"\n".join(sorted(runs)))
    print(len(runs), "-")
    sys.exit(0)
with open(runs_file, "rb") as f:
    shipped = set(f.read().split(b"\n"))
seed = sk[:64]
forms = [n for n, b in (("hex-sk", sk.encode()), ("hex-seed", seed.encode()), ("HEX-seed", seed.upper().encode()),
                        ("raw-seed", bytes.fromhex(seed))) if b in data]
print(len(runs - shipped), ",".join(forms) or "none")
PY
}
BOOT_SIZE=$(( $(sfdisk -J "$T/disk.img" | jq '.partitiontable.partitions[0].size') * 512 ))
read -r BOOT_RUNS_SHIPPED _ < <(scan_boot_partition baseline)
export MTOOLS_SKIP_CHECK=1
mcopy -o -i "$T/disk.img@@$BOOT_OFFSET" "$T/skywire-provision.json" ::/skywire-provision.json \
    || die "mcopy into the FAT boot partition failed"
echo "boot-test: wrote skywire-provision.json (visor pk $VISOR_PK) into the boot partition" >&2
read -r BOOT_RUNS_BEFORE BOOT_FORMS_BEFORE < <(scan_boot_partition)
# Control: the scan does see the key that mcopy put there (else the final check proves nothing).
[[ ,$BOOT_FORMS_BEFORE, == *,hex-sk,* ]] && [ "$BOOT_RUNS_BEFORE" = 1 ] \
    && pass "control: a raw scan of the boot partition finds the provisioned key before the boot (1 run of 128+ hex digits besides the $BOOT_RUNS_SHIPPED the image ships; $BOOT_FORMS_BEFORE)" \
    || fail "control: the raw scan does not find the key just written ($BOOT_RUNS_BEFORE new runs, $BOOT_FORMS_BEFORE)"

# --- boot ---------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSH_PORT=$(free_port) STCPR_PORT=$(free_port) SUDPH_PORT=$(free_port)
NETDEV="user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$STCPR_PORT-:7777,hostfwd=udp:127.0.0.1:$SUDPH_PORT-:7778"
# DEEP_CHECKS: the host-side client visor runs in its own network namespace (a VPN client
# changes routes; never on the host itself), joined to the host by a veth; QEMU also
# forwards the guest's stcpr port on the host end of that veth.
HOST_NS="" NS_HOST_IP=10.98.$((RANDOM % 200 + 20)).1 NS_IP=""
if [ "$DEEP_CHECKS" = 1 ]; then
    HOST_NS=skwbt$$
    NS_IP=${NS_HOST_IP%.1}.2
    ip netns add "$HOST_NS"
    ip link add "skwbt$$h" type veth peer name eth0 netns "$HOST_NS"
    ip addr add "$NS_HOST_IP/30" dev "skwbt$$h"
    ip link set "skwbt$$h" up
    ip -n "$HOST_NS" addr add "$NS_IP/30" dev eth0
    ip -n "$HOST_NS" link set eth0 up
    ip -n "$HOST_NS" link set lo up
    ip -n "$HOST_NS" route add default via "$NS_HOST_IP"
    NETDEV="$NETDEV,hostfwd=tcp:$NS_HOST_IP:$STCPR_PORT-:7777"
fi
. "$REPO/image/testing/qemu-machine.sh"
qemu_machine "$BOARD" "$T" || die "BOARD=$BOARD cannot be booted under QEMU here (see above)"
QEMU=("${QEMU_MACHINE[@]}"
       -smp "$GUEST_CPUS" -m "$GUEST_MEM_MIB" -display none -monitor none -serial "file:$T/serial.log"
       -drive "if=none,id=hd0,format=raw,file=$T/disk.img" -device virtio-blk-pci,drive=hd0
       -netdev "$NETDEV" -device virtio-net-pci,netdev=n0,romfile=
       -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0)
# gateway: the LAN NIC is a tap device made here, attached by QEMU, then moved into the network
# namespace $LAN_NS, where a LAN client (static $GW_CLIENT, default route via the gateway) lives.
LAN_NS="" LAN_TAP=""
if [ "$GATEWAY" = 1 ]; then
    LAN_TAP=skwgw$$ LAN_NS=skwgwl$$
    ip tuntap add dev "$LAN_TAP" mode tap
    ip netns add "$LAN_NS"
    QEMU+=(-netdev "tap,id=n1,ifname=$LAN_TAP,script=no,downscript=no"
           -device "virtio-net-pci,netdev=n1,romfile=,mac=$GW_LAN_MAC,addr=$GW_LAN_SLOT")
fi
echo "boot-test: ${QEMU[*]}" >"$T/qemu.cmd"
T0=$(date +%s.%N)
"${QEMU[@]}" >"$T/qemu.log" 2>&1 &
QEMU_PID=$!
echo "boot-test: QEMU pid $QEMU_PID, ssh 127.0.0.1:$SSH_PORT, stcpr 127.0.0.1:$STCPR_PORT, sudph 127.0.0.1:$SUDPH_PORT" >&2
if [ "$GATEWAY" = 1 ]; then
    # Moved only once QEMU holds it (its tun fd names the interface), so QEMU cannot make its own.
    attached=""
    for _ in $(seq 1 50); do
        grep -qs "^iff:[[:space:]]*$LAN_TAP\$" /proc/"$QEMU_PID"/fdinfo/* && { attached=1; break; }
        kill -0 "$QEMU_PID" 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$attached" ] || die "QEMU did not attach the LAN tap $LAN_TAP: $(head -n 3 "$T/qemu.log")"
    ip link set "$LAN_TAP" netns "$LAN_NS"
    ip -n "$LAN_NS" link set lo up
    ip -n "$LAN_NS" link set "$LAN_TAP" up
    ip -n "$LAN_NS" addr add "$GW_CLIENT/${GW_SUBNET#*/}" dev "$LAN_TAP"
    ip -n "$LAN_NS" route add default via "$GW_ADDR"
    echo "boot-test: LAN tap $LAN_TAP in netns $LAN_NS (client $GW_CLIENT)" >&2
fi

wait_visor_key "$VISOR_PK" "$T/serial.log" "$T/qemu.log" "$QEMU_PID" "$BOOT_TIMEOUT" "$POLL_SECONDS" || true
if [ -n "$READY_S" ]; then
    pass "visor started with the provisioned public key (serial console), ${READY_S}s after QEMU start"
else
    fail "visor did not log the provisioned pk $VISOR_PK within ${BOOT_TIMEOUT}s; last console lines:"
    tail -n 25 "$T/serial.log" | sed 's/^/    | /'
fi
grep -a 'skywire-setup\|provision:\|config:\|apps:\|grow-root:\|ssh-host-keys:\|gateway:' "$T/serial.log" | sed 's/^/    console| /' | head -n 30 || true
grep -aq 'ERROR' <(grep -a 'provision:\|config:\|apps:\|gateway:' "$T/serial.log") \
    && fail "skywire-setup reported errors on the console (see above)" || pass "skywire-setup reported no errors"

# --- checks over SSH ------------------------------------------------------------
# The visor's sandbox (skywire.service, docs/boards.md "skywire.service sandbox"): the running
# visor holds only its capabilities (CAP_NET_ADMIN; with the gateway overlay also what its
# dnsmasq needs), no new privileges, a seccomp filter, and sees /etc and /usr read-only but its
# state directory writable. The unit's `systemd-analyze security` exposure is reported.
CAP_SETGID=6 CAP_SETUID=7 CAP_NET_BIND_SERVICE=10 CAP_NET_ADMIN=12 CAP_NET_RAW=13
check_sandbox() {
    local pid st bits want v
    bits=$((1 << CAP_NET_ADMIN))
    [ "$GATEWAY" = 1 ] && bits=$((bits | 1 << CAP_NET_BIND_SERVICE | 1 << CAP_NET_RAW | 1 << CAP_SETUID | 1 << CAP_SETGID))
    want=$(printf '%016x' "$bits")
    pid=$(gssh systemctl show -P MainPID skywire.service 2>/dev/null)
    st=$(gssh cat "/proc/${pid:-0}/status" 2>/dev/null || true)
    v=$(awk '/^(CapBnd|CapEff|CapPrm|NoNewPrivs|Seccomp):/ { printf "%s %s ", $1, $2 }' <<<"$st")
    [ "$v" = "CapPrm: $want CapEff: $want CapBnd: $want NoNewPrivs: 1 Seccomp: 2 " ] \
        && pass "visor (pid $pid) sandboxed: capabilities $want only, no new privileges, seccomp filter" \
        || fail "visor (pid ${pid:-?}) sandbox: want CapPrm/CapEff/CapBnd $want, NoNewPrivs 1, Seccomp 2; got: ${v:-no status}"
    v=$(gssh "nsenter -t $pid -m sh -c 'touch /etc/skwbt-probe /usr/skwbt-probe 2>&1; touch /var/lib/skywire/skwbt-probe && rm /var/lib/skywire/skwbt-probe && echo state-ok'" 2>&1 || true)
    [ "$(grep -c 'Read-only file system' <<<"$v")" = 2 ] && grep -q state-ok <<<"$v" \
        && pass "visor's mount namespace: /etc and /usr read-only, /var/lib/skywire writable" \
        || fail "visor's file system view is not as the unit says: $v"
    v=$(gssh 'systemd-analyze security skywire.service --no-pager 2>&1 | tail -n 1' 2>/dev/null || true)
    echo "boot-test: systemd-analyze security: ${v:-not available}"
}

SSH=(ssh -i "$T/id_ed25519" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no
     -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o LogLevel=ERROR root@127.0.0.1)
gssh() { timeout 30 "${SSH[@]}" "$@"; }
SSH_OK=""
deadline=$((SECONDS + SSH_TIMEOUT))
while ((SECONDS < deadline)) && kill -0 "$QEMU_PID" 2>/dev/null; do
    if gssh true 2>/dev/null; then SSH_OK=$(elapsed); break; fi
    sleep "$POLL_SECONDS"
done
if [ -z "$SSH_OK" ]; then
    fail "SSH with the provisioned key did not answer within ${SSH_TIMEOUT}s"
else
    pass "SSH login with the provisioned key (${SSH_OK}s after QEMU start)"
    pw=$(timeout 20 ssh -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no root@127.0.0.1 true 2>&1 || true)
    [[ $pw == *"Permission denied (publickey)"* ]] && pass "SSH offers public-key authentication only" \
        || fail "SSH password authentication not refused as expected: $pw"
    [ "$(gssh cat /proc/sys/kernel/hostname)" = "$TEST_HOSTNAME" ] && pass "hostname provisioned" \
        || fail "hostname is not $TEST_HOSTNAME"
    [ "$(gssh systemctl is-active skywire.service)" = active ] && pass "skywire.service active" \
        || fail "skywire.service not active: $(gssh systemctl status --no-pager -n 20 skywire.service 2>&1 | tail -n 20)"
    check_sandbox
    for u in systemd-timesyncd ssh systemd-networkd; do
        [ "$(gssh systemctl is-active "$u")" = active ] && pass "$u active" || fail "$u not active"
    done
    cfg=$(gssh cat /etc/skywire/skywire-config.json 2>/dev/null || echo '{}')
    [ "$(jq -r .pk <<<"$cfg")" = "$VISOR_PK" ] && pass "config holds the provisioned pk" || fail "config pk is $(jq -r .pk <<<"$cfg")"
    for app in vpn-exit:vpn-server:44 socks-proxy:skysocks:3; do
        overlay=${app%%:*} app=${app#*:}
        has_overlay "$overlay" || continue
        name=${app%%:*} port=${app##*:}
        e=$(jq -c --arg n "$name" '.launcher.apps[]? | select(.name == $n)' <<<"$cfg")
        if [ -n "$e" ] && [ "$(jq -r '.auto_start' <<<"$e")" = true ] && [ "$(jq -r .port <<<"$e")" = "$port" ] \
           && [ "$(jq -r '.args | join(" ")' <<<"$e")" = "--whitelist $WL_PK1,$WL_PK2" ]; then
            pass "launcher.apps has $name (port $port, auto_start, provisioned whitelist)"
        else
            fail "launcher.apps entry for $name wrong: ${e:-missing}"
        fi
        # Closed by default (issue 16): the boot log says whom the app admits.
        grep -aqF "apps: $name: auto-start, whitelist 2 key(s)" "$T/serial.log" \
            && pass "boot log: $name admits the 2 provisioned keys" \
            || fail "boot log lacks \"apps: $name: auto-start, whitelist 2 key(s)\": $(grep -a "apps:" "$T/serial.log" | head -n 5)"
    done
    [ "$(gssh stat -c %a /etc/skywire/skywire-config.json)" = 600 ] && pass "config is mode 0600" || fail "config mode not 0600"
    gssh 'test ! -e /boot/firmware/skywire-provision.json && test -e /boot/firmware/skywire-provision.applied.json' \
        && pass "provision file renamed to skywire-provision.applied.json" || fail "provision file not renamed"
    gssh "! grep -qF $VISOR_SK /boot/firmware/skywire-provision.applied.json && ! grep -rqF $VISOR_SK /var/lib/skywire /etc/skywire/provisioned.json" \
        && pass "secret key gone from the boot partition and the provisioning state" || fail "secret key still on disk outside the config"
    root_kib=$(gssh df -k --output=size / | tail -n1 | tr -d ' ')
    if gssh 'grep -q rauc.slot= /proc/cmdline'; then
        # A/B (docs/update.md): the slots keep their size.
        gssh 'journalctl -b -u skywire-setup --no-pager | grep -q "not the last partition"' \
            && pass "A/B: root slot not grown (${root_kib} KiB)" || fail "A/B: grow-root did not skip the root slot"
    else
        ((root_kib * 1024 > RAW_SIZE)) && pass "root filesystem grown to $((root_kib / 1024)) MiB (image was $((RAW_SIZE / 1048576)) MiB)" \
            || fail "root filesystem not grown (${root_kib} KiB)"
    fi
    if ! has_overlay vpn-exit; then
        :
    elif gssh skywire --version 2>/dev/null | grep -q fake; then
        skip "vpn-server forwarding/NAT checks (the image runs the fake stand-in)"
    else
        gssh 'sysctl -n net.ipv4.ip_forward' | grep -qx 1 && pass "IPv4 forwarding on (vpn-server app)" || fail "IPv4 forwarding off"
        gssh 'nft list table inet skywire_vpn_server' >/dev/null 2>&1 && pass "vpn-server NAT table skywire_vpn_server loaded" \
            || fail "vpn-server NAT table missing: $(gssh skywire cli apps ls 2>&1 | tail -n 5)"
    fi
    gssh 'ls /etc/ssh/ssh_host_ed25519_key' >/dev/null 2>&1 && pass "SSH host key generated on the board" || fail "no SSH host key"
fi

if [ -n "$SSH_OK" ] && gssh skywire --version 2>/dev/null | grep -q 'fake'; then
    echo "boot-test: the image runs image/testing/fake-skywire (a stand-in that opens no ports)" >&2
    CHECK_PORTS=0
fi
if [ "$CHECK_PORTS" = 1 ]; then
    if timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$STCPR_PORT" 2>/dev/null; then
        pass "stcpr port 7777/tcp accepts connections (host port $STCPR_PORT)"
    else
        fail "stcpr port 7777/tcp does not accept connections (CHECK_PORTS=0 to skip)"
    fi
else
    skip "stcpr port check (CHECK_PORTS=0)"
fi

# --- deeper checks (VPN exit, SOCKS5) -------------------------------------------
# These need a second visor on the host (HOST_SKYWIRE_BIN, x86-64 build) that
# connects to the guest over the forwarded stcpr port, and CLI commands that
# the visor gains with the VPN/SOCKS apps.
deep_supported() { # $1 = cli subcommand (vpn|proxy)
    local help
    help=$(gssh skywire cli --help 2>&1 || true)
    # swift-argument-parser lists subcommands indented under SUBCOMMANDS.
    grep -qE "^[[:space:]]+$1([[:space:]]|\$)" <<<"$help"
}
start_host_visor() { # $1 = sk hex, $2 = label: a client visor in $HOST_NS peered with the guest
    [ -x "${HOST_SKYWIRE_BIN:-}" ] || return 1
    "$HOST_SKYWIRE_BIN" config gen --force -o "$T/host-$2.json" --sk-file - --cli-addr "$T/host-$2.sock" \
        --state-dir "$T/state-$2" <<<"$1" >/dev/null || return 1
    jq --arg pk "$VISOR_PK" --arg a "$NS_HOST_IP:$STCPR_PORT" \
       '.transport.peers[$pk] = {stcpr: $a} | .transport.stcpr_port = 0 | .transport.sudph_port = 0' \
       "$T/host-$2.json" >"$T/host-$2.json.t" && install -m 600 "$T/host-$2.json.t" "$T/host-$2.json"
    ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" visor -c "$T/host-$2.json" >"$T/host-$2.log" 2>&1 &
    HOST_VISOR_PID=$!
    local i
    for i in $(seq 1 50); do
        "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-$2.sock" visor info >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
stop_host_visor() {
    [ -n "${HOST_VISOR_PID:-}" ] || return 0
    kill "$HOST_VISOR_PID" 2>/dev/null || true
    wait "$HOST_VISOR_PID" 2>/dev/null || true
    HOST_VISOR_PID=""
}
hcli() { local label=$1; shift; ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-$label.sock" "$@"; }
check_vpn_exit() {
    deep_supported vpn || { skip "VPN exit check: the image's skywire has no 'skywire cli vpn'"; return; }
    [ -x "${HOST_SKYWIRE_BIN:-}" ] || { skip "VPN exit check: set HOST_SKYWIRE_BIN to a host skywire build"; return; }
    local out
    start_host_visor "$STRANGER_SK" stranger || { fail "cannot start the host-side visor"; return; }
    out=$(timeout 60 ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-stranger.sock" vpn start -k "$VISOR_PK" -t 30 2>&1) \
        && fail "VPN exit accepted a non-whitelisted key: $out" \
        || { grep -qi forbidden <<<"$out" && pass "VPN exit refused a non-whitelisted key: $out" \
             || fail "VPN start failed, but not as forbidden: $out"; }
    stop_host_visor
    start_host_visor "$WL_CLIENT_SK" client || { fail "cannot start the host-side visor"; return; }
    if out=$(timeout 60 ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-client.sock" vpn start -k "$VISOR_PK" -t 30 2>&1); then
        st=$(hcli client vpn status --json 2>&1 || true)
        [ "$(jq -r '.info.state // .state // empty' <<<"$st" 2>/dev/null)" = connected ] \
            && pass "VPN exit accepted a whitelisted key (tunnel $(jq -r '.info.tunnel_ip // .info.client_ip // empty' <<<"$st"))" \
            || fail "VPN started but status is not connected: $st"
    else
        fail "VPN exit refused a whitelisted key: $out"
    fi
    hcli client vpn stop >/dev/null 2>&1 || true
    stop_host_visor
}
check_socks_proxy() {
    deep_supported proxy || { skip "SOCKS5 check: the image's skywire has no 'skywire cli proxy'"; return; }
    [ -x "${HOST_SKYWIRE_BIN:-}" ] || { skip "SOCKS5 check: set HOST_SKYWIRE_BIN to a host skywire build"; return; }
    # A page served by the test on the host; the guest reaches the host's loopback as 10.0.2.2,
    # a private (RFC 1918) address: the board's skysocks runs with --secure (the default), so it
    # must refuse it with reply 2 and count the refusal (docs/socks.md), the SOCKS dialogue having
    # crossed the mesh to the board.
    mkdir -p "$T/www"; echo "skywire-boot-test-$VISOR_PK" >"$T/www/index.html"
    local http=$(free_port)
    timeout 300 python3 -m http.server "$http" --bind 127.0.0.1 --directory "$T/www" >"$T/http.log" 2>&1 &
    local http_pid=$! i page=""
    # The page must be served before the board is asked to fetch it.
    for i in $(seq 1 50); do curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$http/" 2>/dev/null && break; sleep 0.2; done
    start_host_visor "$WL_CLIENT_SK" client || { fail "cannot start the host-side visor"; kill $http_pid; return; }
    if ! hcli client proxy start -k "$VISOR_PK" -t 30 >"$T/proxy-start.log" 2>&1; then
        fail "cli proxy start failed: $(cat "$T/proxy-start.log"; tail -n 5 "$T/host-client.log")"
    else
        page=$(ip netns exec "$HOST_NS" curl -sS --max-time 60 --socks5-hostname 127.0.0.1:1080 \
               "http://10.0.2.2:$http/" 2>"$T/curl.err" || true)
        local refused
        refused=$(gssh "skywire cli apps ls --json" 2>/dev/null | jq -r '.[] | select(.name=="skysocks") | .info.refused_destinations // 0' 2>/dev/null || echo 0)
        if ! grep -qF "$VISOR_PK" <<<"$page" && grep -q "(2)" "$T/curl.err" && [ "${refused:-0}" -ge 1 ]; then
            pass "SOCKS5 through the board: its skysocks refuses the host's private address 10.0.2.2 with reply 2 (--secure; refused_destinations $refused)"
        else
            fail "SOCKS5 through the board: want reply 2 for 10.0.2.2 and a counted refusal: $(cat "$T/curl.err") | refused_destinations ${refused:-?} | proxy: $(hcli client proxy status --json 2>&1 | jq -c .info) | http: $(tail -n 3 "$T/http.log")"
        fi
    fi
    kill $http_pid 2>/dev/null || true
    stop_host_visor
}
# The pty app (docs/pty.md, docs/boards.md "The pty session host"): opened by the provisioned
# app_whitelists.pty only; the sandboxed visor hands the session to the socket-activated
# skywire-pty@.service, where the command is root with a writable / and /dev/ptmx.
check_pty() {
    deep_supported pty || { skip "pty check: the image's skywire has no 'skywire cli pty'"; return; }
    local out want
    [ "$(gssh systemctl is-enabled skywire-pty.socket 2>&1)" = enabled ] && [ "$(gssh stat -c %a /run/skywire-pty.sock 2>&1)" = 600 ] \
        && pass "skywire-pty.socket enabled, /run/skywire-pty.sock mode 0600" \
        || fail "skywire-pty.socket: $(gssh systemctl status skywire-pty.socket 2>&1 | head -n 5)"
    start_host_visor "$WL_CLIENT_SK" client || { fail "cannot start the host-side visor"; return; }
    out=$(timeout 90 ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-client.sock" pty exec "$VISOR_PK" -- \
          sh -c 'id -u; touch /etc/skw-pty-test && rm /etc/skw-pty-test && echo rw; test -c /dev/ptmx && echo ptmx; grep -o "skywire-pty@[^/]*" /proc/self/cgroup' 2>&1)
    want=$'0\nrw\nptmx'
    [[ $out == "$want"$'\n'skywire-pty@* ]] \
        && pass "pty exec through the board's session host: root, / writable, /dev/ptmx, in ${out##*$'\n'}" \
        || fail "pty exec on the board: $out | visor: $(gssh journalctl -u skywire --no-pager -n 5 2>&1 | grep pty) | host: $(gssh journalctl -u 'skywire-pty@*' --no-pager -n 5 2>&1)"
    head -c 100000 /dev/urandom >"$T/pty.bin"
    ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-client.sock" pty cp "$T/pty.bin" "$VISOR_PK:/root/pty.bin" >/dev/null 2>&1 \
        && [ "$(gssh sha256sum /root/pty.bin 2>/dev/null | cut -d' ' -f1)" = "$(sha256sum <"$T/pty.bin" | cut -d' ' -f1)" ] \
        && pass "pty cp to the board's /root" || fail "pty cp to the board failed"
    stop_host_visor
    # WL_PK1 is on the general whitelist only: that does not open the pty.
    start_host_visor "$STRANGER_SK" stranger || { fail "cannot start the host-side visor"; return; }
    out=$(timeout 90 ip netns exec "$HOST_NS" "$HOST_SKYWIRE_BIN" cli --rpc "$T/host-stranger.sock" pty exec "$VISOR_PK" -- id 2>&1) \
        && fail "pty exec by a stranger ran: $out" \
        || { grep -qi refused <<<"$out" && pass "pty refused a key not in app_whitelists.pty" || fail "pty stranger: $out"; }
    stop_host_visor
}
if [ "$DEEP_CHECKS" = 1 ] && [ -n "$SSH_OK" ]; then
    check_pty
else
    skip "pty check (DEEP_CHECKS=1 enables it)"
fi
if ! has_overlay vpn-exit && ! has_overlay socks-proxy; then
    :   # neither app in this image
elif [ "$DEEP_CHECKS" = 1 ] && [ -n "$SSH_OK" ]; then
    has_overlay vpn-exit && check_vpn_exit
    has_overlay socks-proxy && check_socks_proxy
else
    skip "VPN exit and SOCKS5 checks (DEEP_CHECKS=1 enables them)"
fi

# --- gateway overlay (docs/gateway.md) -------------------------------------------
# Boot with a provisioned "gateway" field but no exit: the fence unit ran before the network, the
# LAN is configured and fenced, the vpn-client entry is in the config but not started; a LAN
# client (netns on the LAN tap) reaches the gateway but nothing beyond it. Then an exit is
# provisioned that is down: the app runs, replaces the fence with its full table and keeps the
# LAN fenced; a visor stop keeps the fence. Last, a control: with the fence removed (and NAT
# added) the same LAN probe does get out, so the probe can see a leak.
lan_dropped() { gssh "nft list counter inet skywire_gateway lan_dropped" 2>/dev/null | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
lan_probe() { # $1 = URL path; 0 when the LAN client fetched the page from the host
    ip netns exec "$LAN_NS" curl -fsS -o /dev/null --connect-timeout 5 --max-time 8 "http://10.0.2.2:$HTTP_PORT/$1" 2>/dev/null
}
http_saw() { grep -qF "GET /$1 " "$T/gw-http.log"; }
# vpn_status_when_reconnecting: the guest's `vpn status --json` once it says reconnecting (or the
# last one read after 30 tries, 2 s apart).
vpn_status_when_reconnecting() {
    local st="" i
    for i in $(seq 1 30); do
        st=$(gssh skywire cli vpn status --json 2>/dev/null || true)
        [ "$(jq -r '.info.state // empty' <<<"$st" 2>/dev/null)" = reconnecting ] && break
        sleep 2
    done
    printf '%s' "$st"
}
check_lan_fenced() { # $1 = label, $2 = probe path
    local before after
    before=$(lan_dropped)
    if lan_probe "$2"; then fail "$1: a LAN client reached the host through the gateway"
    elif http_saw "$2"; then fail "$1: the LAN client's request reached the host (no answer came back)"
    else pass "$1: a LAN client's TCP connection to the host (10.0.2.2) gets nothing out"; fi
    after=$(lan_dropped)
    [ -n "$after" ] && ((after > ${before:-0})) && pass "$1: the fence counted the LAN client's packets (lan_dropped ${before:-?} -> $after)" \
        || fail "$1: lan_dropped did not grow (${before:-?} -> ${after:-?}): $(gssh nft list table inet skywire_gateway 2>&1 | head -n 30)"
}
check_fence_unit() { # $1 = label: the unit ran (condition met, nft succeeded) before the network and sysctl
    local v fence_up t u
    v=$(gssh 'systemctl show -P ActiveState skywire-gateway-fence.service; systemctl show -P Result skywire-gateway-fence.service; systemctl show -P ConditionResult skywire-gateway-fence.service' | tr '\n' ' ')
    [ "$v" = "active success yes " ] && pass "$1: skywire-gateway-fence.service ran (active, success, condition met)" \
        || fail "$1: skywire-gateway-fence.service state: $v $(gssh journalctl -b -u skywire-gateway-fence --no-pager 2>&1 | tail -n 5)"
    fence_up=$(gssh systemctl show -P ActiveEnterTimestampMonotonic skywire-gateway-fence.service)
    for u in network-pre.target systemd-sysctl.service systemd-networkd.service; do
        t=$(gssh systemctl show -P InactiveExitTimestampMonotonic "$u")
        [ -n "$fence_up" ] && ((fence_up > 0 && t > 0 && fence_up <= t)) \
            && pass "$1: fence loaded before $u started (${fence_up} <= ${t} us after boot)" \
            || fail "$1: fence not loaded before $u (fence ${fence_up:-?}, $u ${t:-?})"
    done
    gssh 'journalctl -b --no-pager 2>/dev/null | grep -i "ordering cycle"' >/dev/null \
        && fail "$1: systemd reports an ordering cycle: $(gssh 'journalctl -b --no-pager | grep -i -m3 "ordering cycle"')" \
        || pass "$1: no ordering cycle in the journal"
}
# dhcp_discover: one DHCPDISCOVER (broadcast flag set) from the LAN client; prints the
# offered address, or nothing after 20 s.
dhcp_discover() {
    local mac
    mac=$(ip -n "$LAN_NS" -o link show "$LAN_TAP" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    ip netns exec "$LAN_NS" timeout 25 python3 - "$LAN_TAP" "$mac" <<'PY' 2>/dev/null || true
import random, socket, struct, sys, time
iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("", 68))
xid = random.getrandbits(32)
# RFC 2131 header: op, htype, hlen, hops, xid, secs, flags (broadcast), 4 addresses, chaddr, sname, file.
msg = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4),
                  bytes(4), mac + bytes(10), bytes(64), bytes(128))
msg += b"\x63\x82\x53\x63" + bytes([53, 1, 1, 255])      # magic cookie, DHCPDISCOVER, end
deadline = time.time() + 20
s.settimeout(4)
while time.time() < deadline:
    s.sendto(msg, ("255.255.255.255", 67))
    try:
        while True:
            data = s.recv(2048)
            if len(data) >= 244 and struct.unpack("!I", data[4:8])[0] == xid and data[0] == 2:
                print(socket.inet_ntoa(data[16:20]))
                sys.exit(0)
    except socket.timeout:
        pass
PY
}
# check_dnsmasq_sandbox: the visor starts dnsmasq only once a tunnel is up, which no exit here
# allows; so dnsmasq runs, with the visor's own dnsmasq options, as a unit made from
# skywire.service's own files (the unit with ExecStart replaced, and its gateway drop-in), and
# must offer the LAN client an address (port 67, its ping check, its switch to an unprivileged
# user). Control: the same unit without the drop-in (the base sandbox) must fail.
check_dnsmasq_sandbox() {
    local opts out offer
    opts="--keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll --log-facility=- --interface=$GW_LAN --except-interface=lo --bind-interfaces --pid-file=/var/lib/skywire/skwbt-dnsmasq.pid --dhcp-authoritative --dhcp-range=192.168.50.100,192.168.50.150,255.255.255.0,1h --dhcp-option=option:router,$GW_ADDR --dhcp-leasefile=/var/lib/skywire/skwbt-dnsmasq.leases --server=10.0.2.3"
    gssh "set -e; d=/run/systemd/system
          sed -e 's|^ExecStart=.*|ExecStart=/usr/sbin/dnsmasq $opts|' -e 's|^Restart=.*|Restart=no|' \
              -e '/^\(ConditionPathExists\|Requires\|After\|Wants\)=/d' /etc/systemd/system/skywire.service >\$d/skwbt-dnsmasq-base.service
          cp \$d/skwbt-dnsmasq-base.service \$d/skwbt-dnsmasq.service
          mkdir -p \$d/skwbt-dnsmasq.service.d; cp /etc/systemd/system/skywire.service.d/*.conf \$d/skwbt-dnsmasq.service.d/
          systemctl daemon-reload" >"$T/gw-dnsmasq.log" 2>&1 \
        || { fail "could not make the dnsmasq test units from skywire.service: $(cat "$T/gw-dnsmasq.log")"; return; }
    out=$(gssh "systemctl start skwbt-dnsmasq-base; sleep 3; systemctl show -P ActiveState skwbt-dnsmasq-base; journalctl -q -o cat -t dnsmasq -u skwbt-dnsmasq-base --no-pager | tail -n 2" 2>&1 || true)
    [ "$(head -n 1 <<<"$out")" = failed ] \
        && pass "control: dnsmasq fails with the base unit's sandbox only (no gateway drop-in): $(tail -n +2 <<<"$out" | tr '\n' ' ')" \
        || fail "control: dnsmasq under the base unit's sandbox did not fail: $out"
    gssh "systemctl start skwbt-dnsmasq" >"$T/gw-dnsmasq.log" 2>&1 \
        || { fail "could not start dnsmasq in skywire.service's sandbox: $(cat "$T/gw-dnsmasq.log")"; return; }
    offer=$(dhcp_discover)
    if [ -n "$offer" ]; then
        pass "dnsmasq in skywire.service's sandbox (with the gateway drop-in) offered the LAN client $offer"
    else
        fail "dnsmasq in skywire.service's sandbox offered no address: $(gssh 'systemctl status --no-pager -n 10 skwbt-dnsmasq; journalctl -q -o cat -t dnsmasq -u skwbt-dnsmasq --no-pager | tail -n 5' 2>&1)"
    fi
    gssh 'systemctl stop skwbt-dnsmasq skwbt-dnsmasq-base; rm -rf /run/systemd/system/skwbt-dnsmasq*; systemctl daemon-reload; systemctl reset-failed; rm -f /var/lib/skywire/skwbt-dnsmasq.*' >/dev/null 2>&1 || true
}
check_gateway() {
    local v name out st i
    check_fence_unit "first boot"
    out=$(gssh nft list table inet skywire_gateway 2>&1)
    grep -qF "iifname \"$GW_LAN\" counter name \"lan_dropped\" drop" <<<"$out" \
        && pass "nft table inet skywire_gateway loaded, LAN $GW_LAN dropped unless into skwvpn0" \
        || fail "nft table inet skywire_gateway missing or not fencing $GW_LAN: $out"
    [ "$(gssh sysctl -n net.ipv4.ip_forward)" = 1 ] && pass "net.ipv4.ip_forward = 1 (overlay sysctl.d)" || fail "IPv4 forwarding off"
    # The LAN NIC: provisioned name, static address, no DHCP client, no IPv6 (not even link-local).
    name=$(gssh "ip -o link | grep -i '$GW_LAN_MAC'" | awk -F': ' '{print $2}')
    [ "$name" = "$GW_LAN" ] && pass "the LAN NIC is $GW_LAN" || fail "the LAN NIC ($GW_LAN_MAC) is named '${name:-?}', not $GW_LAN"
    out=$(gssh "networkctl status $GW_LAN --no-pager 2>&1; ip -o addr show dev $GW_LAN")
    grep -q 'Network File: /etc/systemd/network/70-skywire-gateway-lan.network' <<<"$out" \
        && grep -q "inet $GW_SUBNET " <<<"$out" && ! grep -q 'inet6' <<<"$(gssh ip -o addr show dev "$GW_LAN")" \
        && ! grep -qi 'dynamic' <<<"$(gssh ip -o addr show dev "$GW_LAN")" \
        && pass "LAN $GW_LAN: $GW_SUBNET static from 70-skywire-gateway-lan.network, no DHCP, no IPv6" \
        || fail "LAN $GW_LAN not configured as the overlay says: $out"
    # No exit: the entry is there, not started; no dnsmasq; the boot hook says why.
    cfg=$(gssh cat /etc/skywire/skywire-config.json 2>/dev/null || echo '{}')
    v=$(jq -c '.launcher.apps[]? | select(.name == "vpn-client")' <<<"$cfg")
    [ "$(jq -c '[.port, .auto_start, .args]' <<<"${v:-null}" 2>/dev/null)" = '[43,false,[]]' ] \
        && pass "launcher.apps has vpn-client (port 43) from the overlay, not started without an exit" \
        || fail "vpn-client entry without an exit: ${v:-missing}"
    grep -aq 'gateway: WARNING: no exit provisioned' "$T/serial.log" && pass "the boot log says the LAN stays cut off until an exit is provisioned" \
        || fail "no 'no exit provisioned' warning on the console"
    gssh 'pgrep -x dnsmasq' >/dev/null && fail "dnsmasq runs without an exit" || pass "no dnsmasq without an exit"
    gssh 'test -x /usr/sbin/dnsmasq && ! systemctl cat dnsmasq.service' >/dev/null 2>&1 \
        && pass "dnsmasq-base installed (the binary, no dnsmasq.service)" || fail "dnsmasq binary missing or a dnsmasq.service exists"
    # The LAN client: reaches the gateway (the LAN link works), nothing beyond it.
    HTTP_PORT=$(free_port); mkdir -p "$T/gw-www"
    for p in guest lan-no-exit lan-exit-down lan-after-stop lan-after-reboot lan-unfenced; do echo ok >"$T/gw-www/$p"; done
    timeout 900 python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory "$T/gw-www" >"$T/gw-http.log" 2>&1 &
    HTTP_PID=$!
    for i in $(seq 1 50); do curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/guest" 2>/dev/null && break; sleep 0.2; done
    gssh "timeout 10 bash -c 'exec 3<>/dev/tcp/10.0.2.2/$HTTP_PORT'" >/dev/null 2>&1 \
        && pass "the gateway itself reaches the host's test server (10.0.2.2:$HTTP_PORT) over its uplink" \
        || fail "the gateway cannot reach the host's test server"
    ip netns exec "$LAN_NS" ping -c 2 -W 3 "$GW_ADDR" >/dev/null 2>&1 \
        && pass "a LAN client reaches the gateway $GW_ADDR (the LAN link works)" \
        || fail "a LAN client cannot ping the gateway $GW_ADDR: $(ip -n "$LAN_NS" -s link show "$LAN_TAP" | tr '\n' ' ')"
    check_lan_fenced "no exit" lan-no-exit

    # An exit that is down (its address refuses connections): the app runs and retries.
    out=$(jq -n --arg x "$WL_PK1" --arg lan "$GW_LAN" --arg sub "$GW_SUBNET" '{version: 1,
        peers: {($x): {stcpr: "10.0.2.2:1"}}, gateway: {exit: $x, lan: $lan, lan_subnet: $sub, dns: ["10.0.2.3"]}}')
    gssh "cat >/boot/firmware/skywire-provision.json && /usr/lib/skywire/setup && systemctl restart skywire.service" <<<"$out" >"$T/gw-reprovision.log" 2>&1 \
        || fail "re-provisioning an exit failed: $(tail -n 5 "$T/gw-reprovision.log")"
    st=$(vpn_status_when_reconnecting)
    [ "$(jq -r '[.info.state, .info.lan.interface, .info.lan.killswitch] | join(" ")' <<<"$st" 2>/dev/null)" = "reconnecting $GW_LAN true" ] \
        && pass "exit down: vpn-client (--lan $GW_LAN) runs, state reconnecting, LAN fence on" \
        || fail "vpn-client with an unreachable exit: ${st:-no status} $(gssh journalctl -u skywire -n 15 --no-pager 2>&1)"
    gssh "nft list chain inet skywire_gateway postrouting" >/dev/null 2>&1 \
        && pass "exit down: the visor replaced the boot fence with its full table (masquerade chain present)" \
        || fail "exit down: the visor's gateway table is not loaded"
    gssh 'pgrep -x dnsmasq' >/dev/null && fail "dnsmasq runs before the first session" || pass "exit down: no dnsmasq before the first session"
    check_lan_fenced "exit down" lan-exit-down
    # systemctl stop skywire: the fence and forwarding stay (docs/gateway.md §3.2).
    gssh 'systemctl stop skywire.service' >/dev/null 2>&1 || true
    gssh 'nft list table inet skywire_gateway' >/dev/null 2>&1 && [ "$(gssh sysctl -n net.ipv4.ip_forward)" = 1 ] \
        && pass "visor stopped: the LAN fence stays loaded" || fail "visor stopped: the LAN fence is gone"
    check_lan_fenced "visor stopped" lan-after-stop
    check_dnsmasq_sandbox
    # Reboot with the exit still down: the fence unit loads the fence before the network again,
    # the visor comes back in reconnecting and the LAN stays fenced.
    local boot_id new_id=""
    boot_id=$(gssh cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
    gssh 'systemctl reboot' >/dev/null 2>&1 || true
    deadline=$((SECONDS + BOOT_TIMEOUT))
    while ((SECONDS < deadline)) && kill -0 "$QEMU_PID" 2>/dev/null; do
        new_id=$(gssh cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
        [ -n "$new_id" ] && [ "$new_id" != "$boot_id" ] && break
        sleep "$POLL_SECONDS"
    done
    if [ -z "$new_id" ] || [ "$new_id" = "$boot_id" ]; then
        fail "the gateway did not come back over SSH within ${BOOT_TIMEOUT}s of a reboot"
    else
        pass "rebooted ($(elapsed)s after QEMU start)"
        check_fence_unit "after reboot"
        st=$(vpn_status_when_reconnecting)
        [ "$(jq -r '[.info.state, .info.lan.killswitch] | join(" ")' <<<"$st" 2>/dev/null)" = "reconnecting true" ] \
            && pass "after reboot: vpn-client started from the config, reconnecting, LAN fence on" \
            || fail "after reboot: vpn-client status: ${st:-none}"
        check_lan_fenced "after reboot" lan-after-reboot
    fi
    # Control: the same probe gets out once the fence is removed and NAT added.
    gssh "nft delete table inet skywire_gateway; nft -f - <<'NFT'
table ip skwbt_control {
  chain post { type nat hook postrouting priority srcnat; oifname != \"$GW_LAN\" masquerade; }
}
NFT" >/dev/null 2>&1 || true
    lan_probe lan-unfenced && http_saw lan-unfenced \
        && pass "control: without the fence (and with NAT) the same LAN probe reaches the host" \
        || fail "control: the LAN probe fails even without the fence, so the fence checks above prove nothing"
}
if [ "$GATEWAY" = 1 ] && [ -n "$SSH_OK" ]; then
    if gssh skywire --version 2>/dev/null | grep -q fake; then skip "gateway checks (the image runs the fake stand-in)"
    else check_gateway; fi
fi

# --- shutdown and offline checks ------------------------------------------------
if [ -n "$SSH_OK" ]; then gssh 'systemctl poweroff' >/dev/null 2>&1 || true; fi
deadline=$((SECONDS + SHUTDOWN_TIMEOUT))
while ((SECONDS < deadline)) && kill -0 "$QEMU_PID" 2>/dev/null; do sleep 1; done
if kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true
    [ -n "$SSH_OK" ] && fail "guest did not power off within ${SHUTDOWN_TIMEOUT}s"
else
    wait "$QEMU_PID" 2>/dev/null || true
fi
QEMU_PID=""
if mdir -b -i "$T/disk.img@@$BOOT_OFFSET" ::/ 2>/dev/null | grep -q '/skywire-provision.json$'; then
    fail "skywire-provision.json still on the boot partition after shutdown"
elif mtype -i "$T/disk.img@@$BOOT_OFFSET" ::/skywire-provision.applied.json 2>/dev/null | grep -qF "$VISOR_SK"; then
    fail "the secret key is still in skywire-provision.applied.json"
else
    pass "boot partition (read offline with mtools) holds no secret key"
fi
# The raw partition: a deleted file's clusters keep its bytes unless they were overwritten.
read -r BOOT_RUNS_AFTER BOOT_FORMS_AFTER < <(scan_boot_partition)
if [ "$BOOT_RUNS_AFTER" = 0 ] && [ "$BOOT_FORMS_AFTER" = none ]; then
    pass "raw boot partition after shutdown: no run of 128+ hex digits the image did not ship with, no form of the visor key (deleted clusters included)"
else
    fail "raw boot partition after shutdown still holds key material: $BOOT_RUNS_AFTER new run(s) of 128+ hex digits; visor key forms: $BOOT_FORMS_AFTER"
fi

echo "boot-test: board=$BOARD image=$(basename "$IMAGE") ready_after=${READY_S:-never}s ssh_after=${SSH_OK:-never}s"
echo "boot-test: $PASS passed, $FAIL failed, $SKIP skipped (serial log: $T/serial.log${KEEP_TEST_DIR:+, kept})"
((FAIL == 0))
exit
}
