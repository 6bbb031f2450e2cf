// swift-tools-version:6.2
// Builds with the host Swift 6.3.1 and with Debian sid's Swift 6.2.3 (the aarch64 toolchain).
import PackageDescription

/// Release builds of the datapath modules run without run-time exclusivity checks: every access
/// to a class's stored property there went through swift_beginAccess (an access set kept per
/// thread), ~20 % of the instructions a proxied SOCKS request costs each visor (callgrind,
/// bench/socks-count.sh; docs/socks.md "Performance"). Debug builds, which the tests use, keep
/// the checks, so an overlapping access still traps there.
let datapathSwiftSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "skywire-swift",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "skywire", targets: ["skywire"]),
        // The discovery service (docs/discovery.md); not part of the board image.
        .executable(name: "skywire-discovery", targets: ["skywire-discovery"]),
        // The dmsg relay server (docs/dmsg.md); not part of the board image.
        .executable(name: "skywire-dmsg", targets: ["skywire-dmsg"]),
        // The parsers and protocol cores, for the libFuzzer harnesses (FuzzTesting/Package.swift,
        // docs/fuzzing.md); the executables above do not use this product.
        .library(name: "SkywireFuzzTargets", targets: [
            "SkywireWire", "SkywireCrypto", "SkywireSystem", "SkywireConfig", "SkywireSocks", "SkywireVPN", "SkywireDiscovery", "SkywireDiscoveryServer",
            "SkywireDmsg",
        ]),
    ],
    dependencies: [
        // Vendored 1.8.2 without its Foundation import (Vendor/swift-argument-parser/PATCHES.md).
        .package(path: "Vendor/swift-argument-parser"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
    ],
    targets: [
        // One [system] module per C library, named by its exact pkg-config name.
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium",
                       providers: [.apt(["libsodium-dev"])]),
        // The transports' ChaCha20-Poly1305 (OpenSSL's AVX-512/AVX2/NEON code; docs/architecture.md).
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-3.0",
                       providers: [.apt(["libnl-3-dev"])]),
        .systemLibrary(name: "CNetlinkRoute", pkgConfig: "libnl-route-3.0",
                       providers: [.apt(["libnl-route-3-dev"])]),
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl",
                       providers: [.apt(["libmnl-dev"])]),
        // Discovery storage (server only; the board binary never links these).
        .systemLibrary(name: "CSQLite3", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        // What Swift cannot import directly: ioctl request numbers, ifreq, NLMSG_* macros.
        .target(name: "CSkywireShim"),

        // Pure protocol core: no I/O.
        .target(name: "SkywireCrypto", dependencies: ["CSodium", "CLibCrypto"], swiftSettings: datapathSwiftSettings),
        .target(name: "SkywireWire", dependencies: [], swiftSettings: datapathSwiftSettings),
        .target(name: "SkywireConfig", dependencies: ["SkywireCrypto"]),
        // The dmsg relay's frames, routing and relay choice (PROTOCOL.md §7), pure.
        .target(name: "SkywireDmsg", dependencies: [
            "SkywireCrypto", .product(name: "NIOCore", package: "swift-nio"),
        ]),

        // Operating-system access: syscalls, descriptors, TUN, netlink.
        .target(name: "SkywireSystem", dependencies: [
            "CSkywireShim", "CNetlink", "CNetlinkRoute", "CMnl",
        ]),

        // The event loop and raw sockets every datapath uses (EpollEventLoop, raw TCP, batched UDP):
        // transports and apps import it; it knows nothing of transports.
        .target(name: "SkywireIO", dependencies: [
            "SkywireSystem", "CSkywireShim",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: datapathSwiftSettings),

        // Transports and the visor runtime.
        .target(name: "SkywireTransport", dependencies: [
            "SkywireCrypto", "SkywireWire", "SkywireDmsg", "SkywireSystem", "SkywireConfig", "SkywireIO",
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: datapathSwiftSettings),
        .target(name: "SkywireVisor", dependencies: [
            "SkywireConfig", "SkywireTransport", "SkywireIO", "SkywireSystem", "SkywireSocks", "SkywireVPN", "SkywireDiscovery",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // SOCKS5 proxy apps (skysocks / skysocks-client) over AppStream.
        .target(name: "SkywireSocks", dependencies: [
            "SkywireTransport", "SkywireIO", "SkywireSystem", "SkywireConfig", "CSkywireShim",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: datapathSwiftSettings),
        // VPN apps (vpn-server / vpn-client): protocol, address pool, TUN datapath, routes, nftables.
        .target(name: "SkywireVPN", dependencies: [
            "SkywireTransport", "SkywireIO", "SkywireSystem", "SkywireCrypto", "SkywireConfig", "CSkywireShim",
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "skywire", dependencies: [
            "SkywireVisor", "SkywireConfig", "SkywireDiscovery", "SkywireCrypto",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Discovery: the wire contract shared by visors and the service (pure), then the service.
        .target(name: "SkywireDiscovery", dependencies: ["SkywireCrypto", "SkywireConfig", "SkywireWire"]),
        .target(name: "SkywireDiscoveryServer", dependencies: [
            "SkywireDiscovery", "SkywireCrypto", "SkywireConfig", "SkywireWire", "CSQLite3", "CLibPQ",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "skywire-discovery", dependencies: [
            "SkywireDiscoveryServer", "SkywireDiscovery", "SkywireConfig", "SkywireCrypto",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The dmsg relay server (docs/dmsg.md): sessions from visors, streams between them.
        .executableTarget(name: "skywire-dmsg", dependencies: [
            "SkywireTransport", "SkywireDmsg", "SkywireIO", "SkywireCrypto", "SkywireConfig", "SkywireSystem", "SkywireDiscovery", "SkywireVisor",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Hostile-peer load generators for the hardening tests (Tests/integration) and benches;
        // a test tool: not in the board image, not built by `make release`.
        .executableTarget(name: "skywire-hostile", dependencies: [
            "SkywireTransport", "SkywireIO", "SkywireCrypto", "SkywireWire", "SkywireSystem", "SkywireConfig", "SkywireDmsg",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // ChaCha20-Poly1305 CPU per GB, OpenSSL against libsodium (bench/aead.sh); a bench tool only.
        .executableTarget(name: "skywire-aead-bench", dependencies: ["SkywireCrypto", "SkywireCryptoReference"], path: "bench/aead"),
        // libsodium's ChaCha20-Poly1305 as the reference for the equivalence tests and bench/aead (not in the visor).
        .target(name: "SkywireCryptoReference", dependencies: ["SkywireCrypto", "CSodium"], path: "Tests/SkywireCryptoReference"),

        .testTarget(name: "SkywireDmsgTests", dependencies: [
            "SkywireDmsg", "SkywireCrypto", "SkywireTransport", "SkywireIO", "SkywireTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SkywireCryptoTests", dependencies: ["SkywireCrypto", "SkywireCryptoReference", "SkywireTestSupport"],
                    resources: [.copy("Vectors")]),
        .testTarget(name: "SkywireWireTests", dependencies: ["SkywireWire", "SkywireTestSupport"]),
        .testTarget(name: "SkywireDiscoveryTests", dependencies: [
            "SkywireDiscovery", "SkywireDiscoveryServer", "SkywireCrypto", "SkywireConfig", "SkywireWire", "SkywireSystem",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SkywireIOTests", dependencies: [
            "SkywireIO", "SkywireSystem", "SkywireTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "SkywireTransportTests", dependencies: [
            "SkywireTransport", "SkywireIO", "SkywireCrypto", "SkywireSystem", "SkywireTestSupport",
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SkywireVisorTests", dependencies: ["SkywireVisor", "skywire", "SkywireTestSupport"]),
        .testTarget(name: "SkywireConfigTests", dependencies: ["SkywireConfig"]),
        .testTarget(name: "SkywireSocksTests", dependencies: ["SkywireSocks", "SkywireIO", "SkywireConfig", "SkywireCrypto", "SkywireTestSupport"]),
        // Helpers shared by test targets (network-namespace sandbox, free loopback ports, a stream recorder).
        .target(name: "SkywireTestSupport", dependencies: ["SkywireSystem", "SkywireTransport", "CSkywireShim",
                                                       .product(name: "NIOCore", package: "swift-nio")],
                path: "Tests/SkywireTestSupport"),
        .testTarget(name: "SkywireVPNTests",
                    dependencies: ["SkywireVPN", "SkywireSystem", "SkywireCrypto", "SkywireConfig", "CSkywireShim",
                                   "SkywireTestSupport", "SkywireTransport", "SkywireIO",
                                   .product(name: "NIOCore", package: "swift-nio"),
                                   .product(name: "NIOEmbedded", package: "swift-nio"),
                                   .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SkywireSystemTests", dependencies: ["SkywireSystem", "CSkywireShim", "SkywireTestSupport"]),
    ]
)
