#!/usr/bin/env bash
# image/sbom.py (the SPDX 2.3 JSON rendering of an image's package manifest) on this host's
# dpkg database with a manifest like image/build.sh writes: the document passes
# image/testing/validate-spdx.py (SPDX 2.3 required fields and forms, unique ids, relationships,
# exactly dpkg's installed packages and versions), is byte-identical when made twice, and the
# validator rejects broken documents (controls: each breakage is caught).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
SBOM=$repo/image/sbom.py
VALIDATE=$repo/image/testing/validate-spdx.py

cat >"$T_WORK/test.manifest" <<EOF2
# skywire image manifest
board=test-board
version=1.2.3-test
overlays=base,vpn-exit
suite=trixie
arch=$(dpkg --print-architecture)
kernel=6.12.0-test
source_date_epoch=1763900000
skywire_sha256=$(printf 'x' | sha256sum | cut -d' ' -f1)
# package<TAB>version<TAB>arch
EOF2
"$SBOM" --manifest "$T_WORK/test.manifest" --admindir /var/lib/dpkg -o "$T_WORK/a.json" || die "sbom.py failed"
"$SBOM" --manifest "$T_WORK/test.manifest" --admindir /var/lib/dpkg >"$T_WORK/b.json"
if "$VALIDATE" "$T_WORK/a.json" --admindir /var/lib/dpkg >"$T_WORK/validate.log"; then pass "$(cat "$T_WORK/validate.log")"
else fail "validator: $(cat "$T_WORK/validate.log")"; fi
cmp -s "$T_WORK/a.json" "$T_WORK/b.json" && pass "two runs give the same bytes" || fail "two runs differ"
n_dpkg=$(dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii')
n_sbom=$(jq '[.packages[] | select(.SPDXID | startswith("SPDXRef-Package-deb-"))] | length' "$T_WORK/a.json")
[ "$n_dpkg" = "$n_sbom" ] && pass "$n_sbom Debian packages, as dpkg-query lists" || fail "dpkg lists $n_dpkg packages, the SBOM $n_sbom"
v=$(dpkg-query -W -f='${Version}' dpkg)
[ "$(jq -r '.packages[] | select(.name == "dpkg") | .versionInfo' "$T_WORK/a.json")" = "$v" ] && pass "dpkg's version $v" || fail "dpkg's version is not $v"
[ "$(jq -r '.creationInfo.created' "$T_WORK/a.json")" = 2025-11-23T12:13:20Z ] && pass "created = source_date_epoch" || fail "created is not the manifest's epoch"
jq -e '.packages[] | select(.name == "skywire") | .checksums[0].checksumValue' "$T_WORK/a.json" >/dev/null \
    && pass "the skywire binary is listed with its SHA-256" || fail "no skywire package"

# Controls: broken documents are rejected.
broken() {   # broken NAME JQ_FILTER EXPECTED_MESSAGE
    jq "$2" "$T_WORK/a.json" >"$T_WORK/$1.json"
    if "$VALIDATE" "$T_WORK/$1.json" --admindir /var/lib/dpkg >"$T_WORK/$1.log"; then fail "$1: accepted"
    elif grep -q "$3" "$T_WORK/$1.log"; then pass "$1: rejected ($(grep -m1 "$3" "$T_WORK/$1.log" | sed 's/^[^:]*: [^:]*: //'))"
    else fail "$1: rejected, but not for '$3': $(cat "$T_WORK/$1.log")"; fi
}
broken no-data-license 'del(.dataLicense)' "dataLicense must be CC0-1.0"
broken dup-id '.packages[3].SPDXID = .packages[2].SPDXID' "duplicate SPDXID"
broken bad-id '.packages[2].SPDXID = "SPDXRef-a_b"' "package SPDXID"
broken bad-purl '.packages[2].externalRefs[0].referenceLocator = "pkg:deb/debian/x"' "purl"
broken missing-pkg 'del(.packages[5])' "relationship names unknown element"
broken bad-time '.creationInfo.created = "2025-11-23 12:13:20"' "creationInfo.created"
broken wrong-version '(.packages[] | select(.name == "dpkg") | .versionInfo) = "0.0"' "packages differ from dpkg"

# A file that is no manifest is refused with a clear error.
echo "hello" >"$T_WORK/bad.manifest"
if "$SBOM" --manifest "$T_WORK/bad.manifest" --admindir /var/lib/dpkg >/dev/null 2>"$T_WORK/bad.err"; then fail "sbom.py accepted a non-manifest"
else grep -q "no 'board=' line" "$T_WORK/bad.err" && pass "non-manifest refused: $(cat "$T_WORK/bad.err")" || fail "unclear error: $(cat "$T_WORK/bad.err")"; fi
[ "$T_FAILS" -eq 0 ] || exit 1
