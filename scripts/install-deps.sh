#!/usr/bin/env bash
# Installs the Debian packages that building and testing need. Idempotent: only
# calls apt-get when something is missing.
set -euo pipefail
pkgs=(libsodium-dev libnl-3-dev libnl-route-3-dev libmnl-dev pkg-config
      nftables iproute2 iputils-ping curl jq python3 gcc socat)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq || { echo "install-deps: apt-get update failed (no network to the Debian mirror?)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || { echo "install-deps: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
