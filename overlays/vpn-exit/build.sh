#!/bin/bash
# Build-time hook of the vpn-exit overlay (runs on the host; $ROOT is the rootfs).
# Forwarding and NAT are not configured here: the vpn-server app enables
# net.ipv4.ip_forward, installs its own nftables table (inet skywire_vpn_server) with the
# masquerade and --secure rules when it starts, and removes both when it stops.
set -euo pipefail
exit 0
