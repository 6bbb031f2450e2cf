#!/usr/bin/env bash
# VPN benchmark: skywire's vpn-server/vpn-client over sudph and over stcpr against wireguard-go
# and OpenVPN, and the plain path, on the same namespace topology in one run (the team's
# harness, see socks.sh). RUNS=N (default 3) runs every peer N times, rotating which peer goes
# first, so that the medians and the ratios come from the same minutes.
# Progress goes to stderr; stdout is one JSON object: every harness line (tagged .peer, .run),
# per-peer medians, the ratios the issue-17 targets are stated in, and whether they are met.
#
# PEERS: wireguard-go openvpn skywire-sudph skywire-stcpr (default); `skywire` means both
#        skywire rows (`skywire-T` for each T in TRANSPORTS, default "sudph stcpr").
# SKYWIRE_BIN_BASE: a second skywire binary (e.g. main's) run as rows skywire-T-base beside
#        every skywire-T row, same configs, same minutes (an A/B of two builds).
# WG_GO: the wireguard-go binary. Default: Debian trixie's, unpacked (not installed) by the
#        harness's fetch-peers.sh; WG_GO=wireguard-go selects the installed (bookworm) one.
RUNS=${RUNS:-3}
TRANSPORTS=${TRANSPORTS:-sudph stcpr}
PEERS=${PEERS:-wireguard-go openvpn skywire}
# The issue-17 targets (docs/vpn.md §9): sudph >= 2x wireguard-go at <= 3 CPU-s/GB, stcpr >= 0.8x sudph.
TARGET_SUDPH_VS_WG=2
TARGET_CPU_S_PER_GB=3
TARGET_STCPR_VS_SUDPH=0.8
TRANSPORT=${TRANSPORTS%% *}
. "$(dirname "$0")/lib.sh"
need_harness vpn.sh
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench/vpn.sh: RUNS must be a positive integer" >&2; exit 2; }

rows=()
for peer in $PEERS; do
    case $peer in
    skywire) for t in $TRANSPORTS; do rows+=("skywire-$t"); [ -z "${SKYWIRE_BIN_BASE:-}" ] || rows+=("skywire-$t-base"); done ;;
    skywire-sudph|skywire-stcpr) rows+=("$peer"); [ -z "${SKYWIRE_BIN_BASE:-}" ] || rows+=("$peer-base") ;;
    wireguard-go|openvpn|baseline) rows+=("$peer") ;;
    *) echo "bench/vpn.sh: unknown peer $peer" >&2; exit 2 ;;
    esac
done

wg_go=
if [[ " ${rows[*]} " == *" wireguard-go "* ]]; then
    wg_go=${WG_GO:-$("$H/fetch-peers.sh" wireguard-go)}
    echo "bench/vpn.sh: wireguard-go = $wg_go ($("$wg_go" --version 2>/dev/null | head -1))" >&2
fi

# The exit leaves through pfs1 (the harness's pfsrv→pfnet link; PF_EXIT_IF= for a harness copy
# with another prefix). One client config per transport.
bench_configs '(.launcher.apps[] | select(.name=="vpn-server")) |= (.auto_start=true | .args=["-i",$ENV.PF_EXIT_IF // "pfs1","--whitelist",$c])' \
    '(.launcher.apps[] | select(.name=="vpn-client")) |= (.auto_start=true | .args=["-k",$s])'
for t in $TRANSPORTS; do
    case $t in sudph) port=7778 ;; stcpr) port=7777 ;; *) echo "bench/vpn.sh: unknown transport $t" >&2; exit 2 ;; esac
    jq --arg s "$SRV" --arg t "$t" --arg a "$BENCH_SRV_IP:$port" '.transport.peers[$s] = {($t): $a}' \
        "$work/cli.json" >"$work/t" && install -m600 "$work/t" "$work/cli-$t.json"
done

n=${#rows[@]}
for run in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((n - 1))); do
        peer=${rows[$(( (i + run - 1) % n ))]}
        echo "bench/vpn.sh: run $run/$RUNS: $peer" >&2
        case $peer in
        skywire-*)
            t=${peer#skywire-}; t=${t%-base}
            bin=$BIN; [[ $peer != *-base ]] || bin=$SKYWIRE_BIN_BASE
            line=$(LABEL="$peer" VPN_SERVER_CMD="exec $bin visor -c $work/srv.json" \
                   VPN_CLIENT_CMD="sleep 1; exec $bin visor -c $work/cli-$t.json" \
                   "$H/vpn.sh" cmd | tail -n 1) ;;
        wireguard-go)
            line=$(WG_GO="$wg_go" "$H/vpn.sh" wireguard-go | tail -n 1) ;;
        *)
            line=$("$H/vpn.sh" "$peer" | tail -n 1) ;;
        esac
        jq -c --arg p "$peer" --argjson r "$run" '. + {peer: $p, run: $r}' <<<"${line:-"{\"error\":\"no output\"}"}"
    done
done | jq -s --arg runs "$RUNS" --arg wgbin "$wg_go" \
    --argjson tw "$TARGET_SUDPH_VS_WG" --argjson tc "$TARGET_CPU_S_PER_GB" --argjson ts "$TARGET_STCPR_VS_SUDPH" '
    def median: map(select(. != null)) | sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r2: if . == null then null else . * 100 | round / 100 end;
    def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b | r2 end;
    def tests: ["up1", "up4", "down1", "down4"];
    # Per peer: the median over its runs of every summary figure.
    (group_by(.peer) | map({key: .[0].peer, value: (
        (map(.summary // {} | to_entries) | add // [] | group_by(.key)
            | map({key: .[0].key, value: (map(.value) | median | r2)}) | from_entries)
        + {runs: length, errors: ([.[] | select(.error) | .error] | length),
           loadavg_start: [.[].loadavg_start], peak_rss_kb: ([.[].peak_rss_kb // empty] | last)})}) | from_entries) as $m
    | ($m["wireguard-go"] // {}) as $wg | ($m["skywire-sudph"] // {}) as $su | ($m["skywire-stcpr"] // {}) as $st
    | def rat($a; $b; $f): (tests | map({key: ., value: ratio($a[. + $f]; $b[. + $f])}) | from_entries);
      def cpu($p): (tests | map({key: ., value: $p[. + "_cpu_s_per_GB"]}) | from_entries);
      def worst: [.[] | select(. != null)] | if length == 0 then null else min end;
    {
        kind: "vpn-bench",
        runs: ($runs | tonumber),
        wireguard_go: $wgbin,
        peers: .,
        medians: $m,
        ratios: {
            sudph_vs_wireguard_go: rat($su; $wg; "_mbps"),
            stcpr_vs_sudph: rat($st; $su; "_mbps"),
            sudph_vs_openvpn: rat($su; ($m.openvpn // {}); "_mbps"),
            sudph_vs_base: rat($su; ($m["skywire-sudph-base"] // {}); "_mbps")
        },
        cpu_s_per_GB: ($m | with_entries(.value = cpu(.value))),
        ping_median_ms: ($m | with_entries(.value = .value.ping_median_ms))
    }
    | .targets = {
        sudph_vs_wireguard_go: {want: $tw, worst: (.ratios.sudph_vs_wireguard_go | worst)},
        sudph_cpu_s_per_GB: {want_at_most: $tc, worst: (cpu($su) | [.[] | select(. != null)] | if length == 0 then null else max end)},
        stcpr_vs_sudph: {want: $ts, worst: (.ratios.stcpr_vs_sudph | worst)},
        ping_sudph_vs_wireguard_go: {want_at_most: 1, ratio: ratio($su.ping_median_ms; $wg.ping_median_ms)}
      }
    # met: null when a figure is missing (a peer not run, or failed).
    | .targets |= with_entries(.value.met = (
        if .value.want then (if .value.worst == null then null else .value.worst >= .value.want end)
        elif .value.ratio != null then .value.ratio <= .value.want_at_most
        elif (.value | has("ratio")) or .value.worst == null then null
        else .value.worst <= .value.want_at_most end))'
