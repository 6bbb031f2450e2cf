// swift-tools-version:6.2
// libFuzzer harnesses for the skywire parsers (docs/fuzzing.md). A package of its own so that the
// main package's `swift build`, `swift test`, `make release` and the cross build never see it.
// Built by `make fuzz` / `scripts/fuzz.sh` with
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// (-parse-as-library: no top-level code; each harness exports LLVMFuzzerTestOneInput and the
// `<module>_main` SwiftPM links as `main`, which starts libFuzzer through CFuzzDriver).
import PackageDescription

/// One executable per harness: Sources/<name>/main.swift, corpus in corpus/<name>/.
let harnesses: [(name: String, dependencies: [Target.Dependency])] = [
    ("fuzz-mux-frame", []),
    ("fuzz-mux-session", []),
    ("fuzz-sudph", []),
    ("fuzz-socks-parsers", ["SocksFuzzSupport", .product(name: "NIOCore", package: "swift-nio")]),
    ("fuzz-socks-server", ["SocksFuzzSupport", .product(name: "NIOCore", package: "swift-nio")]),
    ("fuzz-socks-snooper", ["SocksFuzzSupport", .product(name: "NIOCore", package: "swift-nio")]),
    ("fuzz-vpn-message", []),
    ("fuzz-config", []),
    ("fuzz-discovery", []),
    ("fuzz-pty-frame", []),
    ("fuzz-chat-frame", []),
    ("fuzz-update-frame", []),
    ("fuzz-dmsg-relay", [.product(name: "NIOCore", package: "swift-nio")]),
]

let package = Package(
    name: "skywire-fuzz",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "skywire-swift", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // Input reader and invariant checks shared by the harnesses.
        // libFuzzer's entry: SwiftPM links executables with `--defsym main=<module>_main`, so each
        // harness defines `<module>_main` (`@_cdecl`) and hands over to LLVMFuzzerRunDriver here.
        .target(name: "CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"]),
        // SOCKS5 seed messages shared by the three SOCKS harnesses.
        .target(name: "SocksFuzzSupport", dependencies: [
            .product(name: "SkywireFuzzTargets", package: "skywire-swift"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ] + harnesses.map { h in
        .executableTarget(name: h.name, dependencies: [
            "FuzzSupport",
            .product(name: "SkywireFuzzTargets", package: "skywire-swift"),
        ] + h.dependencies)
    }
)
