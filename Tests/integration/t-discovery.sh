#!/usr/bin/env bash
# skywire-discovery on a "public" namespace (198.51.100.1), a client namespace (198.51.100.2)
# and a visor behind a NAT namespace (nftables masquerade, 10.99.1.0/24 behind 198.51.100.11).
# The two cone NATs reach the "internet" bridge through 10 ms (one way) delay relays, so that
# packets punched from both sides cross in flight as between real NATs (with no latency, one
# side's first packet reaches the other NAT before that NAT sent anything and takes the port).
# Run twice: --db sqlite:FILE, then a PostgreSQL cluster the test starts (unix socket).
# Checks: signed registration and filtered listing (curl and `skywire cli vpn list`), replayed,
# forged, cross-key, skewed, oversized and malformed writes refused, an unrefreshed entry gone
# after its TTL while a refreshed one stays, and the UDP rendezvous reporting the NAT's public
# address as the visor's observed sudph address; connect by key alone: a visor behind the NAT
# with no peers entry resolves an exit (reachable at its transport.public_addr) through discovery,
# `proxy start -k PK` connects and a SOCKS fetch works; an unknown key fails clearly.
# Two NATs: an exit behind a second NAT (10.99.2.0/24 behind 198.51.100.12, vpn-server, country JP)
# and a client behind the first, neither in the other's peers: `vpn list -c JP`, `vpn start -k PK`
# over a punched sudph transport, traffic leaves at the exit NAT's address; `vpn stop` restores the
# client. A client behind a symmetric NAT (10.99.3.0/24 behind 198.51.100.13, masquerade
# fully-random) cannot punch: `vpn start -k PK` falls back to stcpr (the exit NAT forwards its
# stcpr port, transport.public_addr) within the punch schedule (5 s), traffic works. `proxy start`
# / `vpn start -k PK -t 3` to a registered but unreachable key ends after ~3 s naming the timeout.
# Hardening (issue 16, check_public_service / check_dns_down_redial): a public service refuses LAN
# and loopback addresses while a visor behind a NAT still registers without its LAN listener,
# paged listing through the CLI, slow clients cut at the request deadline, a write flood answered
# 429; a visor whose DNS hangs keeps answering its control socket during sudph redials by name.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

DISC_BIN=$(dirname "$SKYWIRE_BIN")/skywire-discovery
[ -x "$DISC_BIN" ] || die "$DISC_BIN not found: build it with 'swift build' (product skywire-discovery)"

PUB=skwt-dc-pub$$ CLI=skwt-dc-cli$$ NAT=skwt-dc-nat$$ PRIV=skwt-dc-prv$$
NAT2=skwt-dc-nat2$$ PRIV2=skwt-dc-prv2$$ NAT3=skwt-dc-nat3$$ PRIV3=skwt-dc-prv3$$
netns_add $PUB; netns_add $CLI; netns_add $NAT; netns_add $PRIV
netns_add $NAT2; netns_add $PRIV2; netns_add $NAT3; netns_add $PRIV3
# The "internet": a bridge in PUB joining the service, the client and the NAT's outside.
ip -n $PUB link add skwt-dcbr type bridge
ip -n $PUB addr add 198.51.100.1/24 dev skwt-dcbr
ip -n $PUB link set skwt-dcbr up
# Offloads off everywhere on the "internet": the delay relays below forward frames of at most
# 2048 bytes.
noofl() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true; }
noofl $PUB skwt-dcbr
attach() {  # attach NS IFNAME ADDR/24 [ONE_WAY_DELAY_MS]: a veth from NS into the bridge
    if [ -n "${4:-}" ]; then
        # Through a delay relay in its own namespace (the internet's latency between NATs:
        # punched packets cross in flight, as they do between real NATs).
        local d=skwt-dcd-${2#skwt-dc}$$
        netns_add "$d"
        ip link add "$2" netns "$1" type veth peer name "$2a" netns "$d"
        ip link add "$2b" netns "$d" type veth peer name "$2p" netns $PUB
        for i in "$2a" "$2b"; do noofl "$d" "$i"; ip -n "$d" link set "$i" promisc on; ip -n "$d" link set "$i" up; done
        ip netns exec "$d" "$PFDELAY" "$2a" "$2b" "$(($4 * 1000))" 4096 >>"$T_WORK/relay-$2.log" 2>&1 &
        T_PIDS+=("$!")
    else
        ip link add "$2" netns "$1" type veth peer name "$2p" netns $PUB
    fi
    noofl "$1" "$2"; noofl $PUB "$2p"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
    ip -n $PUB link set "$2p" master skwt-dcbr
    ip -n $PUB link set "$2p" up
}
gcc -O2 -o "$T_WORK/pfdelay" "$here/tools/pfdelay.c" || die "cannot build the delay relay"
PFDELAY=$T_WORK/pfdelay
attach $CLI skwt-dcc0 198.51.100.2/24
attach $NAT skwt-dcn0 198.51.100.11/24 10
# Behind the NAT: a private /24 and a masquerade rule on the way out.
veth_pair $NAT skwt-dcn1 10.99.1.1/24 $PRIV skwt-dcv0 10.99.1.2/24
ip -n $PRIV route add default via 10.99.1.1
ip netns exec $NAT sysctl -qw net.ipv4.ip_forward=1
ip netns exec $NAT nft -f - <<'EOF'
table ip skwt_dc_nat {
    chain post { type nat hook postrouting priority srcnat; oifname "skwt-dcn0" masquerade; }
}
EOF
# The exit's NAT: masquerade out, and its stcpr port forwarded in (DNAT) to the exit 10.99.2.2.
attach $NAT2 skwt-dcm0 198.51.100.12/24 10
veth_pair $NAT2 skwt-dcm1 10.99.2.1/24 $PRIV2 skwt-dcw0 10.99.2.2/24
ip -n $PRIV2 route add default via 10.99.2.1
ip netns exec $NAT2 sysctl -qw net.ipv4.ip_forward=1
ip netns exec $NAT2 nft -f - <<'EOF'
table ip skwt_dc_nat2 {
    chain pre { type nat hook prerouting priority dstnat; iifname "skwt-dcm0" tcp dport 7777 dnat to 10.99.2.2:7777; }
    chain post { type nat hook postrouting priority srcnat; oifname "skwt-dcm0" masquerade; }
}
EOF
# A symmetric NAT: every new flow gets a random source port, so a punched mapping is never reused.
attach $NAT3 skwt-dcs0 198.51.100.13/24
veth_pair $NAT3 skwt-dcs1 10.99.3.1/24 $PRIV3 skwt-dct0 10.99.3.2/24
ip -n $PRIV3 route add default via 10.99.3.1
ip netns exec $NAT3 sysctl -qw net.ipv4.ip_forward=1
ip netns exec $NAT3 nft -f - <<'EOF'
table ip skwt_dc_nat3 {
    chain post { type nat hook postrouting priority srcnat; oifname "skwt-dcs0" masquerade fully-random; }
}
EOF
# Port 7999 on the public side swallows TCP SYNs: a registered address that never answers.
ip netns exec $PUB nft -f - <<'EOF'
table inet skwt_dc_pub {
    chain in { type filter hook input priority filter; tcp dport 7999 drop; }
}
EOF
ip netns exec $CLI ping -c1 -W2 198.51.100.1 >/dev/null || die "no connectivity client -> public"
ip netns exec $PRIV ping -c1 -W2 198.51.100.1 >/dev/null || die "no connectivity private -> public through the NAT"
ip netns exec $PRIV2 ping -c1 -W2 198.51.100.1 >/dev/null || die "no connectivity private2 -> public through the second NAT"
ip netns exec $PRIV3 ping -c1 -W2 198.51.100.1 >/dev/null || die "no connectivity private3 -> public through the symmetric NAT"

PKA=$(visor_config a)
PKB=$(visor_config b)
PKC=$(visor_config c)
# E: a real visor behind the NAT that registers itself (skysocks running for A -> a "proxy" entry in NL).
PKE=$(visor_config e)
jq --arg a "$PKA" '.transport.discovery = "http://198.51.100.1:9090" | .transport.country = "NL" | .transport.listen_addr = "10.99.1.2"
    | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start = true | .args = ["--whitelist", $a])' "$T_WORK/e.json" >"$T_WORK/e.tmp"
install -m 600 "$T_WORK/e.tmp" "$T_WORK/e.json"
# X: an exit on the public side (listening on 0.0.0.0, advertising transport.public_addr), skysocks in SE
# for F only (F's config is made here, filled in below).
PKX=$(visor_config x)
PKF=$(visor_config f)
jq --arg f "$PKF" '.transport.discovery = "http://198.51.100.1:9090" | .transport.country = "SE" | .transport.public_addr = "198.51.100.2:7777"
    | (.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start = true | .args = ["--whitelist", $f])' "$T_WORK/x.json" >"$T_WORK/x.tmp"
install -m 600 "$T_WORK/x.tmp" "$T_WORK/x.json"
# F: a client behind the NAT with discovery and no peers at all.
jq '.transport.discovery = "http://198.51.100.1:9090" | .transport.peers = {} | .transport.stcpr_port = 7787 | .transport.sudph_port = 7788' \
    "$T_WORK/f.json" >"$T_WORK/f.tmp"
install -m 600 "$T_WORK/f.tmp" "$T_WORK/f.json"
# G: a key nobody registers.
PKG=$(visor_config g)
# U: a key whose transport entry (written by the test) names an address that never answers.
PKU=$(visor_config u)
# S: a client behind the symmetric NAT, discovery and no peers.
PKS=$(visor_config s)
jq '.transport.discovery = "http://198.51.100.1:9090" | .transport.peers = {}' "$T_WORK/s.json" >"$T_WORK/s.tmp"
install -m 600 "$T_WORK/s.tmp" "$T_WORK/s.json"
# Y: a VPN exit behind the second NAT (country JP, clients F and S whitelisted), reachable over
# stcpr only through the NAT's port forward (transport.public_addr).
PKY=$(visor_config y)
jq --arg wl "$PKF,$PKS" '.transport.discovery = "http://198.51.100.1:9090" | .transport.country = "JP"
    | .transport.public_addr = "198.51.100.12:7777"
    | (.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start = true | .args = ["--whitelist", $wl])' \
    "$T_WORK/y.json" >"$T_WORK/y.tmp"
install -m 600 "$T_WORK/y.tmp" "$T_WORK/y.json"
# A small file served on the public side, fetched through the proxy.
mkdir -p "$T_WORK/www"
head -c 300000 /dev/urandom >"$T_WORK/www/small.bin"
WANT_SUM=$(sha256sum <"$T_WORK/www/small.bin" | cut -d' ' -f1)
ip netns exec $PUB python3 -m http.server --bind 198.51.100.1 8080 --directory "$T_WORK/www" >"$T_WORK/http.log" 2>&1 &
T_PIDS+=("$!")
URL=http://198.51.100.1:9090
TTL=4

# in_cli CMD...: runs CMD in the client namespace.
in_cli() { ip netns exec $CLI "$@"; }

# signed NAME METHOD TARGET [BODY_FILE] -> writes curl header lines to $T_WORK/h
signed() {
    local args=(sign -c "$T_WORK/$1.json" --method "$2" --target "$3")
    [ -n "${4:-}" ] && args+=(--body-file "$4")
    "$DISC_BIN" "${args[@]}" "${@:5}" >"$T_WORK/h" || die "skywire-discovery sign failed"
}

# http METHOD TARGET [BODY_FILE]: prints "STATUS BODY" (uses the headers in $T_WORK/h for writes).
http() {
    local args=(-s -m 5 -X "$1" -o "$T_WORK/resp" -w '%{http_code}')
    [ "$1" != GET ] && args+=(-H @"$T_WORK/h")
    [ -n "${3:-}" ] && args+=(--data-binary @"$3")
    local code
    code=$(in_cli curl "${args[@]}" "$URL$2") || true
    echo "$code $(cat "$T_WORK/resp" 2>/dev/null)"
}

# expect_http DESC WANT_STATUS WANT_PATTERN METHOD TARGET [BODY_FILE]
expect_http() {
    local desc=$1 want=$2 pat=$3; shift 3
    local got
    got=$(http "$@")
    if [[ ${got%% *} == "$want" ]] && grep -qE "$pat" <<<"$got"; then pass "$desc"; else fail "$desc: want $want /$pat/, got: $got"; fi
}

# wait_entry PK ERE: polls GET /v1/transports/PK (5 s at most) until it matches ERE; prints the last answer.
wait_entry() {
    local entry=""
    for _ in $(seq 1 25); do
        entry=$(http GET "/v1/transports/$1")
        grep -qE "$2" <<<"$entry" && break
        sleep 0.2
    done
    echo "$entry"
}

service_body() {  # service_body COUNTRY LABEL -> file
    printf '{"version":"0.1.0","country":"%s","label":"%s","stats":{"connected":1}}' "$1" "$2" >"$T_WORK/sb-$1-$2"
    echo "$T_WORK/sb-$1-$2"
}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
pg_start() {
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL binaries missing (/usr/lib/postgresql/*/bin): run scripts/install-deps.sh"
    PGDIR=$T_WORK/pg
    # The server runs as postgres: it must traverse $T_WORK (the files in it stay mode 600).
    chmod 711 "$T_WORK"
    mkdir -p "$PGDIR"
    chown postgres:postgres "$PGDIR"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync -E UTF8 >"$T_WORK/initdb.log" 2>&1 \
        || die "initdb failed: $(tail -5 "$T_WORK/initdb.log")"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 30 \
        -o "-k $PGDIR -c listen_addresses= -p 54330 -c fsync=off" start </dev/null >/dev/null 2>&1 \
        || die "pg_ctl start failed: $(tail -5 "$PGDIR/postgres.log" 2>&1)"
    T_PIDS+=("$(head -n1 "$PGDIR/data/postmaster.pid")")
}
pg_stop() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop </dev/null >/dev/null 2>&1 || true; }

# The rendezvous: the visor behind the NAT sends a signed BIND; BIND_OK carries its observed
# (post-NAT) address, which the resolver then publishes.
check_rendezvous() {
    local obs
    obs=$(ip netns exec $PRIV "$DISC_BIN" bind -c "$T_WORK/c.json" --to 198.51.100.1:9091 --from 0.0.0.0:7778 2>"$T_WORK/bind.err") \
        || { fail "[$label] BIND from behind the NAT: $(cat "$T_WORK/bind.err")"; return; }
    if [[ $obs == 198.51.100.11:* ]]; then pass "[$label] BIND_OK reports the NAT's public address ($obs)"; else fail "BIND_OK observed '$obs', want 198.51.100.11:*"; fi
    printf '{"stcpr":[],"sudph":true}' >"$T_WORK/tb-c"
    signed c PUT "/v1/transports/$PKC" "$T_WORK/tb-c"
    expect_http "[$label] transport registered with sudph" 200 "\"sudph\":\"$obs\"" PUT "/v1/transports/$PKC" "$T_WORK/tb-c"
    expect_http "[$label] resolver returns the observed sudph address" 200 "\"sudph\":\"$obs\"" GET "/v1/transports/$PKC"
    # Punch: A (bound from the client namespace) asks for C; C's socket receives PUNCH(A).
    in_cli "$DISC_BIN" bind -c "$T_WORK/a.json" --to 198.51.100.1:9091 --from 198.51.100.2:7778 >/dev/null 2>"$T_WORK/bind.err" \
        || fail "BIND from the client: $(cat "$T_WORK/bind.err")"
    signed a POST "/v1/punch/$PKC"
    expect_http "[$label] punch answers with the target's observed address" 200 "\"target\":\"$obs\"" POST "/v1/punch/$PKC"
    signed a POST "/v1/punch/$PKB"
    expect_http "[$label] punch to a key without a binding" 404 "no live sudph binding" POST "/v1/punch/$PKB"
}

# A visor with transport.discovery registers its transport and, while skysocks runs, a proxy
# entry; `skywire cli proxy list -c NL` finds it; stopping skysocks, then the visor, removes them.
check_visor_registration() {
    visor_start e $PRIV
    local listing="" ok=0
    for _ in $(seq 1 50); do
        listing=$(in_cli "$SKYWIRE_BIN" cli proxy list --discovery "$URL" -c NL --json 2>&1) || true
        if jq -e --arg pk "$PKE" 'length == 1 and .[0].pk == $pk and .[0].country == "NL"' <<<"$listing" >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    if [ $ok = 1 ]; then pass "[$label] a visor registers its proxy; cli proxy list -c NL finds it"; else fail "[$label] visor registration: $listing"; fi
    expect_http "[$label] the visor's transport entry advertises its stcpr listener" 200 '"stcpr":\["10\.99\.1\.2:7777"\]' GET "/v1/transports/$PKE"
    # Its sudph socket BINDs at the rendezvous: the entry carries the NAT's public address.
    local entry
    entry=$(wait_entry "$PKE" '"sudph":"198\.51\.100\.11:[0-9]+"')
    if grep -qE '^200 .*"sudph":"198\.51\.100\.11:[0-9]+"' <<<"$entry"; then pass "[$label] the visor's sudph socket is bound at the rendezvous (observed behind the NAT)"; else fail "[$label] sudph binding of the visor behind the NAT: $entry"; fi
    grep -q "the rendezvous observes this visor at 198.51.100.11:" "$T_WORK/e.log" && pass "[$label] the visor logs its observed address from BIND_OK" \
        || fail "[$label] no BIND_OK observed address in e.log"
    cli e apps stop skysocks >/dev/null 2>&1 || fail "[$label] apps stop skysocks"
    ok=0
    for _ in $(seq 1 $(( (TTL / 3 + 2) * 5 ))); do
        listing=$(in_cli "$SKYWIRE_BIN" cli proxy list --discovery "$URL" --json 2>&1) || true
        if [ "$listing" = "[]" ]; then ok=1; break; fi
        sleep 0.2
    done
    if [ $ok = 1 ]; then pass "[$label] stopping skysocks removes the proxy entry"; else fail "[$label] proxy entry after skysocks stopped: $listing"; fi
    # A skysocks that refuses every key (no whitelist) runs, but is not advertised.
    visor_stop e
    jq '(.launcher.apps[] | select(.name=="skysocks")) |= (.args = [])' "$T_WORK/e.json" >"$T_WORK/e.tmp"
    install -m 600 "$T_WORK/e.tmp" "$T_WORK/e.json"
    visor_start e $PRIV
    entry=$(wait_entry "$PKE" '"sudph":"198\.51\.100\.11:[0-9]+"')
    local apps
    sleep 2  # two refreshes at TTL 4 (one every ttl/3 s): long enough for a wrong entry to be written
    apps=$(cli e apps ls --json 2>&1) || true
    listing=$(in_cli "$SKYWIRE_BIN" cli proxy list --discovery "$URL" --json 2>&1) || true
    if jq -e '.[] | select(.name=="skysocks") | .status == "running" and .access == "closed"' <<<"$apps" >/dev/null 2>&1 \
        && grep -qE '^200 ' <<<"$entry" && [ "$listing" = "[]" ]; then
        pass "[$label] a running skysocks that refuses every key is not advertised"
    else
        fail "[$label] closed skysocks: apps=$apps entry=$entry listing=$listing"
    fi
    visor_stop e
    jq --arg a "$PKA" '(.launcher.apps[] | select(.name=="skysocks")) |= (.args = ["--whitelist", $a])' "$T_WORK/e.json" >"$T_WORK/e.tmp"
    install -m 600 "$T_WORK/e.tmp" "$T_WORK/e.json"
    expect_http "[$label] a stopped visor deletes its transport entry" 404 "unknown key" GET "/v1/transports/$PKE"
}

# Connect by key alone: F (behind the NAT, no peers) finds X's proxy in discovery, resolves X's
# public stcpr address and relays a download through it; an unregistered key fails clearly.
check_connect_by_key() {
    visor_start x $CLI
    visor_start f $PRIV
    local listing="" ok=0
    for _ in $(seq 1 50); do
        listing=$(ip netns exec $PRIV "$SKYWIRE_BIN" cli proxy list --config "$T_WORK/f.json" -c SE --json 2>&1) || true
        if jq -e --arg pk "$PKX" 'length == 1 and .[0].pk == $pk' <<<"$listing" >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    if [ $ok = 1 ]; then pass "[$label] behind the NAT, proxy list -c SE finds the exit"; else fail "[$label] proxy list -c SE from behind the NAT: $listing"; fi
    listing=$(ip netns exec $PRIV "$SKYWIRE_BIN" cli proxy list --config "$T_WORK/f.json" -c SE --stats --json 2>&1) || true
    jq -e '.[0].stats.connected == 0' <<<"$listing" >/dev/null 2>&1 \
        && pass "[$label] proxy list --stats: skysocks reports its open sessions (0)" || fail "[$label] proxy list --stats: $listing"
    expect_http "[$label] the exit advertises transport.public_addr" 200 '"stcpr":\["198\.51\.100\.2:7777"\]' GET "/v1/transports/$PKX"
    if jq -e --arg pk "$PKX" '.transport.peers | has($pk) | not' "$T_WORK/f.json" >/dev/null; then
        pass "[$label] the client has no peers entry for the exit"
    else
        fail "[$label] f.json lists the exit in transport.peers"
    fi
    expect_fail "[$label] proxy start -k an unregistered key" "$PKG not found in discovery" cli f proxy start -k "$PKG" -t 10
    expect_fail "[$label] tp add an unregistered key" "$PKG not found in discovery" cli f tp add "$PKG"
    expect_ok "[$label] proxy start -k PK by key alone" cli f proxy start -k "$PKX" -t 10
    local got=""
    for _ in $(seq 1 20); do
        got=$( (ip netns exec $PRIV curl -fsS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://198.51.100.1:8080/small.bin 2>>"$T_WORK/curl.err" || true) | sha256sum | cut -d' ' -f1)
        [ "$got" = "$WANT_SUM" ] && break
        sleep 0.2
    done
    if [ "$got" = "$WANT_SUM" ]; then pass "[$label] SOCKS fetch through the resolved exit (checksum matches)"; else fail "[$label] SOCKS fetch: checksum $got, want $WANT_SUM: $(tail -3 "$T_WORK/curl.err" 2>/dev/null)"; fi
    # The exit's entry has a sudph address: punched and dialled first.
    local tps
    tps=$(cli f tp ls --json 2>&1) || true
    if jq -e --arg pk "$PKX" 'any(.[]; .remote_pk == $pk and .type == "sudph" and .remote_addr == "198.51.100.2:7778" and .state == "up")' <<<"$tps" >/dev/null 2>&1; then
        pass "[$label] tp ls --json shows the sudph transport to the exit's bound address"
    else
        fail "[$label] tp ls --json (want sudph to 198.51.100.2:7778): $tps"
    fi
    expect_ok "[$label] tp add PK -t stcpr by key alone" cli f tp add "$PKX" -t stcpr
    tps=$(cli f tp ls --json 2>&1) || true
    if jq -e --arg pk "$PKX" 'any(.[]; .remote_pk == $pk and .type == "stcpr" and .remote_addr == "198.51.100.2:7777" and .state == "up")' <<<"$tps" >/dev/null 2>&1; then
        pass "[$label] tp ls --json shows the stcpr transport to the exit's public_addr"
    else
        fail "[$label] tp ls --json (want stcpr to 198.51.100.2:7777): $tps"
    fi
    # Hole punching: X (public side) dials E (behind the NAT, its stcpr address private) by key;
    # only the PUNCH-triggered probes let X's sudph handshake through the masquerade.
    visor_start e $PRIV
    local ok=0
    for _ in $(seq 1 25); do
        http GET "/v1/transports/$PKE" | grep -qE '"sudph":"198\.51\.100\.11:[0-9]+"' && { ok=1; break; }
        sleep 0.2
    done
    [ $ok = 1 ] || fail "[$label] E did not bind at the rendezvous"
    expect_ok "[$label] tp add PK of a visor behind the NAT (punched)" cli x tp add "$PKE"
    tps=$(cli x tp ls --json 2>&1) || true
    if jq -e --arg pk "$PKE" 'any(.[]; .remote_pk == $pk and .type == "sudph" and (.remote_addr | startswith("198.51.100.11:")) and .state == "up")' <<<"$tps" >/dev/null 2>&1; then
        pass "[$label] the punched sudph transport to the visor behind the NAT is up"
    else
        fail "[$label] tp ls --json on X (want sudph to 198.51.100.11:*): $tps"
    fi
    expect_ok "[$label] visor ping through the punched transport" cli x visor ping "$PKE" -t 10
    visor_stop e
    cli f proxy stop >/dev/null 2>&1 || fail "[$label] proxy stop"
    visor_stop f
    visor_stop x
}

# client_snapshot NS: routes, rules, links and nftables of a client namespace (vpn stop restores them).
client_snapshot() {
    { ip -n "$1" route show table all; ip -n "$1" rule; ip -n "$1" -o link | cut -d' ' -f2; ip netns exec "$1" nft list ruleset; } 2>&1
}

# wait_vpn_listed NS CONFIG COUNTRY PK: `vpn list -c COUNTRY --json` lists exactly PK (bounded wait).
wait_vpn_listed() {
    local listing="" i
    for i in $(seq 1 50); do
        listing=$(ip netns exec "$1" "$SKYWIRE_BIN" cli vpn list --config "$2" -c "$3" --json 2>&1) || true
        if jq -e --arg pk "$4" 'length == 1 and .[0].pk == $pk' <<<"$listing" >/dev/null 2>&1; then echo "$listing"; return 0; fi
        sleep 0.2
    done
    echo "$listing"
    return 1
}

# fetch_via_vpn NS DESC: a download from the "internet" host through the tunnel with a matching
# checksum, and the host saw the exit NAT's address (198.51.100.12), not the client's NAT.
# expect_exit_stats N DESC: within 6 s, F's `vpn list -c JP --stats --json` shows N connected clients.
expect_exit_stats() {
    local stats=""
    for _ in $(seq 1 30); do
        stats=$(ip netns exec $PRIV "$SKYWIRE_BIN" cli vpn list --config "$T_WORK/f.json" -c JP --stats --json 2>&1) || true
        jq -e --argjson n "$1" '.[0].stats.connected == $n' <<<"$stats" >/dev/null 2>&1 && break
        sleep 0.2
    done
    jq -e --argjson n "$1" '.[0].stats.connected == $n' <<<"$stats" >/dev/null 2>&1 \
        && pass "[$label] vpn list --stats: $2" || fail "[$label] vpn list --stats ($2): $stats"
}

# expect_vpn_connected VISOR TRANSPORT: `vpn status` of VISOR says connected over TRANSPORT.
expect_vpn_connected() {
    local st
    st=$(cli "$1" vpn status --json 2>&1) || true
    if [ "$(jq -r .info.state <<<"$st")" = connected ] && [ "$(jq -r .info.transport <<<"$st")" = "$2" ]; then
        pass "[$label] vpn status: connected over $2"
    else
        fail "[$label] vpn status: $st"
    fi
}

fetch_via_vpn() {
    local ns=$1 desc=$2 got="" lines
    lines=$(wc -l <"$T_WORK/http.log")
    for _ in $(seq 1 10); do
        got=$( (ip netns exec "$ns" curl -fsS --max-time 10 http://198.51.100.1:8080/small.bin 2>>"$T_WORK/curl.err" || true) | sha256sum | cut -d' ' -f1)
        [ "$got" = "$WANT_SUM" ] && break
        sleep 0.3
    done
    if [ "$got" = "$WANT_SUM" ]; then pass "[$label] $desc: download through the VPN (checksum matches)"; else fail "[$label] $desc: checksum $got, want $WANT_SUM: $(tail -3 "$T_WORK/curl.err" 2>/dev/null)"; fi
    local seen
    seen=$(tail -n +$((lines + 1)) "$T_WORK/http.log" | grep '"GET /small.bin' || true)
    if grep -q '^198\.51\.100\.12 ' <<<"$seen" && ! grep -qE '^198\.51\.100\.1[13] ' <<<"$seen"; then
        pass "[$label] $desc: the internet host saw the exit NAT's address 198.51.100.12 only"
    else
        fail "[$label] $desc: the internet host saw: $seen"
    fi
}

# Both ends behind NATs: Y (exit, NAT2) and F (client, NAT1) meet through discovery; the VPN runs
# over a punched sudph transport. Also: -t bounds the resolve and dial of proxy/vpn start.
check_two_nat_vpn() {
    visor_start y $PRIV2
    visor_start f $PRIV
    local listing ok=0
    if listing=$(wait_vpn_listed $PRIV "$T_WORK/f.json" JP "$PKY"); then
        pass "[$label] behind NAT 1, vpn list -c JP --json finds exactly the exit behind NAT 2"
    else
        fail "[$label] vpn list -c JP from behind the NAT: $listing"
    fi
    jq -e --arg pk "$PKY" '.transport.peers | has($pk) | not' "$T_WORK/f.json" >/dev/null \
        && pass "[$label] the client has no peers entry for the exit" || fail "[$label] f.json lists the exit in transport.peers"
    for _ in $(seq 1 25); do
        http GET "/v1/transports/$PKY" | grep -qE '"sudph":"198\.51\.100\.12:[0-9]+"' && { ok=1; break; }
        sleep 0.2
    done
    [ $ok = 1 ] && pass "[$label] the exit is bound at the rendezvous at its NAT's address" || fail "[$label] exit binding: $(http GET "/v1/transports/$PKY")"

    # -t bounds resolve + dial: U's registered stcpr address swallows SYNs.
    local t0 t1 before_tp
    before_tp=$(cli f tp ls --json | jq -c '[.[] | {remote_pk, type, state}]')
    printf '{"stcpr":["198.51.100.1:7999"],"sudph":false}' >"$T_WORK/tb-u"
    signed u PUT "/v1/transports/$PKU" "$T_WORK/tb-u"
    expect_http "[$label] an unreachable key registered" 200 '"stcpr":\["198\.51\.100\.1:7999"\]' PUT "/v1/transports/$PKU" "$T_WORK/tb-u"
    t0=$(date +%s%N)
    expect_fail "[$label] vpn start -k UNREACHABLE -t 3 names the timeout" "within the timeout of 3 s \(dialling stcpr 198\.51\.100\.1:7999\)" \
        cli f vpn start -k "$PKU" -t 3
    t1=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ $t1 -lt 6000 ]; then pass "[$label] vpn start -t 3 gave up after $t1 ms"; else fail "[$label] vpn start -t 3 took $t1 ms"; fi
    signed u PUT "/v1/transports/$PKU" "$T_WORK/tb-u"
    http PUT "/v1/transports/$PKU" "$T_WORK/tb-u" >/dev/null
    t0=$(date +%s%N)
    expect_fail "[$label] proxy start -k UNREACHABLE -t 3 names the timeout" "within the timeout of 3 s" cli f proxy start -k "$PKU" -t 3
    t1=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ $t1 -lt 6000 ]; then pass "[$label] proxy start -t 3 gave up after $t1 ms"; else fail "[$label] proxy start -t 3 took $t1 ms"; fi
    local after_tp apps
    after_tp=$(cli f tp ls --json | jq -c '[.[] | {remote_pk, type, state}]')
    apps=$(cli f apps ls --json 2>/dev/null | jq -c '[.[] | select(.name == "vpn-client" or .name == "skysocks-client") | .status]' || true)
    if [ "$after_tp" = "$before_tp" ] && ! grep -q "$PKU" <<<"$after_tp" && [ "$apps" = '["stopped","stopped"]' ]; then
        pass "[$label] after the timeouts: no transport to the unreachable key, other transports and apps unchanged"
    else
        fail "[$label] after the timeouts: tp $before_tp -> $after_tp, apps $apps"
    fi
    expect_fail "[$label] -t 0 refused" "timeout must be in 1\.\.\.3600" cli f vpn start -k "$PKY" -t 0

    # The VPN by key alone over a punched sudph transport.
    local before st tps
    before=$(client_snapshot $PRIV)
    t0=$(date +%s%N)
    expect_ok "[$label] vpn start -k PK by key alone (both behind NATs)" cli f vpn start -k "$PKY" -t 20
    t1=$(( ($(date +%s%N) - t0) / 1000000 ))
    log "[$label] two-NAT vpn start took $t1 ms"
    tps=$(cli f tp ls --json 2>&1) || true
    if jq -e --arg pk "$PKY" 'any(.[]; .remote_pk == $pk and .type == "sudph" and (.remote_addr | startswith("198.51.100.12:")) and .state == "up")
                               and (map(select(.remote_pk == $pk and .type == "stcpr")) | length == 0)' <<<"$tps" >/dev/null 2>&1; then
        pass "[$label] tp ls --json: sudph, up, to the exit NAT's address (no stcpr)"
    else
        fail "[$label] tp ls --json (want sudph up to 198.51.100.12:*): $tps"
    fi
    expect_vpn_connected f sudph
    fetch_via_vpn $PRIV "two NATs, sudph"
    # The exit reports its connected clients in its service entry (refreshed every ttl/3).
    expect_exit_stats 1 "the exit reports 1 connected client"
    expect_ok "[$label] vpn stop" cli f vpn stop
    expect_exit_stats 0 "0 connected after vpn stop"
    local stats
    stats=$(ip netns exec $PRIV "$SKYWIRE_BIN" cli vpn list --config "$T_WORK/f.json" -c JP --stats 2>&1) || true
    grep -q "connected=0" <<<"$stats" && pass "[$label] vpn list --stats (text) shows connected=0" || fail "[$label] vpn list --stats text: $stats"
    if [ "$(client_snapshot $PRIV)" = "$before" ]; then pass "[$label] vpn stop restores the client's routes, links and nftables"
    else fail "[$label] after vpn stop: $(diff <(echo "$before") <(client_snapshot $PRIV))"; fi
    visor_stop f
}

# A client behind the symmetric NAT: the punched sudph handshake cannot get through, so the
# dial falls back to the exit's stcpr address (its NAT's port forward) after the punch schedule.
check_symmetric_fallback() {
    visor_start s $PRIV3
    local listing before t0 t1 tps st
    if listing=$(wait_vpn_listed $PRIV3 "$T_WORK/s.json" JP "$PKY"); then
        pass "[$label] behind the symmetric NAT, vpn list -c JP finds the exit"
    else
        fail "[$label] vpn list -c JP behind the symmetric NAT: $listing"
    fi
    before=$(client_snapshot $PRIV3)
    t0=$(date +%s%N)
    expect_ok "[$label] vpn start -k PK behind a symmetric NAT" cli s vpn start -k "$PKY" -t 20
    t1=$(( ($(date +%s%N) - t0) / 1000000 ))
    tps=$(cli s tp ls --json 2>&1) || true
    if jq -e --arg pk "$PKY" 'any(.[]; .remote_pk == $pk and .type == "stcpr" and .remote_addr == "198.51.100.12:7777" and .state == "up")
                               and (map(select(.remote_pk == $pk and .type == "sudph")) | length == 0)' <<<"$tps" >/dev/null 2>&1; then
        pass "[$label] tp ls --json: fell back to stcpr 198.51.100.12:7777 (no sudph)"
    else
        fail "[$label] tp ls --json (want stcpr up to 198.51.100.12:7777): $tps"
    fi
    # The punch schedule: 5 s of sudph, then stcpr (the usual handshake timers would take 10 s+).
    if [ $t1 -ge 4500 ] && [ $t1 -lt 9000 ]; then pass "[$label] the stcpr fallback took $t1 ms (punch schedule 5 s)"
    else fail "[$label] the stcpr fallback took $t1 ms, want 4.5-9 s"; fi
    log "[$label] symmetric NAT: vpn start with the stcpr fallback took $t1 ms"
    grep -qE "no handshake response from 198\.51\.100\.12:[0-9]+ within 5 s, resent every 250 ms after a punch" "$T_WORK/s.log" \
        && pass "[$label] the client logs the punched sudph dial giving up after 5 s" \
        || fail "[$label] no punched-dial failure in s.log"
    expect_vpn_connected s stcpr
    fetch_via_vpn $PRIV3 "symmetric NAT, stcpr"
    expect_ok "[$label] vpn stop (symmetric NAT)" cli s vpn stop
    if [ "$(client_snapshot $PRIV3)" = "$before" ]; then pass "[$label] vpn stop restores the symmetric-NAT client"
    else fail "[$label] after vpn stop: $(diff <(echo "$before") <(client_snapshot $PRIV3))"; fi
    visor_stop s
    visor_stop y
}

run_suite() {  # run_suite DB_URL LABEL
    local db=$1 label=$2
    log "=== backend: $label"
    # >>> discovery helper (issue 16): this test deployment is private: visors behind the NATs
    # advertise their LAN listeners (E: 10.99.1.2:7777), which a public service refuses
    # (check_public_service runs one without the setting).
    ip netns exec $PUB "$DISC_BIN" --http 198.51.100.1:9090 --udp 198.51.100.1:9091 --db "$db" --ttl $TTL \
        --allow-private-addresses >>"$T_WORK/discovery-$label.log" 2>&1 &
    # <<< discovery helper
    local pid=$!
    T_PIDS+=("$pid")
    for _ in $(seq 1 50); do
        in_cli curl -s -m 1 -o /dev/null "$URL/v1/info" && break
        kill -0 $pid 2>/dev/null || die "skywire-discovery ($label) exited: $(tail -5 "$T_WORK/discovery-$label.log")"
        sleep 0.1
    done
    expect_http "[$label] info" 200 '"udp":"198.51.100.1:9091".*"ttl":4' GET /v1/info

    # Registration and filtered listing.
    local bde bfr
    bde=$(service_body DE berlin); bfr=$(service_body FR paris)
    signed a PUT "/v1/services/vpn/$PKA" "$bde"; expect_http "[$label] A registers a DE exit" 200 '"country":"DE"' PUT "/v1/services/vpn/$PKA" "$bde"
    cp "$T_WORK/h" "$T_WORK/h-replay"
    signed b PUT "/v1/services/vpn/$PKB" "$bfr"; expect_http "[$label] B registers a FR exit" 200 '"country":"FR"' PUT "/v1/services/vpn/$PKB" "$bfr"
    expect_http "[$label] list filtered by country" 200 "^200 \\{\"services\":\\[\\{\"pk\":\"$PKA\"[^]]*\\]\\}$" GET "/v1/services/vpn?country=DE"
    local listing
    listing=$(in_cli "$SKYWIRE_BIN" cli vpn list --discovery "$URL" -c FR --json 2>&1) || true
    if jq -e --arg pk "$PKB" 'length == 1 and .[0].pk == $pk and .[0].country == "FR"' <<<"$listing" >/dev/null 2>&1; then
        pass "[$label] skywire cli vpn list -c FR --json"
    else
        fail "[$label] skywire cli vpn list -c FR --json: $listing"
    fi
    listing=$(in_cli "$SKYWIRE_BIN" cli vpn list --discovery "$URL" --stats 2>&1) || true
    if grep -q "$PKA" <<<"$listing" && grep -q "$PKB" <<<"$listing" && grep -qi connected <<<"$listing"; then
        pass "[$label] skywire cli vpn list --stats"
    else
        fail "[$label] skywire cli vpn list --stats: $listing"
    fi

    # Refused writes. B registers again first: the checks below take several signing runs, and on a
    # loaded machine they outlasted the 4 s TTL, so "B's entry intact" failed on expiry, not on a write.
    signed b PUT "/v1/services/vpn/$PKB" "$bfr"; expect_http "[$label] B refreshes its FR exit" 200 '"country":"FR"' PUT "/v1/services/vpn/$PKB" "$bfr"
    local b_refreshed=$(date +%s)
    cp "$T_WORK/h-replay" "$T_WORK/h"
    expect_http "[$label] replayed write refused" 401 "nonce already used" PUT "/v1/services/vpn/$PKA" "$bde"
    signed a PUT "/v1/services/vpn/$PKB" "$bde"
    expect_http "[$label] write for another key refused" 403 "signed by" PUT "/v1/services/vpn/$PKB" "$bde"
    signed a PUT "/v1/services/vpn/$PKB" "$bde"
    sed -i "s/^Skywire-PK: .*/Skywire-PK: $PKB/" "$T_WORK/h"
    expect_http "[$label] forged write (B's key, A's signature) refused" 401 "bad signature" PUT "/v1/services/vpn/$PKB" "$bde"
    signed a PUT "/v1/services/vpn/$PKA" "$bde"
    expect_http "[$label] body changed after signing refused" 401 "bad signature" PUT "/v1/services/vpn/$PKA" "$bfr"
    signed a PUT "/v1/services/vpn/$PKA" "$bde" --timestamp-ms $(( $(date +%s%3N) - 120000 ))
    expect_http "[$label] stale timestamp refused" 401 "from the service clock" PUT "/v1/services/vpn/$PKA" "$bde"
    head -c 5000 /dev/zero | tr '\0' ' ' >"$T_WORK/big"
    signed a PUT "/v1/services/vpn/$PKA" "$T_WORK/big"
    expect_http "[$label] oversized body refused" 413 "at most 4096" PUT "/v1/services/vpn/$PKA" "$T_WORK/big"
    printf '{"version":"0.1.0","country":"DE",' >"$T_WORK/bad"
    signed a PUT "/v1/services/vpn/$PKA" "$T_WORK/bad"
    expect_http "[$label] malformed body refused" 400 "malformed JSON" PUT "/v1/services/vpn/$PKA" "$T_WORK/bad"
    local unsigned
    unsigned=$(in_cli curl -s -m 5 -X PUT -w ' %{http_code}' --data-binary @"$bde" "$URL/v1/services/vpn/$PKA") || true
    if [[ $unsigned == *"missing header"*" 401" ]]; then pass "[$label] unsigned write refused"; else fail "[$label] unsigned write: $unsigned"; fi
    # B's entry is unchanged by all of the above (checked only while its TTL has not run out).
    if [ $(( $(date +%s) - b_refreshed )) -lt "$TTL" ]; then
        expect_http "[$label] B's entry intact" 200 "\"pk\":\"$PKB\".*\"label\":\"paris\"" GET "/v1/services/vpn?country=FR"
    else
        log "[$label] B's entry not checked: the refused writes took longer than the ${TTL} s TTL (a loaded machine)"
    fi

    check_rendezvous
    check_visor_registration
    check_connect_by_key
    check_two_nat_vpn
    check_symmetric_fallback

    # TTL: A keeps refreshing, B does not; after the TTL only A is listed.
    local end=$(( $(date +%s) + TTL + 2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        signed a PUT "/v1/services/vpn/$PKA" "$bde"
        [ "$(http PUT "/v1/services/vpn/$PKA" "$bde" | cut -d' ' -f1)" = 200 ] || fail "[$label] refresh of A failed"
        sleep 1
    done
    expect_http "[$label] unrefreshed entry gone after its TTL" 200 '^200 \{"services":\[\]\}$' GET "/v1/services/vpn?country=FR"
    expect_http "[$label] refreshed entry still listed" 200 "\"pk\":\"$PKA\"" GET "/v1/services/vpn?country=DE"
    signed a DELETE "/v1/services/vpn/$PKA"
    expect_http "[$label] delete" 204 "" DELETE "/v1/services/vpn/$PKA"
    expect_http "[$label] deleted entry gone" 200 '^200 \{"services":\[\]\}$' GET "/v1/services/vpn"

    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
}

# >>> discovery helper (issue 16): a public service (no --allow-private-addresses, tight
# per-address write limit) and the visor's resolver with DNS down.
URL2=http://198.51.100.1:9190
# A service as on the internet: LAN addresses refused, a visor behind the NAT still registers
# (without its LAN listener), lists are paged, a write flood from one address is answered 429
# while reads go on, and slow clients are cut at the 10 s request deadline.
check_public_service() {
    local label=public URL=$URL2
    ip netns exec $PUB "$DISC_BIN" --http 198.51.100.1:9190 --udp 198.51.100.1:9191 --db "sqlite:$T_WORK/public.sqlite" --ttl $TTL \
        --ip-rate 2 --ip-burst 40 >>"$T_WORK/discovery-public.log" 2>&1 &
    local pid=$!
    T_PIDS+=("$pid")
    for _ in $(seq 1 50); do
        in_cli curl -s -m 1 -o /dev/null "$URL/v1/info" && break
        kill -0 $pid 2>/dev/null || die "skywire-discovery (public) exited: $(tail -5 "$T_WORK/discovery-public.log")"
        sleep 0.1
    done
    expect_http "[public] info says private addresses are refused" 200 '"private_addresses":false' GET /v1/info
    printf '{"stcpr":["10.99.1.2:7777"],"sudph":true}' >"$T_WORK/tb-lan"
    signed a PUT "/v1/transports/$PKA" "$T_WORK/tb-lan"
    expect_http "[public] a LAN stcpr address is refused" 400 "10\.99\.1\.2:7777 is a private address.*public addresses only" PUT "/v1/transports/$PKA" "$T_WORK/tb-lan"
    printf '{"stcpr":["127.0.0.1:7777"]}' >"$T_WORK/tb-lo"
    signed a PUT "/v1/transports/$PKA" "$T_WORK/tb-lo"
    expect_http "[public] a loopback stcpr address is refused" 400 "loopback" PUT "/v1/transports/$PKA" "$T_WORK/tb-lo"
    printf '{"stcpr":["198.51.100.2:7777"]}' >"$T_WORK/tb-pub"
    signed a PUT "/v1/transports/$PKA" "$T_WORK/tb-pub"
    expect_http "[public] a public stcpr address is accepted" 200 '"stcpr":\["198\.51\.100\.2:7777"\]' PUT "/v1/transports/$PKA" "$T_WORK/tb-pub"
    # P: a visor behind the NAT listening on its LAN address: it registers without it, and its
    # sudph socket is bound at the NAT's public address (BIND_OK echoes the BIND token).
    jq --arg sock "$T_WORK/p.sock" --arg state "$T_WORK/p-state" '.transport.discovery = "http://198.51.100.1:9190"
        | .transport.listen_addr = "10.99.1.2" | .transport.stcpr_port = 7797 | .transport.sudph_port = 7798
        | .cli_addr = $sock | .state_dir = $state' "$T_WORK/e.json" >"$T_WORK/p.tmp"
    install -m 600 "$T_WORK/p.tmp" "$T_WORK/p.json"
    visor_start p $PRIV
    local entry
    entry=$(wait_entry "$PKE" '"stcpr":\[\],"sudph":"198\.51\.100\.11:[0-9]+"')
    if grep -qE '^200 .*"stcpr":\[\],"sudph":"198\.51\.100\.11:[0-9]+"' <<<"$entry"; then
        pass "[public] a visor behind the NAT registers without its LAN listener, sudph bound at the NAT's address"
    else
        fail "[public] registration of the visor behind the NAT: $entry"
    fi
    grep -q "not advertising 10.99.1.2:7797" "$T_WORK/p.log" && pass "[public] the visor logs the address it does not advertise" \
        || fail "[public] no 'not advertising' line in p.log"
    grep -q "the rendezvous observes this visor at 198.51.100.11:" "$T_WORK/p.log" && pass "[public] BIND_OK with the BIND token accepted" \
        || fail "[public] no BIND_OK observed address in p.log"
    visor_stop p
    # Paging: three exits, listed one per page by the CLI, and bounded by --max.
    local k
    for k in a b c; do
        local pkv="PK${k^^}" body
        body=$(service_body DE "x$k")
        signed $k PUT "/v1/services/vpn/${!pkv}" "$body"
        [ "$(http PUT "/v1/services/vpn/${!pkv}" "$body" | cut -d' ' -f1)" = 200 ] || fail "[public] register exit $k"
    done
    local want listing
    want=$(printf '%s\n' "$PKA" "$PKB" "$PKC" | sort | jq -R . | jq -sc .)
    listing=$(in_cli "$SKYWIRE_BIN" cli vpn list --discovery "$URL" --page-size 1 --json 2>&1) || true
    if [ "$(jq -c 'map(.pk)' <<<"$listing" 2>/dev/null)" = "$want" ]; then pass "[public] cli vpn list pages through three pages of one"
    else fail "[public] cli vpn list --page-size 1: $listing (want $want)"; fi
    listing=$(in_cli "$SKYWIRE_BIN" cli vpn list --discovery "$URL" --max 2 --json 2>"$T_WORK/list.err") || true
    if [ "$(jq length <<<"$listing" 2>/dev/null)" = 2 ] && grep -q "showing the first 2 servers" "$T_WORK/list.err"; then
        pass "[public] cli vpn list --max 2 shows two and says there are more"
    else fail "[public] cli vpn list --max 2: $listing / $(cat "$T_WORK/list.err")"; fi
    expect_http "[public] the unpaged list keeps the old shape" 200 '^200 \{"services":\[[^]]*\]\}$' GET /v1/services/vpn
    # Slowloris: 40 connections that never finish their request head are all closed within
    # the 10 s request deadline (+ margin); the service answers meanwhile.
    in_cli "$HOSTILE_BIN" slowloris --to 198.51.100.1:9190 --connections 40 --interval-ms 300 --max-seconds 25 >"$T_WORK/slowloris.out" 2>&1 &
    local sl=$!
    T_PIDS+=("$sl")
    sleep 2
    expect_http "[public] answers while 40 slow clients hold connections" 200 '"ttl":4' GET /v1/info
    wait $sl || true
    local out
    out=$(cat "$T_WORK/slowloris.out")
    local last=${out##*last_closed_s=}
    if [[ $out == *"opened=40 "*"closed_by_server=40 still_open=0"* ]] && [ "${last%%.*}" -le 14 ]; then
        pass "[public] slow clients cut at the request deadline ($out)"
    else fail "[public] slowloris: $out"; fi
    # A write flood from one address: 429 with Retry-After once its burst (40) is spent; reads go on.
    local codes="" i
    for i in $(seq 1 60); do
        codes+=" $(in_cli curl -s -m 5 -D "$T_WORK/flood-$i.hdr" -o /dev/null -w '%{http_code}' -X DELETE "$URL/v1/transports/$PKA")"
    done
    local n429
    n429=$(tr ' ' '\n' <<<"$codes" | grep -c '^429$' || true)
    if [ "$n429" -ge 10 ]; then pass "[public] write flood from one address: $n429 of 60 answered 429"
    else fail "[public] write flood: codes$codes"; fi
    local with_retry
    with_retry=$(cat "$T_WORK"/flood-*.hdr | grep -ciE '^retry-after: [0-9]+' || true)
    if [ "$with_retry" = "$n429" ]; then pass "[public] every 429 carries Retry-After"
    else fail "[public] $with_retry Retry-After headers for $n429 answers 429"; fi
    expect_http "[public] reads still answered during the flood" 200 '"ttl":4' GET /v1/info
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
}

# DNS down: visor Q reaches A over sudph by a name from its hosts file; then the name is removed
# from that file (so it needs DNS, whose server 192.0.2.53 drops port 53) and A stops (its CLOSE
# makes Q redial at once, by name, every backoff step). resolv.conf and hosts are bind-mounted in
# a private mount namespace; Q runs on one CPU (one event loop). Q's control socket must keep
# answering while each redial waits in getaddrinfo(3) (the lookup runs off the event loops).
check_dns_down_redial() {
    local ns=skwt-dc-dns$$ sink=skwt-dc-dsk$$
    netns_add $ns
    netns_add $sink
    veth_pair $ns skwt-dcq0 192.0.2.1/24 $sink skwt-dcq1 192.0.2.53/24
    ip netns exec $sink nft -f - <<'EOF'
table inet skwt_dc_dns {
    chain in { type filter hook input priority 0; udp dport 53 drop; tcp dport 53 drop; }
}
EOF
    printf 'nameserver 192.0.2.53\noptions timeout:3 attempts:1\n' >"$T_WORK/resolv-down.conf"
    printf '127.0.0.1 localhost\n192.0.2.53 peer.example\n' >"$T_WORK/hosts-q"
    visor_config q >/dev/null
    jq --arg pk "$PKA" '.transport.peers = {($pk): {"sudph": "peer.example:7778"}}' "$T_WORK/q.json" >"$T_WORK/q.tmp"
    install -m 600 "$T_WORK/q.tmp" "$T_WORK/q.json"
    visor_start a $sink
    ip netns exec $ns unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && exec taskset -c 0 "$3" visor -c "$4"' \
        sh "$T_WORK/resolv-down.conf" "$T_WORK/hosts-q" "$SKYWIRE_BIN" "$T_WORK/q.json" >>"$T_WORK/q.log" 2>&1 &
    local pid=$!
    T_PIDS+=("$pid")
    PID_q=$pid
    for _ in $(seq 1 100); do
        cli q visor info >/dev/null 2>&1 && break
        kill -0 $pid 2>/dev/null || die "visor q exited early: $(tail -5 "$T_WORK/q.log")"
        sleep 0.1
    done
    expect_ok "[dns] Q reaches A over sudph by name (hosts file)" timeout 15 "$SKYWIRE_BIN" cli --rpc "$T_WORK/q.sock" tp add "$PKA" -t sudph
    : >"$T_WORK/hosts-q"   # truncated in place: the bind mount keeps showing this file
    visor_stop a
    local worst=0 t0 t1 ms end=$(( $(date +%s) + 20 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        t0=$(date +%s%3N)
        timeout 15 "$SKYWIRE_BIN" cli --rpc "$T_WORK/q.sock" visor info >/dev/null 2>&1 || true
        t1=$(date +%s%3N)
        ms=$(( t1 - t0 ))
        [ $ms -gt $worst ] && worst=$ms
        kill -0 $pid 2>/dev/null || die "visor q exited: $(tail -5 "$T_WORK/q.log")"
        sleep 0.2
    done
    local tp redials
    tp=$(timeout 15 "$SKYWIRE_BIN" cli --rpc "$T_WORK/q.sock" tp ls --json 2>&1) || true
    redials=$(grep -c "redialling" "$T_WORK/q.log" || true)
    grep -q "cannot resolve peer.example" <<<"$tp" || fail "[dns] the redial did not wait for the resolver: tp ls: $tp"
    if [ $worst -lt 2000 ]; then pass "[dns] visor info answers within ${worst} ms at worst during $redials redials waiting for DNS"
    else fail "[dns] visor info took ${worst} ms during $redials redials waiting for DNS"; fi
    visor_stop q
}
HOSTILE_BIN=$(dirname "$SKYWIRE_BIN")/skywire-hostile
[ -x "$HOSTILE_BIN" ] || die "$HOSTILE_BIN not found: build it with 'swift build' (product skywire-hostile)"
check_public_service
check_dns_down_redial
# <<< discovery helper

run_suite "sqlite:$T_WORK/discovery.sqlite" sqlite
pg_start
run_suite "postgresql://postgres@/postgres?host=$T_WORK/pg&port=54330" postgresql
pg_stop
finish
