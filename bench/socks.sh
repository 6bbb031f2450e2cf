#!/usr/bin/env bash
# SOCKS5 benchmark: the skysocks apps (encrypted, over an stcpr or sudph transport) against
# microsocks and dante on the same namespace topology, in one run, using the team's bench
# harness (SKYWIRE_BENCH_HARNESS, default ../shared/bench beside the checkout).
# Prints one JSON object: the harness's line per peer and a summary.
TRANSPORT=${TRANSPORT:-stcpr}
PEERS=${PEERS:-microsocks dante skywire}
. "$(dirname "$0")/lib.sh"
need_harness socks.sh

# Exit visor with skysocks; client visor with skysocks-client on 127.0.0.1:1080.
bench_configs '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true)' \
    '(.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=true | .args=["-k",$s,"--addr","127.0.0.1:1080"])'

for peer in $PEERS; do
    case $peer in
    skywire)
        line=$(LABEL="skywire-$TRANSPORT" SOCKS_SERVER_CMD="exec $BIN visor -c $work/srv.json" \
               SOCKS_CLIENT_CMD="exec $BIN visor -c $work/cli.json" SOCKS_SERVER_DELAY=1 \
               "$H/socks.sh" cmd | tail -n 1) ;;
    *)
        line=$("$H/socks.sh" "$peer" | tail -n 1) ;;
    esac
    jq -c --arg p "$peer" '. + {peer: $p}' <<<"$line"
done | bench_report socks-bench
