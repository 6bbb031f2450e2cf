#!/usr/bin/env python3
"""image/sbom.py: the SPDX 2.3 (JSON) rendering of a board image's package manifest.

    image/sbom.py --manifest out/rpi4/skywire-rpi4-<v>.manifest --admindir ROOT/var/lib/dpkg > ….spdx.json

Reads the image facts from the manifest's key=value header (board, version, suite, arch,
source_date_epoch, skywire_sha256) and the installed packages from `dpkg-query -W` on the
image's dpkg database (--admindir), so the source package and maintainer of every binary
package are included. Output (SPDX 2.3, https://spdx.github.io/spdx-spec/v2.3/):
  - one package for the image (SPDXRef-Image, purpose OPERATING-SYSTEM), DESCRIBED by the document;
  - one package per Debian package, CONTAINED by the image, with a purl
    (pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-<N>) and its source package;
  - the skywire binary (not a Debian package) with its SHA-256.
Deterministic: the creation time is SOURCE_DATE_EPOCH and the namespace is derived from the
manifest, so two builds of the same inputs give the same file. Licenses are NOASSERTION (dpkg
does not record them in a machine-readable field).
"""
import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.parse

SPDX_VERSION = "SPDX-2.3"
DATA_LICENSE = "CC0-1.0"  # SPDX 2.3 §6.2: always CC0-1.0
NOASSERTION = "NOASSERTION"
TOOL = "Tool: skywire-image-sbom-1"
NAMESPACE_BASE = "https://spdx.org/spdxdocs/"
# Debian release numbers for the purl's distro qualifier.
DEBIAN_RELEASES = {"bookworm": "12", "trixie": "13", "forky": "14"}
DPKG_FORMAT = "${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\t${Maintainer}\\t${db:Status-Abbrev}\\n"
SPDXID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def read_manifest(path):
    facts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#") or "\t" in line or "=" not in line:
                continue
            key, _, value = line.partition("=")
            facts[key] = value
    for key in ("board", "version", "arch", "suite"):
        if key not in facts:
            sys.exit(f"sbom.py: {path}: no '{key}=' line (not an image manifest?)")
    return facts


def installed_packages(admindir):
    out = subprocess.run(["dpkg-query", f"--admindir={admindir}", "-W", f"-f={DPKG_FORMAT}"],
                         check=True, capture_output=True, text=True).stdout
    pkgs = []
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 7:
            sys.exit(f"sbom.py: unexpected dpkg-query line: {line!r}")
        name, version, arch, src, src_version, maintainer, status = fields
        if not status.startswith("ii"):  # installed, not half-installed or config-files only
            continue
        pkgs.append({"name": name, "version": version, "arch": arch,
                     "source": src or name, "source_version": src_version or version,
                     "maintainer": maintainer})
    pkgs.sort(key=lambda p: (p["name"], p["arch"]))
    return pkgs


def spdx_id(prefix, *parts):
    return prefix + "-" + SPDXID_UNSAFE.sub("-", "-".join(parts))


def purl(pkg, distro):
    enc = lambda s: urllib.parse.quote(s, safe="~._-")
    qualifiers = f"arch={enc(pkg['arch'])}&distro={enc(distro)}"
    if pkg["source"] != pkg["name"] or pkg["source_version"] != pkg["version"]:
        src = pkg["source"] + ("@" + pkg["source_version"] if pkg["source_version"] != pkg["version"] else "")
        qualifiers += f"&upstream={enc(src)}"
    return f"pkg:deb/debian/{enc(pkg['name'])}@{enc(pkg['version'])}?{qualifiers}"


def supplier(maintainer):
    # SPDX 2.3 §7.5: "Person: name (email)" or "Organization: name (email)"; Debian maintainers
    # are often teams, so Organization; "Name <mail>" becomes "Name (mail)".
    m = re.match(r"^\s*(.*?)\s*<([^>]*)>\s*$", maintainer)
    if m:
        return f"Organization: {m.group(1)} ({m.group(2)})"
    return f"Organization: {maintainer}" if maintainer.strip() else NOASSERTION


def render(facts, pkgs, manifest_bytes):
    epoch = int(facts.get("source_date_epoch") or 0)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    image_name = f"skywire-{facts['board']}-{facts['version']}"
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    distro = "debian-" + DEBIAN_RELEASES.get(facts["suite"], facts["suite"])
    image = {
        "SPDXID": "SPDXRef-Image",
        "name": image_name,
        "versionInfo": facts["version"],
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "supplier": "Organization: skywire",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "comment": f"board {facts['board']}, {facts['suite']}/{facts['arch']}, overlays {facts.get('overlays', '')}, "
                   f"kernel {facts.get('kernel', '')}",
    }
    packages = [image]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    if facts.get("skywire_sha256"):
        packages.append({
            "SPDXID": "SPDXRef-Package-skywire",
            "name": "skywire",
            "versionInfo": facts["version"],
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": False,
            "primaryPackagePurpose": "APPLICATION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": facts["skywire_sha256"]}],
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "comment": "/usr/bin/skywire, the visor (not a Debian package)",
        })
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": "SPDXRef-Package-skywire"})
    seen = set()
    for p in pkgs:
        ident = spdx_id("SPDXRef-Package-deb", p["name"], p["arch"])
        if ident in seen:  # two names mapping to one id after sanitising: disambiguate
            ident += "-" + hashlib.sha256((p["name"] + p["arch"]).encode()).hexdigest()[:8]
        seen.add(ident)
        packages.append({
            "SPDXID": ident,
            "name": p["name"],
            "versionInfo": p["version"],
            "supplier": supplier(p["maintainer"]),
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": False,
            "sourceInfo": f"built from the Debian source package {p['source']} {p['source_version']}",
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(p, distro)}],
        })
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    return {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": DATA_LICENSE,
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image_name,
        "documentNamespace": f"{NAMESPACE_BASE}{image_name}-{digest[:32]}",
        "creationInfo": {"created": created, "creators": [TOOL, "Organization: skywire"]},
        "packages": packages,
        "relationships": relationships,
    }


def main():
    ap = argparse.ArgumentParser(description="SPDX 2.3 JSON for a skywire board image")
    ap.add_argument("--manifest", required=True, help="the image's .manifest")
    ap.add_argument("--admindir", required=True, help="the image's dpkg database (ROOT/var/lib/dpkg)")
    ap.add_argument("-o", "--output", help="write here instead of stdout")
    args = ap.parse_args()
    with open(args.manifest, "rb") as f:
        manifest_bytes = f.read()
    doc = render(read_manifest(args.manifest), installed_packages(args.admindir), manifest_bytes)
    text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
