#!/usr/bin/env bash
# Builds (once) the Debian sid amd64 chroot that runs the pinned Swift compiler.
# Result: $SKYWIRE_CACHE/chroot-sid-amd64-<hash>/ with a stamp file written last.
# Prints the chroot path on stdout.
source "$(dirname "$0")/common.sh"
require_root
host_need mmdebstrap debian-archive-keyring

cache_lock
CHROOT="$(chroot_path)"
if [ -f "$CHROOT/$STAMP" ]; then log "chroot cached: $CHROOT"; echo "$CHROOT"; exit 0; fi

step "chroot-mmdebstrap" "check that $DEBIAN_MIRROR is reachable and still has every pinned version in $CHROOT_PINS (if sid moved on, set SKYWIRE_DEBIAN_MIRROR to a snapshot.debian.org URL or update the pins); if it reports a signature error, install a newer debian-archive-keyring"
mkdir -p "$CACHE_DIR"
TMP="$(mktemp -d "$CACHE_DIR/.tmp-chroot.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
includes=()
for w in $(pin_words "$CHROOT_PINS"); do
    case "$w" in *=\*) includes+=("${w%=*}") ;; *) includes+=("$w") ;; esac
done
log "mmdebstrap $COMPILER_SUITE amd64 with: ${includes[*]} (downloads ~700 MB)"
mmdebstrap --mode=root --variant=apt --architectures=amd64 \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --include="$(IFS=,; echo "${includes[*]}")" \
    "$COMPILER_SUITE" "$TMP/root" "$DEBIAN_MIRROR" >"$TMP/mmdebstrap.log" 2>&1 \
    || { tail -n 25 "$TMP/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

step "chroot-verify" "the installed compiler does not match the pins; see $CHROOT_PINS"
for w in $(pin_words "$CHROOT_PINS"); do
    p=${w%%=*}; v=${w#*=}; [ "$v" = "*" ] && continue
    got=$(chroot "$TMP/root" dpkg-query -W -f='${Version}' "$p")
    [ "$got" = "$v" ] || die "$p is $got in the chroot, pinned $v"
done
chroot "$TMP/root" dpkg-query -W -f='${Package} ${Version} ${Architecture}\n' > "$TMP/manifest.txt"

step "chroot-configure" ""
# Swift packages resolve from the host's local git mirrors: copy the insteadOf rules.
: > "$TMP/root/etc/gitconfig"
git config --system --get-regexp '^url\..*\.insteadof$' 2>/dev/null | while read -r key val; do
    git config --file "$TMP/root/etc/gitconfig" --add "$key" "$val"
done
git config --file "$TMP/root/etc/gitconfig" --add safe.directory '*'
in_chroot "$TMP/root" swift --version > "$TMP/swift-version.txt" 2>&1 \
    || { cat "$TMP/swift-version.txt" >&2; die "swift does not run in the chroot"; }
grep -q 'Swift version 6\.2\.3' "$TMP/swift-version.txt" || die "unexpected: $(cat "$TMP/swift-version.txt")"
# The chroot proper is $CHROOT/root; metadata sits next to it.
finish_cache "$TMP" "$CHROOT"
trap - EXIT
log "chroot ready: $CHROOT"
echo "$CHROOT"
