#!/usr/bin/env bash
# ChaCha20-Poly1305 microbenchmark: the transports' AEAD (OpenSSL libcrypto) against the previous
# one (libsodium), seal + open in place per 1420-byte record (a VPN packet over sudph) and per
# 64 KiB record, CPU-s/GB of plaintext, one thread, both in the same process
# (bench/aead/main.swift). Builds the release tool as `make bench` builds the visor; stdout is one JSON
# object, progress goes to stderr. AEAD_BENCH_MB (default 512) sets the plaintext per case,
# AEAD_BENCH_SIZES (comma-separated record bytes, default 1420 and the largest Noise plaintext, 65519) the record sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
# shellcheck disable=SC2086  # SWIFT_RELEASE_FLAGS is a word list (Makefile)
flags=${SWIFT_RELEASE_FLAGS-$(make -s release-flags)}
# shellcheck disable=SC2086
"$SWIFT" build -c release --static-swift-stdlib $flags --product skywire-aead-bench >&2
# shellcheck disable=SC2086
bin="$("$SWIFT" build -c release --static-swift-stdlib $flags --show-bin-path)/skywire-aead-bench"
jq -c --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '. + {loadavg_start: $load}' < <("$bin")
