#!/usr/bin/env python3
"""image/testing/validate-spdx.py FILE.spdx.json [--admindir DIR]: checks the structure of an
SPDX 2.3 JSON document as image/sbom.py writes it (the fields SPDX 2.3 requires, their forms,
unique identifiers, relationships between existing elements), and with --admindir that it
lists exactly the installed packages of that dpkg database with their versions.
Prints each problem and exits 1 if there is any."""
import json
import re
import subprocess
import sys

SPDXID = re.compile(r"^SPDXRef-[A-Za-z0-9.-]+$")
CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
CREATOR = re.compile(r"^(Tool|Organization|Person): .+")
SUPPLIER = re.compile(r"^(NOASSERTION|(Person|Organization): .+)$")
PURL = re.compile(r"^pkg:deb/debian/[A-Za-z0-9.+%~_-]+@[A-Za-z0-9.%~_-]+\?arch=[a-z0-9-]+&distro=debian-[a-z0-9]+(&upstream=[^&]+)?$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PURPOSES = {"APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "OPERATING-SYSTEM", "DEVICE", "FIRMWARE",
            "SOURCE", "ARCHIVE", "FILE", "INSTALL", "OTHER"}


def validate(doc, admindir=None):
    errs = []
    def need(cond, msg):
        if not cond:
            errs.append(msg)
    need(doc.get("spdxVersion") == "SPDX-2.3", f"spdxVersion is {doc.get('spdxVersion')!r}")
    need(doc.get("dataLicense") == "CC0-1.0", "dataLicense must be CC0-1.0")
    need(doc.get("SPDXID") == "SPDXRef-DOCUMENT", "document SPDXID must be SPDXRef-DOCUMENT")
    need(isinstance(doc.get("name"), str) and doc["name"], "document name missing")
    ns = doc.get("documentNamespace", "")
    need(re.match(r"^[a-z][a-z0-9+.-]*://[^#\s]+$", ns or "") is not None, f"documentNamespace {ns!r} is no absolute URI without '#'")
    ci = doc.get("creationInfo") or {}
    need(CREATED.match(ci.get("created", "")) is not None, f"creationInfo.created {ci.get('created')!r}")
    creators = ci.get("creators") or []
    need(creators and all(CREATOR.match(c) for c in creators), f"creationInfo.creators {creators!r}")
    ids = {"SPDXRef-DOCUMENT"}
    pkgs = doc.get("packages") or []
    need(pkgs, "no packages")
    debs = {}
    for p in pkgs:
        pid = p.get("SPDXID", "")
        need(SPDXID.match(pid) is not None, f"package SPDXID {pid!r}")
        need(pid not in ids, f"duplicate SPDXID {pid}")
        ids.add(pid)
        for key in ("name", "downloadLocation"):
            need(isinstance(p.get(key), str) and p[key], f"{pid}: {key} missing")
        need(isinstance(p.get("filesAnalyzed", False), bool), f"{pid}: filesAnalyzed is not a boolean")
        need("supplier" not in p or SUPPLIER.match(p["supplier"]) is not None, f"{pid}: supplier {p.get('supplier')!r}")
        need("primaryPackagePurpose" not in p or p["primaryPackagePurpose"] in PURPOSES, f"{pid}: primaryPackagePurpose")
        for c in p.get("checksums", []):
            need(c.get("algorithm") == "SHA256" and SHA256.match(c.get("checksumValue", "")) is not None, f"{pid}: checksum {c!r}")
        for r in p.get("externalRefs", []):
            need(r.get("referenceCategory") == "PACKAGE-MANAGER" and r.get("referenceType") == "purl", f"{pid}: externalRef {r!r}")
            need(PURL.match(r.get("referenceLocator", "")) is not None, f"{pid}: purl {r.get('referenceLocator')!r}")
        if pid.startswith("SPDXRef-Package-deb-"):
            need(p.get("externalRefs"), f"{pid}: Debian package without a purl")
            debs[(p["name"], p.get("versionInfo"))] = pid
    rels = doc.get("relationships") or []
    described = [r for r in rels if r.get("relationshipType") == "DESCRIBES" and r.get("spdxElementId") == "SPDXRef-DOCUMENT"]
    need(len(described) == 1, f"{len(described)} DESCRIBES relationships from the document, expected 1")
    contained = set()
    for r in rels:
        for k in ("spdxElementId", "relatedSpdxElement"):
            need(r.get(k) in ids, f"relationship names unknown element {r.get(k)!r}")
        if r.get("relationshipType") == "CONTAINS":
            contained.add(r.get("relatedSpdxElement"))
    missing = [pid for pid in debs.values() if pid not in contained]
    need(not missing, f"{len(missing)} Debian packages not CONTAINED by the image, e.g. {missing[:3]}")
    if admindir:
        out = subprocess.run(["dpkg-query", f"--admindir={admindir}", "-W", "-f=${db:Status-Abbrev}\t${Package}\t${Version}\n"],
                             check=True, capture_output=True, text=True).stdout
        installed = {(n, v) for s, n, v in (l.split("\t") for l in out.splitlines()) if s.startswith("ii")}
        need(installed == set(debs), f"packages differ from dpkg's: {len(installed - set(debs))} missing, {len(set(debs) - installed)} extra")
    return errs


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: validate-spdx.py FILE.spdx.json [--admindir DIR]")
    admindir = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--admindir" else None
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    errs = validate(doc, admindir)
    for e in errs:
        print(f"validate-spdx: {sys.argv[1]}: {e}")
    if errs:
        sys.exit(1)
    print(f"validate-spdx: {sys.argv[1]}: SPDX 2.3 structure ok ({len(doc['packages'])} packages, {len(doc['relationships'])} relationships)")


if __name__ == "__main__":
    main()
