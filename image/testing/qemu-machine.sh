# shellcheck shell=bash
# image/testing/qemu-machine.sh: the QEMU machine a board image is booted in by the tests (sourced by
# image/boot-test.sh and image/update-test.sh; docs/boards.md, docs/update.md).
#
#   qemu_machine BOARD DIR sets QEMU_MACHINE (array: emulator, machine, CPU, accelerator, UEFI
#                          firmware) and QEMU_ACCEL (kvm or tcg); the caller adds memory, disks, NICs.
#                          x86-64: OVMF's code and a copy of its variable store (in DIR) as flash
#                          (with -bios OVMF.fd a warm reset of the q35 guest hung once for over 6 min
#                          under TCG, no firmware output, in `make update-test BOARD=x86-64`)
#
# x86-64 runs under KVM when /dev/kvm is usable (USE_KVM=auto, the default; USE_KVM=0 forces TCG,
# USE_KVM=1 requires KVM). "Usable" is tried, not assumed: some hosts (nested virtualization in a
# container) open /dev/kvm but stop the guest with "KVM internal error ... emulation failure" in
# OVMF's first instructions, so the probe boots OVMF alone and waits for its boot manager.

QEMU_AAVMF=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
# Debian's U-Boot for QEMU virt (u-boot-qemu): runs boot.scr from the disk (U-Boot boards' A/B).
QEMU_UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
QEMU_OVMF=/usr/share/ovmf/OVMF.fd
QEMU_OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
QEMU_OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
# How long the probe waits for OVMF's boot manager under KVM (it takes ~2 s; TCG ~10 s).
QEMU_KVM_PROBE_SECONDS=20
QEMU_KVM_PROBE_MEM_MIB=128
# The line OVMF's boot manager (BdsDxe) prints on the serial port once the firmware is up.
QEMU_KVM_PROBE_MARK=BdsDxe

# kvm_usable: status 0 when OVMF boots to its boot manager under KVM on this host.
kvm_usable() {
    [ -w /dev/kvm ] || return 1
    local d pid="" sub i ok=1
    d=$(mktemp -d "${TMPDIR:-/tmp}/skywire-kvm-probe.XXXXXX")
    # In a subshell, so that its "Aborted" (QEMU's assertion on some hosts) lands in the log.
    (qemu-system-x86_64 -M q35 -accel kvm -cpu host -m "$QEMU_KVM_PROBE_MEM_MIB" -bios "$QEMU_OVMF" \
        -display none -monitor none -nodefaults -serial "file:$d/serial.log" & echo $! >"$d/pid"; wait) >"$d/qemu.log" 2>&1 &
    sub=$!
    for ((i = 0; i < QEMU_KVM_PROBE_SECONDS * 2; i++)); do
        pid=${pid:-$(cat "$d/pid" 2>/dev/null)}
        if grep -aq "$QEMU_KVM_PROBE_MARK" "$d/serial.log" 2>/dev/null; then ok=0; break; fi
        kill -0 "$sub" 2>/dev/null || break
        grep -aq 'internal error\|emulation failure' "$d/qemu.log" 2>/dev/null && break
        sleep 0.5
    done
    [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null
    wait "$sub" 2>/dev/null
    ((ok == 0)) || echo "qemu-machine: /dev/kvm is not usable here ($(grep -am1 -i 'error\|fail' "$d/qemu.log" || echo "no boot manager within $QEMU_KVM_PROBE_SECONDS s")): TCG" >&2
    rm -rf "$d"
    return $ok
}

qemu_machine() {
    local fw
    case $1 in
    qemu-arm64|qemu-arm64-ab)
        QEMU_ACCEL=tcg
        fw=$QEMU_AAVMF
        QEMU_MACHINE=(qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg,thread=multi -bios "$QEMU_AAVMF") ;;
    qemu-arm64-uboot)
        QEMU_ACCEL=tcg
        fw=$QEMU_UBOOT
        QEMU_MACHINE=(qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg,thread=multi -bios "$QEMU_UBOOT") ;;
    x86-64)
        QEMU_ACCEL=tcg
        case ${USE_KVM:-auto} in
        0) ;;
        1) kvm_usable || { echo "qemu-machine: USE_KVM=1 but /dev/kvm is not usable" >&2; return 1; }; QEMU_ACCEL=kvm ;;
        *) ! kvm_usable || QEMU_ACCEL=kvm ;;
        esac
        [ -n "${2:-}" ] && [ -f "$QEMU_OVMF_VARS" ] || { echo "qemu-machine: x86-64 needs a work directory and $QEMU_OVMF_VARS (ovmf)" >&2; return 1; }
        fw=$QEMU_OVMF_CODE
        cp "$QEMU_OVMF_VARS" "$2/ovmf-vars.fd"
        QEMU_MACHINE=(qemu-system-x86_64 -M q35 -accel "$QEMU_ACCEL")
        [ "$QEMU_ACCEL" = tcg ] || QEMU_MACHINE+=(-cpu host)
        QEMU_MACHINE+=(-drive "if=pflash,format=raw,unit=1,file=$2/ovmf-vars.fd"
                       -drive "if=pflash,format=raw,unit=0,readonly=on,file=$QEMU_OVMF_CODE") ;;
    *) echo "qemu-machine: BOARD=$1 has no QEMU machine here (qemu-arm64, qemu-arm64-ab, qemu-arm64-uboot, x86-64)" >&2; return 1 ;;
    esac
    [ -f "$fw" ] || { echo "qemu-machine: UEFI firmware $fw missing (image/host-deps.sh installs qemu-efi-aarch64, ovmf and u-boot-qemu)" >&2; return 1; }
    echo "qemu-machine: $1 under ${QEMU_ACCEL^^}" >&2
}
