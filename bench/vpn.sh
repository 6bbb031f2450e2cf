#!/usr/bin/env bash
# VPN benchmark: skywire's vpn-server/vpn-client against wireguard-go and OpenVPN, and the
# plain path, on the same namespace topology in one run (the team's harness, see socks.sh).
# Prints one JSON object with each peer's line and a summary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
H=${SKYWIRE_BENCH_HARNESS:-$root/../shared/bench}
[ -x "$H/vpn.sh" ] || { echo "bench: harness not found at $H (set SKYWIRE_BENCH_HARNESS)" >&2; exit 1; }
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
TRANSPORT=${TRANSPORT:-sudph}
PEERS=${PEERS:-wireguard-go openvpn skywire}
work=$(mktemp -d /tmp/skwbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$BIN" config gen -o "$work/srv.json" --cli-addr "$work/srv.sock" --state-dir "$work/srv" >"$work/srv.pk"
"$BIN" config gen -o "$work/cli.json" --cli-addr "$work/cli.sock" --state-dir "$work/cli" >"$work/cli.pk"
SRV=$(cat "$work/srv.pk")
# The exit leaves through pfs1 (the harness's pfsrv→pfnet link).
jq '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["-i","pfs1"]) | .log_level="warning"' \
    "$work/srv.json" >"$work/t" && install -m600 "$work/t" "$work/srv.json"
jq --arg s "$SRV" '(.launcher.apps[] | select(.name=="vpn-client")) |= (.auto_start=true | .args=["-k",$s])
    | .transport.peers[$s] = (if env.TRANSPORT == "stcpr" then {"stcpr":"10.231.1.1:7777"} else {"sudph":"10.231.1.1:7778"} end)
    | .log_level="warning"' "$work/cli.json" >"$work/t" && install -m600 "$work/t" "$work/cli.json"

results=()
for peer in $PEERS; do
    case $peer in
    skywire)
        line=$(LABEL="skywire-$TRANSPORT" VPN_SERVER_CMD="exec $BIN visor -c $work/srv.json" \
               VPN_CLIENT_CMD="sleep 1; exec $BIN visor -c $work/cli.json" \
               "$H/vpn.sh" cmd | tail -n 1) ;;
    *)
        line=$("$H/vpn.sh" "$peer" | tail -n 1) ;;
    esac
    results+=("$(jq -c --arg p "$peer" '{peer: $p} + .' <<<"$line")")
done
printf '%s\n' "${results[@]}" | jq -s '{
    kind: "vpn-bench",
    transport: env.TRANSPORT,
    peers: .,
    summary: (map({key: .peer, value: (.summary // .error)}) | from_entries)
}'
