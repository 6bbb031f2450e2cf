# skywire-swift: build, test, cross-compile and image targets.
SHELL := /bin/bash
SWIFT ?= swift
SWIFT_BUILD_FLAGS ?=

.PHONY: all build release test unit-test integration-test deps bench clean image boot-test fleet fleet-test

all: build

## deps: install the host packages the build and tests need (idempotent).
deps:
	@./scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)

release: deps
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_BUILD_FLAGS)

## test: unit tests, then integration tests in network namespaces (root).
test: deps
	$(SWIFT) build $(SWIFT_BUILD_FLAGS)
	$(SWIFT) test $(SWIFT_BUILD_FLAGS)
	./Tests/integration/run.sh "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire"

unit-test: deps
	$(SWIFT) test $(SWIFT_BUILD_FLAGS)

integration-test: build
	./Tests/integration/run.sh "$$($(SWIFT) build $(SWIFT_BUILD_FLAGS) --show-bin-path)/skywire"

## image: ready-to-flash board image in out/$(BOARD)/ (see docs/boards.md), e.g.
##   make image BOARD=rpi4 OVERLAYS=base,vpn-exit,socks-proxy [SKYWIRE_BIN=path]
BOARD ?= qemu-arm64
OVERLAYS ?=
SKYWIRE_BIN ?=
image:
	BOARD='$(BOARD)' OVERLAYS='$(OVERLAYS)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./image/build.sh

## boot-test: build the image (rootfs cached) and boot it under QEMU with a test
## skywire-provision.json; DEEP_CHECKS=1 adds the VPN/SOCKS checks.
boot-test:
	BOARD='$(BOARD)' OVERLAYS='$(OVERLAYS)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./image/build.sh
	BOARD='$(BOARD)' ./image/boot-test.sh

## fleet: keys, skywire-provision.json and a ready image per device of a fleet manifest
## (docs/fleet.md), e.g. make fleet FLEET=fleet.json [OUT=out/fleet] [HOST_SKYWIRE_BIN=path]
FLEET ?= fleet.json
OUT ?= out/fleet
HOST_SKYWIRE_BIN ?=
fleet:
	HOST_SKYWIRE_BIN='$(HOST_SKYWIRE_BIN)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./fleet/fleet.py '$(FLEET)' -o '$(OUT)'

## fleet-test: three-device fleet, read back, idempotency, add/remove, manifest errors, and
## (FLEET_BOOT_TEST=1, default) the exit's image booted under QEMU (root).
fleet-test:
	HOST_SKYWIRE_BIN='$(HOST_SKYWIRE_BIN)' SKYWIRE_BIN='$(SKYWIRE_BIN)' ./fleet/test-fleet.sh

clean:
	rm -rf .build out
