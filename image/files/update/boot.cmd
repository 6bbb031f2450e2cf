# /boot.scr on A/B boards booted by U-Boot (BOOTLOADER=u-boot-script), made from this file with
# `mkimage -T script` by image/ab-uboot.sh. docs/update.md, "Boot selection: U-Boot".
#
# The U-Boot scheme of rauc: BOOT_ORDER ("A B" or "B A"), BOOT_A_LEFT and BOOT_B_LEFT (tries left,
# 0 to 3). The first slot of BOOT_ORDER with tries left and a slot-x/slot.env boots; its count goes
# down by one and is written back BEFORE the kernel starts, so a slot that never reaches its health
# check runs out of tries and the other one boots. The state is the file abstate.txt on this
# partition, not the U-Boot environment (kept in SPI flash, on the eMMC, or nowhere, depending on
# the U-Boot build of the board). abstate.bak is the copy Linux last wrote, read when abstate.txt is
# unreadable; U-Boot never writes it. The rauc backend /usr/lib/skywire/update/bootloader writes both.
#
# Commands used: load, fatwrite, env import and export, test, booti, reset. No setexpr (the rock64
# and rockpro64 U-Boot builds lack it): the decrement is spelled out.
# No apostrophes anywhere: U-Boot hush takes one inside double quotes for a syntax error.
setenv sk_part "${devtype} ${devnum}:${distro_bootpart}"
setenv sk_buf ${kernel_addr_r}
setenv sk_ok
for sk_file in abstate.txt abstate.bak; do
    if test -z "${sk_ok}"; then
        setenv BOOT_ORDER
        setenv BOOT_A_LEFT
        setenv BOOT_B_LEFT
        if load ${sk_part} ${sk_buf} ${sk_file}; then
            env import -t ${sk_buf} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
        fi
        if test "${BOOT_ORDER}" = "A B" -o "${BOOT_ORDER}" = "B A"; then
            for n in 0 1 2 3; do
                for m in 0 1 2 3; do
                    if test "${BOOT_A_LEFT}" = "${n}" -a "${BOOT_B_LEFT}" = "${m}"; then
                        setenv sk_ok ${sk_file}
                    fi
                done
            done
        fi
        if test -z "${sk_ok}"; then
            echo "skywire-boot: ${sk_file} is missing or not valid"
        fi
    fi
done
if test -z "${sk_ok}"; then
    echo "skywire-boot: no valid A/B state: BOOT_ORDER A B, 3 tries each"
    setenv BOOT_ORDER "A B"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
fi

setenv sk_slot
for s in ${BOOT_ORDER}; do
    if test -z "${sk_slot}"; then
        if test "${s}" = A; then
            setenv sk_left ${BOOT_A_LEFT}
            setenv sk_dir slot-a
        else
            setenv sk_left ${BOOT_B_LEFT}
            setenv sk_dir slot-b
        fi
        setenv sk_args
        setenv sk_fdt
        if test "${sk_left}" != 0; then
            if load ${sk_part} ${sk_buf} ${sk_dir}/slot.env; then
                env import -t ${sk_buf} ${filesize} sk_args sk_fdt
            fi
            if test -n "${sk_args}"; then
                setenv sk_slot ${s}
                if test "${sk_left}" = 3; then
                    setenv sk_left 2
                elif test "${sk_left}" = 2; then
                    setenv sk_left 1
                else
                    setenv sk_left 0
                fi
                if test "${s}" = A; then
                    setenv BOOT_A_LEFT ${sk_left}
                else
                    setenv BOOT_B_LEFT ${sk_left}
                fi
            else
                echo "skywire-boot: slot ${s} has tries left but no ${sk_dir}/slot.env: skipped"
            fi
        fi
    fi
done

if test -z "${sk_slot}"; then
    echo "skywire-boot: no slot has tries left: 3 tries each again as rauc does, resetting"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
fi
env export -t ${sk_buf} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${sk_buf} abstate.txt ${filesize}; then
    echo "skywire-boot: state saved (from ${sk_ok}): BOOT_ORDER ${BOOT_ORDER}, tries left A ${BOOT_A_LEFT}, B ${BOOT_B_LEFT}"
else
    echo "skywire-boot: WARNING: could not write abstate.txt: this boot is not counted"
fi
if test -z "${sk_slot}"; then
    reset
fi

echo "skywire-boot: booting slot ${sk_slot} from ${sk_dir}/"
if load ${sk_part} ${kernel_addr_r} ${sk_dir}/vmlinuz; then
    setenv sk_fdt_addr ${fdtcontroladdr}
    if test -n "${sk_fdt}"; then
        load ${sk_part} ${fdt_addr_r} ${sk_dir}/${sk_fdt} && setenv sk_fdt_addr ${fdt_addr_r}
    fi
    if load ${sk_part} ${ramdisk_addr_r} ${sk_dir}/initrd.img; then
        setenv bootargs "${sk_args}"
        booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${sk_fdt_addr}
    fi
fi
echo "skywire-boot: slot ${sk_slot} did not start (kernel, device tree or initrd unreadable): resetting"
reset
