# shellcheck shell=bash
# Shared helpers for the cross toolchain scripts (sourced, not executed).
# Every step runs through `step NAME`, so a failure names the step and the fix.
set -euo pipefail

TOOLCHAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$TOOLCHAIN_DIR/.." && pwd)"
PINS_DIR="$TOOLCHAIN_DIR/pins"

# Cache root (outside the repository); override with SKYWIRE_CACHE.
CACHE_DIR="${SKYWIRE_CACHE:-/var/cache/skywire-build}"
# Debian mirror. Point at a snapshot (http://snapshot.debian.org/archive/debian/<TIMESTAMP>/)
# when a pinned version has left deb.debian.org.
DEBIAN_MIRROR="${SKYWIRE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# Suites: the compiler comes from sid, the target libraries from trixie.
COMPILER_SUITE=sid
TARGET_SUITE=trixie
# Highest glibc symbol version the binary may need (trixie ships 2.41; the brief asks 2.38).
MAX_GLIBC=2.38
# Name of the file written last into every finished cache entry.
STAMP=.complete

CURRENT_STEP="(start)"
CURRENT_HINT=""

log()  { printf '[cross %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '\n[cross] FAILED in step "%s": %s\n' "$CURRENT_STEP" "$*" >&2
         [ -n "$CURRENT_HINT" ] && printf '[cross] what to do: %s\n' "$CURRENT_HINT" >&2
         exit 1; }
# step NAME HINT: enter a named step; HINT tells the user what to do if it fails.
step() { CURRENT_STEP="$1"; CURRENT_HINT="${2:-}"; log "== $1"; }
_on_err() { local rc=$?; die "command exited with status $rc (line ${BASH_LINENO[0]} of ${BASH_SOURCE[1]##*/})"; }
trap _on_err ERR

require_root() { [ "$(id -u)" -eq 0 ] || { CURRENT_HINT="run as root (sudo make ...)"; die "needs root (chroot, mounts)"; }; }

# Map the make-level ARCH (uname -m style) to Debian and Swift names.
arch_vars() {
    case "$1" in
        aarch64|arm64) ARCH=aarch64; DEB_ARCH=arm64; TRIPLE=aarch64-unknown-linux-gnu
                       GNU_TRIPLE=aarch64-linux-gnu; QEMU=qemu-aarch64-static
                       LD_SO=ld-linux-aarch64.so.1 ;;
        x86_64|amd64)  ARCH=x86_64; DEB_ARCH=amd64; TRIPLE=x86_64-pc-linux-gnu  # Debian builds its amd64 Swift modules for -pc-
                       GNU_TRIPLE=x86_64-linux-gnu; QEMU=""
                       LD_SO=ld-linux-x86-64.so.2 ;;
        *) CURRENT_HINT="use ARCH=aarch64 or ARCH=x86_64 (see docs/cross-compiling.md to add one)"
           die "unsupported ARCH '$1'" ;;
    esac
}

# pins_hash FILE...: short hash of pin files (and this toolchain's version); keys cache entries.
pins_hash() { cat "$@" | sha256sum | cut -c1-16; }

# Read "package version" lines (comments and blanks skipped) as "package=version" words.
pin_words() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1" | awk '{print $1"="$2}'; }

# cache_lock: serialise cache builders (two `make cross` at once build each entry only once).
cache_lock() {
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.lock"
    flock -w 3600 9 || die "timed out waiting for $CACHE_DIR/.lock (another build running?)"
}

# finish_cache TMP FINAL: stamp TMP last, then rename it into place atomically; then drop
# older entries of the same kind (same name up to the hash), which no pin set points to any more.
finish_cache() {
    local old
    chmod 755 "$1"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$1/$STAMP"
    rm -rf "$2"
    mv -T "$1" "$2"
    for old in "${2%-*}"-*; do
        [ "$old" = "$2" ] || [ ! -d "$old" ] || { log "removing stale cache entry $old"; rm -rf "$old"; }
    done
}

# Install host packages with apt if missing (idempotent).
host_need() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    step "host-packages" "check network access to the Debian mirror; then rerun. Packages: ${missing[*]}"
    log "installing on the host: ${missing[*]}"
    apt-get update -qq || die "apt-get update failed on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed on the host"
}

CHROOT_PINS="$PINS_DIR/chroot-$COMPILER_SUITE-amd64.pins"
chroot_path() { echo "$CACHE_DIR/chroot-$COMPILER_SUITE-amd64-$(pins_hash "$CHROOT_PINS" "$TOOLCHAIN_DIR/make-chroot.sh")"; }
sysroot_pins() { echo "$PINS_DIR/sysroot-$TARGET_SUITE-$DEB_ARCH.pins"; }
swift_pins()   { echo "$PINS_DIR/swift-$COMPILER_SUITE-$DEB_ARCH.pins"; }
sysroot_path() { echo "$CACHE_DIR/sysroot-$TARGET_SUITE-$DEB_ARCH-$(pins_hash "$(sysroot_pins)" "$(swift_pins)" "$TOOLCHAIN_DIR/make-sysroot.sh")"; }

# in_chroot ROOT CMD...: run CMD in ROOT inside a private mount namespace, so every bind
# mount disappears when the command ends (no cleanup to forget). toolchain/in-chroot.sh does
# it (shared with image/build.sh); a failing `mount -t proc` is reported and falls back to a
# bind mount of the host's /proc.
# Extra binds: IN_CHROOT_BINDS="src:dst src:dst" (dst relative to ROOT); extra environment:
# IN_CHROOT_ENV="NAME=value ..." (no spaces inside values).
in_chroot() { "$TOOLCHAIN_DIR/in-chroot.sh" "$@"; }

# apt_setup DIR SUITE DEB_ARCH: a private apt configuration (own sources, lists, cache, empty
# dpkg status) for one suite and one architecture; then `apt_run DIR apt-get ...` uses it.
# Runs the host's apt; nothing is installed on the host.
KEYRING="${SKYWIRE_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
apt_setup() {
    local dir="$1" suite="$2" arch="$3"
    mkdir -p "$dir"/{lists/partial,archives/partial,etc/preferences.d,etc/apt.conf.d}
    : > "$dir/status"
    echo "deb [signed-by=$KEYRING] $DEBIAN_MIRROR $suite main" > "$dir/etc/sources.list"
    cat > "$dir/apt.conf" <<EOC
Dir::State "$dir";
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir";
Dir::Cache::archives "$dir/archives";
Dir::Etc::SourceList "$dir/etc/sources.list";
Dir::Etc::SourceParts "-";
Dir::Etc::Preferences "$dir/etc/preferences";
Dir::Etc::PreferencesParts "$dir/etc/preferences.d";
Dir::Etc::Parts "$dir/etc/apt.conf.d";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
APT::Install-Recommends "false";
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
Debug::NoLocking "true";
APT::Sandbox::User "root";
EOC
    apt_run "$dir" apt-get -qq --error-on=any update \
        || { CURRENT_HINT="check network access to $DEBIAN_MIRROR (proxy, DNS) or set SKYWIRE_DEBIAN_MIRROR; signature errors: newer debian-archive-keyring or SKYWIRE_KEYRING"
             die "cannot fetch the $suite/$arch package index from $DEBIAN_MIRROR"; }
}
apt_run() { local dir="$1"; shift; APT_CONFIG="$dir/apt.conf" "$@"; }
