#!/usr/bin/env python3
"""The functions of one executable that ran, from callgrind output files, as an lld symbol
ordering file: one mangled symbol a line, most instructions (self Ir, summed over the files)
first. Used by bench/symbol-order.sh.
Usage: symbol-order.py EXE_BASENAME CALLGRIND_FILE...
Only functions of the object whose path ends in /EXE_BASENAME count (not libc's, libcrypto's);
callgrind must have run with --demangle=no (the linker matches the symbol table's names).
Format (valgrind's docs, "Callgrind Format Specification"): `ob=`/`fn=` name the object and
function the following cost lines belong to, `(id) name` defines a compressed name and `(id)`
reuses it (one id space for ob/cob, one for fn/cfn); the cost line right after `calls=` is the
call's inclusive cost, not the caller's own."""
import collections
import re
import sys

COMPRESSED = re.compile(r"\((\d+)\)(?:\s+(.*))?")


def resolve(table, spec):
    m = COMPRESSED.match(spec)
    if not m:
        return spec.strip()
    if m.group(2):
        table[m.group(1)] = m.group(2).strip()
    return table.get(m.group(1), "")


def self_costs(path, exe, cost):
    objects, functions = {}, {}
    in_exe = False
    fn = None
    after_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if after_calls:
                    after_calls = False
                elif in_exe and fn:
                    fields = line.split()
                    if len(fields) >= 2:
                        cost[fn] += int(fields[1])
            elif line.startswith("ob="):
                in_exe = resolve(objects, line[3:]).endswith("/" + exe)
            elif line.startswith("cob="):
                resolve(objects, line[4:])
            elif line.startswith("fn="):
                # `'2` marks a recursion level (--separate-recs): the same symbol.
                fn = resolve(functions, line[3:]).split("'")[0]
            elif line.startswith("cfn="):
                resolve(functions, line[4:])
            elif line.startswith("calls="):
                after_calls = True


def main():
    exe, paths = sys.argv[1], sys.argv[2:]
    cost = collections.Counter()
    for p in paths:
        self_costs(p, exe, cost)
    for name, ir in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0])):
        # Addresses callgrind could not name (0x...) have no symbol to order.
        if ir > 0 and name and not name.startswith("0x"):
            print(name)


if __name__ == "__main__":
    main()
