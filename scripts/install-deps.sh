#!/usr/bin/env bash
# Installs the Debian packages that building and testing need. Idempotent: only
# calls apt-get when something is missing.
set -euo pipefail
# Everything this script and apt/dpkg/pip print is diagnostics: stdout carries nothing, so that
# `make bench` prints only its JSON there.
exec >&2
pkgs=(libsodium-dev libssl-dev libnl-3-dev libnl-route-3-dev libmnl-dev pkg-config
      nftables iproute2 iputils-ping curl jq python3 python3-venv gcc socat ethtool tmux
      dnsmasq-base udhcpc libsqlite3-dev libpq-dev postgresql hostapd wpasupplicant
      chromium chromium-driver python3-selenium)  # the last three: the web UI's browser test (t-ui.sh)
# image/check-image.sh and Tests/integration/t-image-check.sh (FAT with mtools, ext4 with debugfs, sfdisk).
pkgs+=(mtools dosfstools e2fsprogs fdisk)
# Tests/integration/t-uboot-script.sh (the A/B boot script under QEMU virt's U-Boot; mkimage).
pkgs+=(qemu-system-arm u-boot-qemu u-boot-tools)
if [ "${1:-}" = "--bench" ]; then
    # The benchmark harness's peers and load tools.
    pkgs+=(iperf3 microsocks dante-server proxychains4 nginx-light libnginx-mod-stream wireguard-go wireguard-tools openvpn openssl
              gawk  # gawk: bench/lib.sh puts it first as the harness's awk (it skips the /proc files that vanish)
              valgrind strace binutils)  # bench/socks-count.sh: callgrind, strace -c, objcopy
fi
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

# The independent Noise implementation the interop tests run against (Python noiseprotocol),
# in a venv outside the repository.
interop_venv=${SKYWIRE_INTEROP_VENV:-/var/cache/skywire-swift/interop-venv}
if ! "$interop_venv/bin/python3" -c 'import noise' 2>/dev/null; then
    echo "install-deps: creating $interop_venv" >&2
    /usr/bin/python3 -m venv "$interop_venv"
    "$interop_venv/bin/pip" install -q -r "$(dirname "$0")/../Tests/interop/requirements.txt" \
        || { echo "install-deps: pip install -r Tests/interop/requirements.txt failed (PyPI reachable?)" >&2; exit 1; }
fi
