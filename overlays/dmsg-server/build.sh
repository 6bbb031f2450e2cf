#!/bin/bash
# Build-time hook of the dmsg-server overlay (runs on the host; $ROOT is the rootfs): installs
# the relay binary and enables its unit (docs/dmsg.md "Running on a board"). Not in any board's
# default overlays. The binary comes from SKYWIRE_DMSG_BIN (built for the board's architecture:
# `swift build -c release --product skywire-dmsg` with the board's cross toolchain).
set -euo pipefail
bin=${SKYWIRE_DMSG_BIN:-}
[ -n "$bin" ] && [ -f "$bin" ] || { echo "dmsg-server overlay: set SKYWIRE_DMSG_BIN to a skywire-dmsg binary for this board (got '${bin}')" >&2; exit 1; }
install -D -m 0755 -o root -g root "$bin" "$ROOT/usr/bin/skywire-dmsg"
systemctl --root="$ROOT" enable skywire-dmsg.service >/dev/null 2>&1
install -D -m 644 "$REPO_DOCS/dmsg.md" "$ROOT/usr/share/doc/skywire/dmsg.md" 2>/dev/null || true
