#!/usr/bin/env bash
# VPN benchmark: skywire's vpn-server/vpn-client against wireguard-go and OpenVPN, and the
# plain path, on the same namespace topology in one run (the team's harness, see socks.sh).
# Prints one JSON object with each peer's line and a summary.
TRANSPORT=${TRANSPORT:-sudph}
PEERS=${PEERS:-wireguard-go openvpn skywire}
. "$(dirname "$0")/lib.sh"
need_harness vpn.sh

# The exit leaves through pfs1 (the harness's pfsrv→pfnet link).
bench_configs '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["-i","pfs1","--whitelist",$c])' \
    '(.launcher.apps[] | select(.name=="vpn-client")) |= (.auto_start=true | .args=["-k",$s])'

for peer in $PEERS; do
    case $peer in
    skywire)
        line=$(LABEL="skywire-$TRANSPORT" VPN_SERVER_CMD="exec $BIN visor -c $work/srv.json" \
               VPN_CLIENT_CMD="sleep 1; exec $BIN visor -c $work/cli.json" \
               "$H/vpn.sh" cmd | tail -n 1) ;;
    *)
        line=$("$H/vpn.sh" "$peer" | tail -n 1) ;;
    esac
    jq -c --arg p "$peer" '. + {peer: $p}' <<<"$line"
done | bench_report vpn-bench
