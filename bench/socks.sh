#!/usr/bin/env bash
# SOCKS5 benchmark: the skysocks apps (encrypted, over an stcpr or sudph transport) against
# microsocks, dante and two references for the two-hop shape (relay-chain: nginx stream ->
# microsocks; swift-epoll: bench/reference/epoll-relay.swift) on the same namespace
# topology, in one run, using the team's bench
# harness (SKYWIRE_BENCH_HARNESS, default ../shared/bench beside the checkout).
# Prints one JSON object: the harness's line per peer and a summary.
TRANSPORT=${TRANSPORT:-stcpr}
PEERS=${PEERS:-microsocks dante relay-chain swift-epoll skywire}
# libnginx-mod-stream (scripts/install-deps.sh --bench) for the relay-chain reference.
NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
. "$(dirname "$0")/lib.sh"
need_harness socks.sh

# Exit visor with skysocks; client visor with skysocks-client on 127.0.0.1:1080.
bench_configs '(.launcher.apps[] | select(.name=="skysocks")) |= (.auto_start=true | .args=["--whitelist",$c])' \
    '(.launcher.apps[] | select(.name=="skysocks-client")) |= (.auto_start=true | .args=["-k",$s,"--addr","127.0.0.1:1080"])'

for peer in $PEERS; do
    case $peer in
    skywire)
        line=$(LABEL="skywire-$TRANSPORT" SOCKS_SERVER_CMD="exec $BIN visor -c $work/srv.json" \
               SOCKS_CLIENT_CMD="exec $BIN visor -c $work/cli.json" SOCKS_SERVER_DELAY=1 \
               "$H/socks.sh" cmd | tail -n 1) ;;
    relay-chain)
        # Reference for the two-hop shape, in C and unencrypted: an nginx `stream` forwarder on
        # 127.0.0.1:1080 in the client namespace -> microsocks at the exit. What it reaches against
        # microsocks alone bounds any client-end -> exit design on this path (docs/socks.md).
        mkdir -p "$work/nginx"
        cat >"$work/nginx.conf" <<EOF
load_module $NGINX_STREAM_MODULE;
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
stream { server { listen 127.0.0.1:1080; proxy_pass $BENCH_SRV_IP:1080; } }
EOF
        line=$(LABEL="relay-chain" SOCKS_SERVER_CMD="exec microsocks -i $BENCH_SRV_IP -p 1080" \
               SOCKS_CLIENT_CMD="exec nginx -c $work/nginx.conf -p $work/nginx" \
               "$H/socks.sh" cmd | tail -n 1) ;;
    swift-epoll)
        # Reference: the same two-hop shape in Swift on raw epoll, without SwiftNIO or encryption
        # (bench/reference/epoll-relay.swift): what a NIO-free Swift datapath costs per request.
        # Request rate only: it has no flow control for bulk transfers.
        swiftc -O -import-objc-header "$root/bench/reference/epoll-relay.h" \
            "$root/bench/reference/epoll-relay.swift" -o "$work/epoll-relay" >&2
        line=$(TESTS=rps LABEL="swift-epoll" SOCKS_SERVER_CMD="exec $work/epoll-relay srv $BENCH_SRV_IP" \
               SOCKS_CLIENT_CMD="exec $work/epoll-relay cli $BENCH_SRV_IP" SOCKS_SERVER_DELAY=1 \
               "$H/socks.sh" cmd | tail -n 1) ;;
    *)
        line=$("$H/socks.sh" "$peer" | tail -n 1) ;;
    esac
    jq -c --arg p "$peer" '. + {peer: $p}' <<<"$line"
done | bench_report socks-bench | jq '
    # The issue-4 targets are relative to microsocks in the same run: bulk >= 2x, requests/s >= 0.66x.
    (.summary.microsocks // null) as $m
    | if $m == null then . else .ratio_vs_microsocks = (.summary | with_entries(select(.key != "microsocks")
        | .value = {dl: (if .value.dl_MBps and $m.dl_MBps then (.value.dl_MBps / $m.dl_MBps * 100 | round / 100) else null end),
                    rps: (if .value.rps and $m.rps then (.value.rps / $m.rps * 100 | round / 100) else null end)}))
      end'
