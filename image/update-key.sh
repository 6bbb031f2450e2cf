#!/usr/bin/env bash
# image/update-key.sh: the fleet update signing key (docs/update.md).
#
#   image/update-key.sh cert [NAME]     prints the certificate's path (the public half: the keyring)
#   image/update-key.sh key [NAME]      prints the private key's path
#
# NAME (default "dev") names a self-signed P-256 key and certificate made once with openssl under
# $SKYWIRE_BUILD_CACHE/update-keys/NAME/ (outside the repository, mode 0700), for development and
# tests. A real fleet keeps its key offline and passes its paths to the build:
# UPDATE_KEYRING=fleet-cert.pem (images) and UPDATE_CERT=... UPDATE_KEY=... (make bundle).
set -euo pipefail
CACHE_DIR=${SKYWIRE_BUILD_CACHE:-/var/cache/skywire-build}
# The development certificate's lifetime in days (rauc checks it against the board's clock).
CERT_DAYS=3650
what=${1:-}; name=${2:-dev}
[[ $name =~ ^[a-z0-9-]{1,32}$ ]] || { echo "update-key: NAME must be [a-z0-9-], 1-32 characters" >&2; exit 2; }
dir=$CACHE_DIR/update-keys/$name
if [ ! -f "$dir/cert.pem" ]; then
    mkdir -p "$dir"; chmod 700 "$dir"
    exec 9>"$dir/.lock"; flock 9
    if [ ! -f "$dir/cert.pem" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$CERT_DAYS" \
            -subj "/O=skywire/CN=skywire fleet update key ($name, development)" \
            -keyout "$dir/key.pem.partial" -out "$dir/cert.pem.partial" 2>/dev/null \
            || { echo "update-key: openssl could not make the key" >&2; exit 1; }
        chmod 600 "$dir/key.pem.partial"
        mv -f "$dir/key.pem.partial" "$dir/key.pem"; mv -f "$dir/cert.pem.partial" "$dir/cert.pem"
    fi
fi
case $what in
cert) echo "$dir/cert.pem" ;;
key) echo "$dir/key.pem" ;;
*) echo "usage: image/update-key.sh cert|key [NAME]" >&2; exit 2 ;;
esac
