# shellcheck shell=bash
# image/board-conf.sh: reading board-configs/<board>.conf (sourced by image/build.sh and
# image/check-image.sh). The caller defines die().

# board_conf_defaults: the optional keys' defaults (CONF_<KEY>).
board_conf_defaults() {
    CONF_COMPONENTS=main CONF_KERNEL_PACKAGES="" CONF_FIRMWARE_PACKAGES="" CONF_BOOTLOADER_PACKAGES=""
    CONF_EXTRA_PACKAGES="" CONF_DEVICE_TREE="" CONF_UBOOT_TARGET="" CONF_UBOOT_BLOBS="" CONF_UBOOT_LOADER="" CONF_EFI_ARCH="" CONF_AB_SLOTS=no
}

# Reads KEY=value lines from a board config (no shell evaluation: the file is data).
load_conf() {
    local file=$1 line key val n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]] || die "$file:$n: expected KEY=value, got: $line"
        key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
        if [[ $val =~ ^\"(.*)\"$ ]]; then val=${BASH_REMATCH[1]}; fi
        printf -v "CONF_$key" '%s' "$val"
    done <"$file"
}
