# skywire-swift: build, test, cross-compile and image targets.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_BUILD_FLAGS ?=
## Release builds (release, bench, cross): cross-module optimization (generic code such as the
## mux session specialised where the transport uses it). Run-time exclusivity checks stay on
## here; Package.swift turns them off for the release builds of the datapath modules only
## (`datapathSwiftSettings`: ~20 % of a proxied request's instructions, counted with callgrind,
## docs/socks.md "Performance"); debug builds, which the tests use, keep them everywhere.
## SWIFT_RELEASE_FLAGS= builds without cross-module optimization.
## The link flags keep the binary small (docs/cross-compiling.md "Binary size"): the static
## stdlib's link file asks for -export-dynamic, which puts every symbol of our objects and
## packages (~15,800) in a dynamic symbol table nobody reads (1.5 MB), and the PIE's relative
## relocations are packed (DT_RELR, glibc >= 2.36: 1.3 MB). lld on the host too: gold knows no
## DT_RELR (the cross build uses lld already). These flags serve `make release`, `make bench`,
## `make cross` and so the images (image/build.sh runs `make cross`).
SWIFT_RELEASE_LINK_FLAGS ?= -Xswiftc -use-ld=lld -Xlinker --no-export-dynamic -Xlinker -z -Xlinker pack-relative-relocs
SWIFT_RELEASE_FLAGS ?= -Xswiftc -cross-module-optimization $(SWIFT_RELEASE_LINK_FLAGS)
export SWIFT_RELEASE_FLAGS

## release-flags: prints SWIFT_RELEASE_FLAGS (toolchain/build.sh reads them when run without make).
.PHONY: release-flags
release-flags:
	@echo '$(SWIFT_RELEASE_FLAGS)'

.PHONY: all build release test unit-test integration-test fuzz fuzz-build fuzz-seeds deps bench bench-deps clean cross cross-test toolchain image images image-check boot-test boot-test-gateway boot-test-rpi4 boot-test-x86-64 fleet fleet-test bundle update-test

all: build

## deps: install the host packages the build and tests need (idempotent).
deps:
	@./scripts/install-deps.sh >&2

build: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

## release: the three executables only (the test-support target imports XCTest, which has no
## static build): the visor, the discovery service and the dmsg relay server.
release: deps
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --product skywire
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --product skywire-discovery
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --product skywire-dmsg

## test: unit tests, integration tests in network namespaces (root), the aarch64 cross build
## and its checks, then the qemu-arm64 image boot tests: the default image and the gateway
## image (SKYWIRE_TEST_CROSS=0 skips all of those, SKYWIRE_TEST_IMAGE=0 both boot tests,
## SKYWIRE_TEST_GATEWAY_IMAGE=0 only the gateway one). SKYWIRE_TEST_UPDATE=1 adds the A/B update
## test (update-test on qemu-arm64-ab with the cross build) after the first boot test: off by
## default, since it adds ~39 min under TCG to a CI run of ~46 min (docs/update.md).
## Right after the unit tests, a short fuzzing pass: every libFuzzer harness for
## FUZZ_SHORT_SECONDS (default 6) s (SKYWIRE_TEST_FUZZ=0 skips it).
SKYWIRE_TEST_CROSS ?= 1
SKYWIRE_TEST_IMAGE ?= $(SKYWIRE_TEST_CROSS)
SKYWIRE_TEST_UPDATE ?= 0
SKYWIRE_TEST_GATEWAY_IMAGE ?= $(SKYWIRE_TEST_IMAGE)
SKYWIRE_TEST_FUZZ ?= 1
test: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)
	timeout 1200 $(SWIFT) test $(SWIFT_BUILD_FLAGS)
	@if [ "$(SKYWIRE_TEST_FUZZ)" = 1 ]; then SWIFT='$(SWIFT)' ./scripts/fuzz.sh short; fi
	./Tests/integration/run.sh "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire"
	@if [ "$(SKYWIRE_TEST_CROSS)" = 1 ]; then $(MAKE) cross-test ARCH=aarch64; fi
	@if [ "$(SKYWIRE_TEST_IMAGE)" = 1 ]; then $(MAKE) boot-test BOARD=qemu-arm64; fi
	@if [ "$(SKYWIRE_TEST_UPDATE)" = 1 ]; then $(MAKE) update-test BOARD=qemu-arm64-ab \
	    SKYWIRE_BIN='$(or $(SKYWIRE_BIN),$(if $(filter 1,$(SKYWIRE_TEST_CROSS)),$(CURDIR)/out/aarch64/skywire))'; fi
	@if [ "$(SKYWIRE_TEST_GATEWAY_IMAGE)" = 1 ]; then $(MAKE) boot-test-gateway; fi

unit-test: deps
	timeout 1200 $(SWIFT) test $(SWIFT_BUILD_FLAGS)

## fuzz: build the libFuzzer harnesses (FuzzTesting/, with AddressSanitizer) and run each for
## FUZZ_SECONDS (default 60) s, one after another; fails on a crash or a broken invariant and leaves
## the reproducer in out/fuzz/artifacts/<harness>/ (docs/fuzzing.md). FUZZ_HARNESSES=name...: only those.
## fuzz-seeds: regenerate the committed seed corpus (FuzzTesting/corpus/) from the encoders.
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES ?=
fuzz: deps
	SWIFT='$(SWIFT)' FUZZ_SECONDS='$(FUZZ_SECONDS)' ./scripts/fuzz.sh run $(FUZZ_HARNESSES)

fuzz-build: deps
	SWIFT='$(SWIFT)' ./scripts/fuzz.sh build

fuzz-seeds: deps
	SWIFT='$(SWIFT)' ./scripts/fuzz.sh seeds

integration-test: build
	./Tests/integration/run.sh "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire"

## bench: VPN figures (vs wireguard-go, OpenVPN), the AEAD's CPU per GB (bench/aead.sh: OpenSSL,
## which the transports use, against libsodium, one thread), SOCKS5 figures (vs microsocks, dante and two
## two-hop references, with ratios to microsocks),
## each in one run on the same topology, then the scale figures (bench/scale.sh: one visor's RSS
## and CPU with 1 to 10,000 idle transports and 10,000 streams, docs/scale.md), then the dmsg relay's
## (bench/dmsg.sh: throughput and CPU per Gbit through one relay, streams/s, RSS per idle client,
## docs/dmsg.md); JSON on stdout.
## Needs the team harness (../shared/bench or SKYWIRE_BENCH_HARNESS). Measures the binary `make release` builds (static Swift runtime, as
## shipped on the boards; with the runtime as shared libraries the visors spend ~8 % more CPU per
## SOCKS request).
bench: bench-deps
	@$(MAKE) --no-print-directory release >&2
	@SKYWIRE_BIN="$$($(SWIFT) build -c release $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire" ./bench/vpn.sh
	@./bench/aead.sh
	@SKYWIRE_BIN="$$($(SWIFT) build -c release $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire" ./bench/socks.sh
	@$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --product skywire-hostile >&2
	@SKYWIRE_BIN="$$($(SWIFT) build -c release $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire" ./bench/scale.sh
	@SKYWIRE_BIN="$$($(SWIFT) build -c release $(SWIFT_RELEASE_FLAGS) $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire" ./bench/dmsg.sh

bench-deps: deps
	@./scripts/install-deps.sh --bench >&2

## Cross builds (root; see docs/cross-compiling.md). ARCH=aarch64 | x86_64.
## Toolchain and sysroot are cached in $$SKYWIRE_CACHE (default /var/cache/skywire-build).
ARCH ?= aarch64

## toolchain: build (or reuse) the pinned sid chroot and the trixie sysroot for ARCH.
toolchain:
	@./toolchain/make-chroot.sh >/dev/null
	@./toolchain/make-sysroot.sh $(ARCH) >/dev/null

## cross: release skywire for ARCH, static Swift stdlib, stripped: out/$(ARCH)/skywire(.sha256).
cross:
	./toolchain/build.sh $(ARCH)

## cross-test: build, then check NEEDED libs, glibc symbol versions and run it on trixie libraries.
cross-test: cross
	./toolchain/test-cross.sh $(ARCH)

## image: ready-to-flash board image in out/$(BOARD)/ (see docs/boards.md), e.g.
##   make image BOARD=rpi4 OVERLAYS=base,vpn-exit,socks-proxy [SKYWIRE_BIN=path]
BOARD ?= qemu-arm64
OVERLAYS ?=
SKYWIRE_BIN ?=
image:
	BOARD='$(BOARD)' OVERLAYS='$(OVERLAYS)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./image/build.sh

## images: every board's default image (board-configs/*.conf), one after another, each from the one
## cached base rootfs of its architecture (image/check-image.sh runs inside every build on the raw
## disk), then the image check again on the compressed image as shipped, and its SPDX document.
## BOARDS="rpi4 rock64" builds only those. SKYWIRE_BIN_aarch64= / SKYWIRE_BIN_x86_64= skip `make cross`.
## image-check: the same checks for out/$(BOARD)/skywire-$(BOARD)-latest.img.xz.
BOARDS ?= $(basename $(notdir $(wildcard board-configs/*.conf)))
SKYWIRE_BIN_aarch64 ?=
SKYWIRE_BIN_x86_64 ?=
# check_image BOARD: check-image.sh on the board's latest image, then its SPDX document's structure.
define check_image
./image/check-image.sh 'out/$(1)/skywire-$(1)-latest.img.xz'
img=$$(readlink -f 'out/$(1)/skywire-$(1)-latest.img.xz'); ./image/testing/validate-spdx.py "$${img%.img.xz}.spdx.json"
endef
images: $(addprefix images-,$(BOARDS))
images-%: deps
	BOARD='$*' OVERLAYS= SKYWIRE_BIN="$$(case $$(sed -n 's/^SKYWIRE_ARCH=//p' 'board-configs/$*.conf') in \
	    aarch64) echo '$(SKYWIRE_BIN_aarch64)';; x86_64) echo '$(SKYWIRE_BIN_x86_64)';; esac)" ./image/build.sh
	$(call check_image,$*)

image-check:
	$(call check_image,$(BOARD))

## boot-test: build the image (rootfs cached) and boot it under QEMU with a test
## skywire-provision.json; the VPN/SOCKS checks run with a host build (HOST_SKYWIRE_BIN=path,
## else `swift build`; DEEP_CHECKS=0: neither). With OVERLAYS (e.g. base,gateway) the image goes
## to out/$(BOARD)-<overlays>/, so the board's default image is not replaced; an image with
## `gateway` gets the gateway checks (a second NIC for its LAN, a LAN client in a network
## namespace). boot-test-gateway: that for qemu-arm64.
comma := ,
BOOT_TEST_OUT = out/$(BOARD)$(if $(OVERLAYS),-$(subst $(comma),-,$(OVERLAYS)))
DEEP_CHECKS ?= 1
boot-test: deps
	BOARD='$(BOARD)' OVERLAYS='$(OVERLAYS)' SKYWIRE_BIN='$(SKYWIRE_BIN)' OUT_DIR='$(CURDIR)/$(BOOT_TEST_OUT)' ./image/build.sh
	@if [ '$(DEEP_CHECKS)' != 0 ] && [ -z '$(HOST_SKYWIRE_BIN)' ]; then $(SWIFT) build $(SWIFT_BUILD_FLAGS); fi
	BOARD='$(BOARD)' OVERLAYS='$(OVERLAYS)' DEEP_CHECKS='$(DEEP_CHECKS)' \
	    HOST_SKYWIRE_BIN="$$([ '$(DEEP_CHECKS)' = 0 ] || echo "$(or $(HOST_SKYWIRE_BIN),$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire)")" \
	    ./image/boot-test.sh '$(BOOT_TEST_OUT)/skywire-$(BOARD)-latest.img.xz'

boot-test-gateway:
	$(MAKE) boot-test BOARD=qemu-arm64 OVERLAYS=base,gateway DEEP_CHECKS=0

## bundle: a signed update bundle for BOARD (docs/update.md): the image's root filesystem (built
## like `make image`, rootfs cached) in a rauc bundle, out/$(BOARD)-bundle/skywire-$(BOARD)-<version>.raucb,
## signed with UPDATE_CERT/UPDATE_KEY (default: the development key under the build cache).
## update-test: A/B updates under QEMU (image/update-test.sh): install, reboot into the new slot,
## commit; a bundle whose visor fails rolls back by itself; another key's bundle is refused; a power
## cut during the install leaves the old slot booting. In `make test` with SKYWIRE_TEST_UPDATE=1 (docs/update.md: its time).
## bundle, update-test: the A/B board (qemu-arm64-ab) unless BOARD is given (update-test: qemu-arm64-ab
## or x86-64; x86-64 under KVM when /dev/kvm is usable, image/testing/qemu-machine.sh).
UPDATE_BOARD = $(if $(filter command line environment,$(origin BOARD)),$(BOARD),qemu-arm64-ab)
bundle: deps
	BOARD='$(UPDATE_BOARD)' OVERLAYS='$(OVERLAYS)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./image/bundle.sh

update-test: deps
	BOARD='$(UPDATE_BOARD)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./image/update-test.sh

## boot-test-rpi4: build the rpi4 image (rootfs cached) and boot it under QEMU's raspi4b machine
## (QEMU 10 from a cached trixie chroot, image/qemu-trixie.sh): its own U-Boot and device tree from
## the FAT partition (QEMU in the Pi firmware's place), boot.scr boots slot A, root from the SD card
## model, provisioned from the FAT partition, to the visor's "visor ready" line with the provisioned
## key and its apps' "app started" lines on the serial console; then the boot partition, the A/B
## state and the root are checked, and slot B is booted and committed, and a failing slot B falls
## back to A (AB_BOOTS=no skips those two; docs/boards.md, docs/update.md "Raspberry Pi").
## Not in `make test` (it does not fit the CI budget: see docs/boards.md for its time).
boot-test-rpi4: deps
	BOARD=rpi4 OVERLAYS= SKYWIRE_BIN='$(SKYWIRE_BIN)' OUT_DIR='$(CURDIR)/out/rpi4' ./image/build.sh
	./image/boot-test-rpi4.sh out/rpi4/skywire-rpi4-latest.img.xz

## boot-test-x86-64: the x86-64 image (A/B slots) booted under KVM when /dev/kvm is usable, else TCG
## (q35, OVMF), with the same checks as qemu-arm64.
## Not in `make test` (see docs/boards.md for its time).
boot-test-x86-64:
	$(MAKE) boot-test BOARD=x86-64

## fleet: keys, skywire-provision.json and a ready image per device of a fleet manifest
## (docs/fleet.md), e.g. make fleet FLEET=fleet.json [OUT=out/fleet] [HOST_SKYWIRE_BIN=path]
FLEET ?= fleet.json
OUT ?= out/fleet
HOST_SKYWIRE_BIN ?=
fleet: deps
	@[ -n '$(HOST_SKYWIRE_BIN)' ] || $(SWIFT) build $(SWIFT_BUILD_FLAGS) >&2
	HOST_SKYWIRE_BIN='$(or $(HOST_SKYWIRE_BIN),$(shell $(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path 2>/dev/null)/skywire)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./fleet/fleet.py '$(FLEET)' -o '$(OUT)'

## fleet-test: three-device fleet, read back, idempotency, add/remove, manifest errors, and
## (FLEET_BOOT_TEST=1, default) the exit's image booted under QEMU (root).
fleet-test: deps
	@[ -n '$(HOST_SKYWIRE_BIN)' ] || $(SWIFT) build $(SWIFT_BUILD_FLAGS) >&2
	HOST_SKYWIRE_BIN='$(or $(HOST_SKYWIRE_BIN),$(shell $(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path 2>/dev/null)/skywire)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./fleet/test-fleet.sh

clean:
	rm -rf .build out FuzzTesting/.build
