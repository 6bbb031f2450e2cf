#!/usr/bin/env bash
# SOCKS5 benchmark: the skysocks apps (encrypted, over an stcpr or sudph transport) against
# microsocks and dante on the same namespace topology, in one run, using the team's bench
# harness (SKYWIRE_BENCH_HARNESS, default ../shared/bench beside the checkout).
# Prints one JSON object: the harness's line per peer and a summary with the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
H=${SKYWIRE_BENCH_HARNESS:-$root/../shared/bench}
[ -x "$H/socks.sh" ] || { echo "bench: harness not found at $H (set SKYWIRE_BENCH_HARNESS)" >&2; exit 1; }
BIN=${SKYWIRE_BIN:-$root/.build/release/skywire}
TRANSPORT=${TRANSPORT:-stcpr}
PEERS=${PEERS:-microsocks dante skywire}
work=$(mktemp -d /tmp/skwbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Server (exit) visor in pfsrv with skysocks; client visor in pfcli with skysocks-client.
"$BIN" config gen -o "$work/srv.json" --cli-addr "$work/srv.sock" --state-dir "$work/srv" >"$work/srv.pk"
"$BIN" config gen -o "$work/cli.json" --cli-addr "$work/cli.sock" --state-dir "$work/cli" >"$work/cli.pk"
SRV=$(cat "$work/srv.pk")
jq '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true) | .log_level="warning"' \
    "$work/srv.json" >"$work/t" && install -m600 "$work/t" "$work/srv.json"
jq --arg s "$SRV" '(.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=true | .args=["-k",$s,"--addr","127.0.0.1:1080"])
    | .transport.peers[$s] = (if env.TRANSPORT == "sudph" then {"sudph":"10.231.1.1:7778"} else {"stcpr":"10.231.1.1:7777"} end)
    | .log_level="warning"' "$work/cli.json" >"$work/t" && install -m600 "$work/t" "$work/cli.json"

results=()
for peer in $PEERS; do
    case $peer in
    skywire)
        line=$(LABEL="skywire-$TRANSPORT" SOCKS_SERVER_CMD="exec $BIN visor -c $work/srv.json" \
               SOCKS_CLIENT_CMD="exec $BIN visor -c $work/cli.json" SOCKS_SERVER_DELAY=1 \
               "$H/socks.sh" cmd | tail -n 1) ;;
    *)
        line=$("$H/socks.sh" "$peer" | tail -n 1) ;;
    esac
    results+=("$(jq -c --arg p "$peer" '{peer: $p} + .' <<<"$line")")
done
printf '%s\n' "${results[@]}" | jq -s '{
    kind: "socks-bench",
    transport: env.TRANSPORT,
    peers: .,
    summary: (map({key: .peer, value: (.summary // .error)}) | from_entries)
}'
