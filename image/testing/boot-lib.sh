# shellcheck shell=bash
# Helpers shared by the image boot tests (sourced by image/boot-test.sh, image/boot-test-rpi4.sh).

# ed25519_pair: prints an Ed25519 key pair as libsodium hex: "sk pk", sk = seed || pk (128 hex),
# pk (64 hex); made with openssl, independently of the skywire binary under test.
ed25519_pair() {
    local der pub
    der=$(openssl genpkey -algorithm ed25519 -outform DER | xxd -p | tr -d '\n')
    pub=$(printf '%s' "$der" | xxd -r -p | openssl pkey -inform DER -pubout -outform DER | xxd -p | tr -d '\n')
    echo "${der: -64}${pub: -64} ${pub: -64}"
}

# elapsed: seconds since $T0 (date +%s.%N when QEMU was started).
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_visor_key PK SERIAL_LOG QEMU_LOG QEMU_PID TIMEOUT POLL: waits, at most TIMEOUT seconds,
# for the visor to log PK on the console (the only place the full key is printed; skywire-setup
# prints a shortened form); stops early when QEMU exits or fails, or the kernel panics. Sets
# READY_S to the seconds since QEMU started, or leaves it empty.
wait_visor_key() {
    local pk=$1 serial=$2 qlog=$3 qpid=$4 deadline=$((SECONDS + $5)) poll=$6
    READY_S=""
    while ((SECONDS < deadline)); do
        if grep -aqF "$pk" "$serial" 2>/dev/null; then READY_S=$(elapsed); return 0; fi
        kill -0 "$qpid" 2>/dev/null || return 1
        grep -aq 'Kernel panic' "$serial" 2>/dev/null && return 1
        grep -aq 'internal error\|emulation failure' "$qlog" 2>/dev/null && { echo "QEMU failed: $(head -n 3 "$qlog")" >&2; return 1; }
        sleep "$poll"
    done
    return 1
}
