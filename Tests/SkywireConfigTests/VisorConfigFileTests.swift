import XCTest
import SkywireCrypto
@testable import SkywireConfig

final class VisorConfigFileTests: XCTestCase {
    private var dir: TempDir!

    override func setUpWithError() throws {
        dir = try TempDir()
    }

    override func tearDown() {
        dir = nil
    }

    private func sample() -> VisorConfig {
        var c = VisorConfig.generate(keyPair: TestKeys.own)
        c.transport.peers[TestKeys.peerA.publicKey] = PeerAddresses(stcpr: HostPort(host: "2001:db8::1", port: 7777))
        c.transport.peers[TestKeys.peerB.publicKey] = PeerAddresses(sudph: HostPort(host: "peer.example.org", port: 9))
        c.launcher.apps[0].autoStart = true
        c.launcher.apps[1].args = ["-srv", TestKeys.peerA.publicKey.hex, "quote\"and\\slash"]
        c.logLevel = .debug
        return c
    }

    // MARK: Round trip and stable output

    func testGenerateWriteLoadRoundTrip() throws {
        let path = dir.file("skywire-config.json")
        let fresh = VisorConfig.generate()
        try fresh.write(to: path)
        let loaded = try VisorConfig.load(path: path)
        XCTAssertEqual(loaded, fresh)
        XCTAssertEqual(loaded.launcher.apps.map(\.name), [.vpnServer, .vpnClient, .skysocks, .skysocksClient])
        XCTAssertEqual(loaded.launcher.apps.map(\.port), [44, 43, 3, 13])
        XCTAssertEqual(loaded.launcher.apps.map(\.autoStart), [false, false, false, false])
        XCTAssertEqual(loaded.transport.stcprPort, VisorConfig.defaultSTCPRPort)
        XCTAssertEqual(loaded.warnings(), [])
    }

    func testRichConfigRoundTrip() throws {
        let path = dir.file("c.json")
        try sample().write(to: path)
        let loaded = try VisorConfig.load(path: path)
        XCTAssertEqual(loaded, sample())
        XCTAssertEqual(loaded.transport.peers[TestKeys.peerA.publicKey]?.stcpr?.description, "[2001:db8::1]:7777")
    }

    func testOutputIsStableAndSorted() throws {
        let text = sample().jsonText()
        XCTAssertEqual(text, sample().jsonText())
        XCTAssertEqual(try VisorConfig.parse(text).jsonText(), text)
        // Peer insertion order does not matter.
        var reordered = VisorConfig.generate(keyPair: TestKeys.own)
        reordered.transport.peers[TestKeys.peerB.publicKey] = sample().transport.peers[TestKeys.peerB.publicKey]
        reordered.transport.peers[TestKeys.peerA.publicKey] = sample().transport.peers[TestKeys.peerA.publicKey]
        reordered.launcher = sample().launcher
        reordered.logLevel = .debug
        XCTAssertEqual(reordered.jsonText(), text)

        let topLevel = text.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map {
            String($0.dropFirst(3).prefix { $0 != "\"" })
        }
        XCTAssertEqual(topLevel, ["cli_addr", "launcher", "log_level", "pk", "sk", "state_dir", "transport", "version"])
        XCTAssertTrue(text.hasSuffix("}\n"))
        XCTAssertTrue(text.contains("\n  \"version\": \"1\"\n"))
        XCTAssertTrue(text.contains("\"cli_addr\": \"/run/skywire/cli.sock\""), "slashes are not escaped")
    }

    func testSecretKeyHexRoundTrip() throws {
        let pair = try VisorConfig.keyPair(secretKeyHex: TestKeys.peerA.secretKeyHex)
        XCTAssertEqual(pair.publicKey, TestKeys.peerA.publicKey)
        XCTAssertThrowsError(try VisorConfig.keyPair(secretKeyHex: "00"))
        let forged = String(TestKeys.peerA.secretKeyHex.prefix(64)) + TestKeys.peerB.publicKey.hex
        XCTAssertThrowsError(try VisorConfig.keyPair(secretKeyHex: forged))
    }

    // MARK: Secret key file (config gen --sk-file)

    func testSecretKeyFileIsTrimmedAndGivesTheSameKey() throws {
        let path = dir.file("sk")
        writeRaw(" \n" + TestKeys.peerA.secretKeyHex + "\r\n\n", to: path)
        let hex = try VisorConfig.secretKeyHex(file: path)
        XCTAssertEqual(hex, TestKeys.peerA.secretKeyHex)
        XCTAssertEqual(try VisorConfig.keyPair(secretKeyHex: hex).publicKey, TestKeys.peerA.publicKey)
        writeRaw("\n\t ", to: path)
        XCTAssertEqual(try VisorConfig.secretKeyHex(file: path), "")
    }

    func testSecretKeyFileGetsTheConfigFileChecksAndASmallBound() throws {
        let path = dir.file("sk")
        for mode: mode_t in [0o644, 0o640, 0o604] {
            writeRaw(TestKeys.peerA.secretKeyHex, to: path, mode: mode)
            XCTAssertThrowsError(try VisorConfig.secretKeyHex(file: path)) { error in
                XCTAssertEqual(error as? ConfigError, .insecureMode(path: path, mode: UInt32(mode)))
            }
        }
        XCTAssertThrowsError(try VisorConfig.secretKeyHex(file: dir.path)) { error in
            XCTAssertEqual(error as? ConfigError, .notRegularFile(path: dir.path))
        }
        let big = VisorConfig.maxSecretKeyFileBytes + 1
        writeRaw(TestKeys.peerA.secretKeyHex + String(repeating: "\n", count: big - 128), to: path)
        XCTAssertThrowsError(try VisorConfig.secretKeyHex(file: path)) { error in
            XCTAssertEqual(error as? ConfigError,
                           .tooLarge(path: path, size: big, limit: VisorConfig.maxSecretKeyFileBytes))
        }
    }

    // MARK: Atomic write

    func testWriteRefusesToOverwriteWithoutForce() throws {
        let path = dir.file("c.json")
        try VisorConfig.generate(keyPair: TestKeys.own).write(to: path)
        let before = readText(path)
        XCTAssertThrowsError(try VisorConfig.generate(keyPair: TestKeys.peerA).write(to: path)) { error in
            XCTAssertEqual(error as? ConfigError, .exists(path: path))
            XCTAssertTrue("\(error)".contains("--force"))
        }
        XCTAssertEqual(readText(path), before)
        XCTAssertEqual(dir.listing(), ["c.json"])

        try VisorConfig.generate(keyPair: TestKeys.peerA).write(to: path, force: true)
        XCTAssertEqual(try VisorConfig.load(path: path).publicKey, TestKeys.peerA.publicKey)
        XCTAssertEqual(dir.listing(), ["c.json"])
    }

    func testWriteRefusesToReplaceASymlinkOrOtherEntryWithoutForce() throws {
        let path = dir.file("link.json")
        XCTAssertEqual(symlink(dir.file("missing-target"), path), 0)
        XCTAssertThrowsError(try sample().write(to: path)) { error in
            XCTAssertEqual(error as? ConfigError, .exists(path: path))
        }
    }

    func testWrittenModeIs0600EvenWithPermissiveOrStrictUmask() throws {
        for mask: mode_t in [0o000, 0o777] {
            let old = umask(mask)
            defer { umask(old) }
            let path = dir.file("m\(mask).json")
            try sample().write(to: path)
            XCTAssertEqual(fileMode(path), 0o600, "umask \(String(mask, radix: 8))")
        }
        XCTAssertEqual(dir.listing(), ["m0.json", "m511.json"])
    }

    func testFailedWriteLeavesNothingBehind() throws {
        XCTAssertThrowsError(try sample().write(to: dir.file("no-such-dir/c.json"))) { error in
            guard case .io(_, _, let e)? = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(e, ENOENT)
        }
        // Forcing onto a directory fails at rename; the temporary file must be gone.
        XCTAssertEqual(mkdir(dir.file("adir"), 0o700), 0)
        XCTAssertThrowsError(try sample().write(to: dir.file("adir"), force: true))
        XCTAssertEqual(dir.listing(), ["adir"])
    }

    func testInvalidConfigIsNeverWritten() throws {
        var c = sample()
        c.cliAddr = "relative.sock"
        c.transport.listenAddr = "nowhere"
        let path = dir.file("c.json")
        XCTAssertThrowsError(try c.write(to: path)) { error in
            guard case .invalid(let problems)? = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(problems.map(\.path), ["transport.listen_addr", "cli_addr"])
        }
        XCTAssertEqual(dir.listing(), [])
        XCTAssertEqual(c.validate().count, 2)
        XCTAssertEqual(sample().validate(), [])
    }

    // MARK: Load checks

    func testLoadRefusesGroupOrOtherAccess() throws {
        let path = dir.file("c.json")
        for mode: mode_t in [0o644, 0o640, 0o604, 0o660, 0o601] {
            writeRaw(sample().jsonText(), to: path, mode: mode)
            XCTAssertThrowsError(try VisorConfig.load(path: path)) { error in
                XCTAssertEqual(error as? ConfigError, .insecureMode(path: path, mode: UInt32(mode)))
                XCTAssertTrue("\(error)".contains("chmod 600"))
            }
        }
        for mode: mode_t in [0o600, 0o400] {
            writeRaw(sample().jsonText(), to: path, mode: mode)
            XCTAssertEqual(try VisorConfig.load(path: path), sample())
        }
    }

    func testLoadRefusesAFileOwnedBySomeoneElse() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to chown")
        let path = dir.file("c.json")
        try sample().write(to: path)
        let stranger: uid_t = 54321
        XCTAssertEqual(chown(path, stranger, gid_t.max), 0)
        XCTAssertThrowsError(try VisorConfig.load(path: path)) { error in
            XCTAssertEqual(error as? ConfigError, .insecureOwner(path: path, uid: UInt32(stranger)))
        }
    }

    func testLoadErrorsForMissingDirectoryAndHugeFiles() {
        let missing = dir.file("nope.json")
        XCTAssertThrowsError(try VisorConfig.load(path: missing)) { error in
            XCTAssertEqual(error as? ConfigError, .io(path: missing, operation: "open", errno: ENOENT))
        }
        XCTAssertThrowsError(try VisorConfig.load(path: dir.path)) { error in
            XCTAssertEqual(error as? ConfigError, .notRegularFile(path: dir.path))
        }
        let huge = dir.file("huge.json")
        writeRaw(String(repeating: " ", count: VisorConfig.maxFileBytes + 1), to: huge)
        XCTAssertThrowsError(try VisorConfig.load(path: huge)) { error in
            XCTAssertEqual(error as? ConfigError,
                           .tooLarge(path: huge, size: VisorConfig.maxFileBytes + 1, limit: VisorConfig.maxFileBytes))
        }
    }

    func testLoadReportsSyntaxAndValidationErrors() {
        let path = dir.file("c.json")
        writeRaw("{\n  \"pk\": \"x\",\n}\n", to: path)
        XCTAssertThrowsError(try VisorConfig.load(path: path)) { error in
            XCTAssertEqual(error as? ConfigError,
                           .syntax(line: 3, column: 1, message: "unexpected character '}', expected a member name in double quotes"))
        }
        writeRaw(sample().jsonText().replacingOccurrences(of: "\"debug\"", with: "\"verbose\""), to: path)
        XCTAssertThrowsError(try VisorConfig.load(path: path)) { error in
            guard case .invalid(let problems)? = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(problems.map(\.path), ["log_level"])
        }
    }
}

private extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

final class HostPortTests: XCTestCase {
    func testAccepts() throws {
        for (text, host, port) in [("192.0.2.1:7777", "192.0.2.1", 7777), ("[2001:db8::1]:1", "2001:db8::1", 1),
                                   ("peer.example.org:65535", "peer.example.org", 65535), ("a-b:9", "a-b", 9)] {
            XCTAssertEqual(try HostPort.parse(text).get(), HostPort(host: host, port: UInt16(port)), text)
            XCTAssertEqual(try HostPort.parse(text).get().description, text)
        }
    }

    func testRejects() {
        let cases: [(String, String)] = [
            ("foo", "missing ':port'"),
            (":7777", "empty host"),
            ("host:", "port \"\" is not in 1...65535"),
            ("host:65536", "not in 1...65535"),
            ("host:+80", "not in 1...65535"),
            ("2001:db8::1:7777", "brackets"),
            ("[2001:db8::1", "unclosed"),
            ("[1.2.3.4]:1", "not an IPv6 address"),
            ("[::1]x", "unexpected text after ']'"),
            ("256.1.1.1:1", "not an IPv4 address"),
            ("-bad-.org:1", "not a valid host name"),
            ("a..b:1", "not a valid host name"),
            ("under_score:1", "not a valid host name"),
        ]
        for (text, expected) in cases {
            switch HostPort.parse(text) {
            case .success(let hp): XCTFail("\(text) parsed as \(hp)")
            case .failure(let e): XCTAssertTrue(e.description.contains(expected), "\(text): \(e)")
            }
        }
    }
}
