#!/bin/bash
# Build-time hook of the gateway overlay (runs on the host; $ROOT is the rootfs).
# The LAN interface, its address and the exit come from skywire-provision.json's "gateway"
# field at boot (setup.d/55-gateway and 50-apps); nothing board-specific is fixed here.
set -euo pipefail
systemctl --root="$ROOT" enable skywire-gateway-fence.service >/dev/null 2>&1
chmod 755 "$ROOT/usr/lib/skywire/setup.d/55-gateway"
install -D -m 644 "$REPO_DOCS/gateway.md" "$ROOT/usr/share/doc/skywire/gateway.md" 2>/dev/null || true
