#!/usr/bin/env python3
"""Totals of one callgrind output file as JSON: instructions (Ir) and the calls made to the
malloc family and to free (from the `calls=` lines; name compression `(id) name` resolved).
Used by bench/socks-count.sh."""
import json
import re
import sys

ALLOC = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}
FREE = {"free"}

names = {}
def name(spec):
    m = re.match(r"\((\d+)\)(?:\s+(.*))?", spec)
    if not m:
        return spec.strip()
    if m.group(2):
        names[m.group(1)] = m.group(2).strip()
    return names.get(m.group(1), "")

ir = 0
mallocs = frees = 0
target = None
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        if line.startswith("summary:") or line.startswith("totals:"):
            ir = max(ir, int(line.split()[1]))
        elif line.startswith("fn="):
            name(line[3:])
        elif line.startswith("cfn="):
            target = name(line[4:])
        elif line.startswith("calls=") and target is not None:
            n = int(line[6:].split()[0])
            base = target.split("'")[0]
            if base in ALLOC:
                mallocs += n
            elif base in FREE:
                frees += n
            target = None
print(json.dumps({"ir": ir, "mallocs": mallocs, "frees": frees}))
