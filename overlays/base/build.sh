#!/bin/bash
# Build-time hook of the base overlay (runs on the host; $ROOT is the rootfs).
set -euo pipefail
systemctl --root="$ROOT" enable skywire-setup.service skywire.service skywire-pty.socket ssh.service \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service >/dev/null 2>&1
# No password for anyone: root logs in with SSH keys (or on the console after
# `passwd` from a provisioned SSH session).
sed -i 's/^root:[^:]*:/root:*:/' "$ROOT/etc/shadow"
chmod 700 "$ROOT/root"
chmod 755 "$ROOT/usr/lib/skywire/setup" "$ROOT"/usr/lib/skywire/setup.d/*
install -d -m 700 "$ROOT/etc/skywire" "$ROOT/etc/skywire/apps.d"
# The image's documentation, for file:// links in the units.
install -D -m 644 "$REPO_DOCS/boards.md" "$ROOT/usr/share/doc/skywire/boards.md" 2>/dev/null || true
