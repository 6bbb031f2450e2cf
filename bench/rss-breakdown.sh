#!/usr/bin/env bash
# RSS of one process by kind of mapping (docs/architecture.md, "Memory per visor"): the
# binary's text/rodata/data, libcrypto, libsodium, the C and C++ runtime, other libraries,
# glibc's main and per-thread malloc arenas, thread stacks and other anonymous mappings, from
# /proc/PID/smaps. Usage: bench/rss-breakdown.sh PID (root for another user's process).
# A thread arena is an anonymous mapping starting on a 64 MiB boundary (glibc's HEAP_MAX_SIZE),
# a thread stack an anonymous mapping right after a small PROT_NONE guard.
set -euo pipefail
pid=${1:?usage: bench/rss-breakdown.sh PID}
exe=$(basename "$(readlink "/proc/$pid/exe")")
gawk -v exe="$exe" '
function kind(name, perm, start, guard) {
    if (name ~ ("/" exe "$")) return "binary " (perm ~ /x/ ? "text" : (perm ~ /w/ ? "data+bss" : "rodata+relro"))
    if (name ~ /libcrypto/) return "libcrypto " (perm ~ /x/ ? "text" : "data+relro")
    if (name ~ /libsodium/) return "libsodium"
    if (name ~ /\/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^\/]*)[.-][^\/]*$/) return "libc, libm, libstdc++, ld.so"
    if (name ~ /\.so/) return "other libraries"
    if (name == "[heap]") return "[heap] (main malloc arena)"
    if (name ~ /^\[/) return name
    if (name != "") return "other files"
    if (perm == "---p") return "guard pages"
    if (start % (64 * 1048576) == 0) return "anon: malloc thread arenas"
    if (guard) return "anon: thread stacks"
    return "anon: other (mmap-ed buffers)"
}
/^[0-9a-f]+-[0-9a-f]+ / {
    split($1, a, "-"); start = strtonum("0x" a[1]); size = strtonum("0x" a[2]) - start
    name = (NF >= 6) ? $6 : ""
    k = kind(name, $2, start, guard)
    guard = (name == "" && $2 == "---p" && size <= 65536)
    maps[k]++
    next
}
/^Rss:/ { rss[k] += $2; total += $2 }
/^Private_Dirty:/ { dirty[k] += $2; totalDirty += $2 }
END {
    printf "%-34s %5s %9s %14s\n", "mapping", "maps", "RSS kB", "private dirty"
    for (k in rss) if (rss[k] > 0) printf "%-34s %5d %9d %14d\n", k, maps[k], rss[k], dirty[k] | "sort -k1,1"
    close("sort -k1,1")
    printf "%-34s %5s %9d %14d\n", "total", "", total, totalDirty
}' "/proc/$pid/smaps"
