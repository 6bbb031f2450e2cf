#!/usr/bin/env bash
# toolchain/common.sh in_chroot (toolchain/in-chroot.sh) when mounting /proc fails the way it
# once did on a fresh machine ("mount(2) system call failed: File name too long"): a `mount`
# shim in PATH fails `mount -t proc`; the command must still run with a working /proc (the
# host's, bind-mounted) and the cause must be reported. When the bind fails too, the command
# must not run and both causes are named. A tiny chroot (bash and its libraries) is made here.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(cd "$here/../.." && pwd)
REAL_MOUNT=$(command -v mount)

# The chroot: bash, cat and their shared libraries, plus /usr/bin/env.
root=$T_WORK/root
mkdir -p "$root"/{bin,usr/bin,etc,proc,dev,tmp}
for b in /bin/bash /bin/cat /usr/bin/env; do
    cp -L "$b" "$root$b"
    ldd "$b" | grep -o '/[^ ]*' | while read -r lib; do mkdir -p "$root$(dirname "$lib")"; cp -Ln "$lib" "$root$lib"; done
done
ln -s bash "$root/bin/sh"

# shim DIR MODE: a `mount` that fails `-t proc` (MODE=proc) or also `--rbind /proc` (MODE=both).
shim() {
    mkdir -p "$1"
    cat >"$1/mount" <<EOF
#!/bin/bash
case " \$* " in
*" -t proc "*) echo "mount: $root/proc: mount(2) system call failed: File name too long." >&2; exit 32;;
*" --rbind /proc "*) if [ "$2" = both ]; then echo "mount: /proc: bind failed (test)." >&2; exit 32; fi;;
esac
exec $REAL_MOUNT "\$@"
EOF
    chmod +x "$1/mount"
}
shim "$T_WORK/shim-proc" proc
shim "$T_WORK/shim-both" both

run_in_chroot() {   # run_in_chroot SHIMDIR -> $T_WORK/out, $T_WORK/err, returns in_chroot's status
    PATH="$1:$PATH" bash -c '. "$1/toolchain/common.sh"; trap - ERR; in_chroot "$2" /bin/sh -c "cat /proc/self/stat >/dev/null && echo proc-readable-pid-\$\$"' \
        _ "$repo" "$root" >"$T_WORK/out" 2>"$T_WORK/err"
}

# Control: without the shim, /proc is mounted as a new proc instance and readable.
if run_in_chroot "$T_WORK/no-shim" && grep -q '^proc-readable' "$T_WORK/out"; then pass "in_chroot runs with /proc (no fault)"
else fail "in_chroot without a fault: $(cat "$T_WORK/err")"; fi

# `mount -t proc` fails: the command still runs with /proc, and the cause is reported.
if run_in_chroot "$T_WORK/shim-proc" && grep -q '^proc-readable' "$T_WORK/out"; then
    pass "mount -t proc failing: the command ran with the host's /proc bound"
else
    fail "mount -t proc failing: in_chroot did not run the command: $(cat "$T_WORK/err")"
fi
grep -q 'File name too long.*bind-mounting the host /proc instead' "$T_WORK/err" \
    && pass "the failed mount's cause is reported" || fail "no report of the failed mount: $(cat "$T_WORK/err")"

# Both fail: the command does not run and both causes are named.
rc=0; run_in_chroot "$T_WORK/shim-both" || rc=$?
if [ "$rc" -ne 0 ] && ! grep -q '^proc-readable' "$T_WORK/out" \
    && grep -q 'mount -t proc: .*File name too long.*mount --rbind /proc: .*bind failed' "$T_WORK/err"; then
    pass "both mounts failing: the command did not run, both causes named (exit $rc)"
else
    fail "both mounts failing: exit $rc, out '$(cat "$T_WORK/out")', err: $(cat "$T_WORK/err")"
fi
[ "$T_FAILS" -eq 0 ] || exit 1
