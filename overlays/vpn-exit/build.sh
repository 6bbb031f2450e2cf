#!/bin/bash
# Build-time hook of the vpn-exit overlay (runs on the host; $ROOT is the rootfs).
set -euo pipefail
systemctl --root="$ROOT" enable skywire-vpn-nat.service >/dev/null 2>&1
