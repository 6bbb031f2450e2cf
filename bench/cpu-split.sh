#!/usr/bin/env bash
# bench/cpu-split.sh OUT SECONDS NS... : user and system CPU of the processes in the given network
# namespaces, for a benchmark running meanwhile (e.g. bench/vpn.sh in another shell: the
# harness's pfsrv pfcli). Every second it reads /proc/PID/stat (utime, stime: fields 14 and 15,
# in clock ticks) of every process whose network namespace is one of NS; at the end (SECONDS) OUT
# gets one line per process seen: pid comm ns start-ticks user-s system-s. The harness reports
# utime+stime only; this says how much of a daemon's CPU per byte is the kernel's (docs/vpn.md §9).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: bench/cpu-split.sh OUT SECONDS NS..." >&2; exit 2; }
out=$1 secs=$2; shift 2
namespaces=("$@")
hz=$(getconf CLK_TCK)
end=$((SECONDS + secs))
declare -A last=()
while [ "$SECONDS" -lt "$end" ]; do
    declare -A ns_of=()
    for n in "${namespaces[@]}"; do
        i=$(stat -L -c %i "/run/netns/$n" 2>/dev/null) && ns_of[$i]=$n
    done
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}; pid=${pid%/stat}
        i=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || continue
        [ -n "${ns_of[$i]:-}" ] || continue
        read -r line <"$f" 2>/dev/null || continue
        comm=${line#*(}; comm=${comm%)*}
        # shellcheck disable=SC2086
        set -- ${line##*) }    # $1 = field 3 (state): utime = $12, stime = $13, starttime = $20
        last[$pid]="$pid ${comm// /_} ${ns_of[$i]} ${20} ${12} ${13}"
    done
    sleep 1
done
for k in "${!last[@]}"; do echo "${last[$k]}"; done | sort -k4n \
    | awk -v hz="$hz" '{ printf "%s %s %s %s %.2f %.2f\n", $1, $2, $3, $4, $5 / hz, $6 / hz }' >"$out"
