import XCTest
import SkywireCrypto
@testable import SkywireConfig

final class VisorConfigValidationTests: XCTestCase {
    /// A valid document: the default config for TestKeys.own plus one peer.
    private func baseDocument() -> JSONValue {
        var config = VisorConfig.generate(keyPair: TestKeys.own)
        config.transport.peers[TestKeys.peerA.publicKey] = PeerAddresses(
            stcpr: HostPort(host: "192.0.2.10", port: 7777), sudph: HostPort(host: "192.0.2.10", port: 7778))
        return config.jsonValue
    }

    /// The problems reported for `doc` after `edit`; fails if it loads.
    private func problems(_ edit: (inout JSONValue) -> Void, file: StaticString = #filePath,
                          line: UInt = #line) -> [FieldProblem] {
        var doc = baseDocument()
        edit(&doc)
        return problems(text: doc.prettyPrinted(), file: file, line: line)
    }

    private func problems(text: String, file: StaticString = #filePath, line: UInt = #line) -> [FieldProblem] {
        do {
            let c = try VisorConfig.parse(text)
            XCTFail("loaded \(c.publicKey)", file: file, line: line)
            return []
        } catch {
            guard case .invalid(let list) = error else {
                XCTFail("expected .invalid, got \(error)", file: file, line: line)
                return []
            }
            XCTAssertEqual(error.description, list.map(\.description).joined(separator: "\n"), file: file, line: line)
            return list
        }
    }

    /// Asserts that exactly one problem was found, at `path`, whose text contains `message`.
    private func assertOnly(_ found: [FieldProblem], _ path: String, _ message: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(found.count, 1, "\(found)", file: file, line: line)
        XCTAssertEqual(found.first?.path, path, file: file, line: line)
        XCTAssertTrue(found.first?.message.contains(message) ?? false,
                      "\(found.first?.message ?? "none") lacks \(message)", file: file, line: line)
    }

    private var peerA: String { TestKeys.peerA.publicKey.hex }

    func testBaseDocumentLoads() throws {
        let c = try VisorConfig.parse(baseDocument().prettyPrinted())
        XCTAssertEqual(c.publicKey, TestKeys.own.publicKey)
        XCTAssertEqual(c.transport.peers[TestKeys.peerA.publicKey]?.stcpr, HostPort(host: "192.0.2.10", port: 7777))
    }

    // MARK: Keys

    func testBadPublicKey() {
        assertOnly(problems { $0.set([.key("pk")], .string("ab12")) }, "pk", "not a 64-hex public key")
        let upper = TestKeys.own.publicKey.hex.uppercased()
        assertOnly(problems { $0.set([.key("pk")], .string(upper)) }, "pk", "use lowercase hex")
    }

    func testPublicKeyThatIsNotACurvePoint() {
        // y = 2 with the sign bit clear does not decode to a point on edwards25519.
        let notAPoint = "02" + String(repeating: "0", count: 62)
        XCTAssertThrowsError(try PublicKey(hex: notAPoint))
        assertOnly(problems { $0.set([.key("pk")], .string(notAPoint)) }, "pk", "not a valid Ed25519 public key")
    }

    func testSecretKeyMismatchIsAnErrorNotARegeneration() {
        let found = problems { $0.set([.key("sk")], .string(TestKeys.peerA.secretKeyHex)) }
        assertOnly(found, "sk", "does not match pk")
        // The secret key never appears in a message.
        XCTAssertFalse(found.description.contains(TestKeys.peerA.secretKeyHex))
        XCTAssertFalse(found.description.contains(String(TestKeys.peerA.secretKeyHex.prefix(64))))
    }

    func testSecretKeyWhosePublicHalfWasTamperedWith() {
        // seed of one key with the public half of another: the seed must derive pk.
        let forged = String(TestKeys.peerA.secretKeyHex.prefix(64)) + TestKeys.own.publicKey.hex
        assertOnly(problems { $0.set([.key("sk")], .string(forged)) }, "sk", "does not match pk")
    }

    func testMalformedSecretKey() {
        assertOnly(problems { $0.set([.key("sk")], .string("zz")) }, "sk", "not a 128-hex secret key")
        assertOnly(problems { $0.set([.key("sk")], .number("12")) }, "sk", "expected a string, got a number")
    }

    // MARK: Structure

    func testUnknownTopLevelKeyIsAnErrorWithSuggestion() {
        let found = problems { $0.set([.key("log_levle")], .string("info")) }
        assertOnly(found, "log_levle", #"unknown field "log_levle" (did you mean "log_level"?)"#)
    }

    func testUnknownNestedKeys() {
        let found = problems {
            $0.set([.key("transport"), .key("stcpr_prot")], .number("1"))
            $0.set([.key("launcher"), .key("apps"), .index(0), .key("autostart")], .bool(true))
            $0.set([.key("transport"), .key("peers"), .key(peerA), .key("tcp")], .string("x:1"))
        }
        XCTAssertEqual(found.map(\.path), [
            "transport.stcpr_prot",
            "transport.peers[\"\(peerA)\"].tcp",
            "launcher.apps[0].autostart",
        ])
        XCTAssertTrue(found[0].message.contains(#"did you mean "stcpr_port"?"#))
        XCTAssertTrue(found[2].message.contains(#"did you mean "auto_start"?"#))
    }

    func testMissingRequiredFields() {
        let found = problems {
            $0.set([.key("cli_addr")], nil)
            $0.set([.key("transport"), .key("listen_addr")], nil)
            $0.set([.key("launcher"), .key("apps"), .index(1), .key("port")], nil)
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "cli_addr", message: "missing (required)"),
            FieldProblem(path: "transport.listen_addr", message: "missing (required)"),
            FieldProblem(path: "launcher.apps[1].port", message: "missing (required)"),
        ])
    }

    func testOptionalFieldsTakeDefaults() throws {
        var doc = baseDocument()
        doc.set([.key("transport"), .key("peers")], nil)
        doc.set([.key("transport"), .key("discovery")], nil)
        doc.set([.key("launcher"), .key("apps"), .index(0), .key("args")], nil)
        doc.set([.key("launcher"), .key("apps"), .index(0), .key("auto_start")], nil)
        let c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.peers, [:])
        XCTAssertEqual(c.transport.discovery, "")
        XCTAssertEqual(c.launcher.apps[0].args, [])
        XCTAssertFalse(c.launcher.apps[0].autoStart)
    }

    func testWrongJSONTypes() {
        let found = problems {
            $0.set([.key("transport"), .key("stcpr_port")], .string("7777"))
            $0.set([.key("transport"), .key("peers")], .array([]))
            $0.set([.key("launcher"), .key("apps"), .index(0), .key("auto_start")], .string("yes"))
            $0.set([.key("launcher"), .key("apps"), .index(1), .key("args")], .array([.string("-x"), .number("3")]))
            $0.set([.key("launcher"), .key("apps"), .index(2)], .string("skysocks"))
            $0.set([.key("state_dir")], .null)
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "transport.stcpr_port", message: "expected an integer, got a string"),
            FieldProblem(path: "transport.peers", message: "expected an object mapping public keys to addresses, got an array"),
            FieldProblem(path: "launcher.apps[0].auto_start", message: "expected true or false, got a string"),
            FieldProblem(path: "launcher.apps[1].args[1]", message: "expected a string, got a number"),
            FieldProblem(path: "launcher.apps[2]", message: "expected an object, got a string"),
            FieldProblem(path: "state_dir", message: "expected a string, got null"),
        ])
    }

    func testRootMustBeAnObject() {
        assertOnly(problems(text: "[1, 2]"), "(root)", "expected an object, got an array")
    }

    func testDuplicateFieldsAreReported() {
        let found = problems { $0.appendMember("log_level", .string("debug")) }
        assertOnly(found, "log_level", "duplicate field")
        let peers = problems {
            $0.set([.key("transport"), .key("peers")], .object([
                .init(name: self.peerA, value: .object([.init(name: "stcpr", value: .string("192.0.2.1:1"))])),
                .init(name: self.peerA, value: .object([.init(name: "stcpr", value: .string("192.0.2.2:1"))])),
            ]))
        }
        assertOnly(peers, "transport.peers[\"\(peerA)\"]", "duplicate peer")
    }

    func testUnsupportedVersion() {
        assertOnly(problems { $0.set([.key("version")], .string("2")) }, "version",
                   #""2" is not supported (this skywire reads version "1")"#)
    }

    // MARK: transport

    func testListenerPorts() {
        let found = problems {
            $0.set([.key("transport"), .key("stcpr_port")], .number("65536"))
            $0.set([.key("transport"), .key("sudph_port")], .number("-1"))
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "transport.stcpr_port", message: "65536 is not in 0...65535"),
            FieldProblem(path: "transport.sudph_port", message: "-1 is not in 0...65535"),
        ])
        assertOnly(problems { $0.set([.key("transport"), .key("stcpr_port")], .number("7777.5")) },
                   "transport.stcpr_port", "7777.5 is not an integer")
        assertOnly(problems { $0.set([.key("transport"), .key("stcpr_port")], .number("99999999999999999999999")) },
                   "transport.stcpr_port", "is not in 0...65535")
    }

    func testSamePortForBothListenersIsAllowed() throws {
        var doc = baseDocument()
        doc.set([.key("transport"), .key("sudph_port")], .number("7777"))
        let c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.stcprPort, c.transport.sudphPort)
    }

    func testListenAddress() throws {
        assertOnly(problems { $0.set([.key("transport"), .key("listen_addr")], .string("localhost")) },
                   "transport.listen_addr", #""localhost" is not an IP address"#)
        var doc = baseDocument()
        doc.set([.key("transport"), .key("listen_addr")], .string("::"))
        XCTAssertEqual(try VisorConfig.parse(doc.prettyPrinted()).transport.listenAddr, "::")
    }

    func testBadPeerKeysAndAddresses() {
        let badKey = "ab12"
        let found = problems {
            $0.set([.key("transport"), .key("peers"), .key(badKey)], .object([.init(name: "stcpr", value: .string("192.0.2.1:7777"))]))
            $0.set([.key("transport"), .key("peers"), .key(self.peerA), .key("stcpr")], .string("foo"))
            $0.set([.key("transport"), .key("peers"), .key(self.peerA), .key("sudph")], .string("192.0.2.1:0"))
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "transport.peers[\"\(peerA)\"].stcpr", message: #""foo" is not host:port (missing ':port')"#),
            FieldProblem(path: "transport.peers[\"\(peerA)\"].sudph",
                         message: #""192.0.2.1:0" is not host:port (port "0" is not in 1...65535)"#),
            FieldProblem(path: "transport.peers[\"ab12\"]", message: "not a 64-hex public key"),
        ])
    }

    func testPeerNeedsAnAddress() {
        assertOnly(problems { $0.set([.key("transport"), .key("peers"), .key(self.peerA)], .object([])) },
                   "transport.peers[\"\(peerA)\"]", "needs at least one of stcpr, sudph")
    }

    func testPeerEqualToOwnKey() {
        let own = TestKeys.own.publicKey.hex
        assertOnly(problems {
            $0.set([.key("transport"), .key("peers"), .key(own)], .object([.init(name: "sudph", value: .string("192.0.2.3:7778"))]))
        }, "transport.peers[\"\(own)\"]", "is this visor's own public key")
    }

    // MARK: transport.dmsg_servers

    private func relay(_ pk: String, _ addr: String) -> JSONValue {
        .object([.init(name: "pk", value: .string(pk)), .init(name: "addr", value: .string(addr))])
    }

    func testDmsgServersLoadAndRoundTrip() throws {
        var doc = baseDocument()
        doc.set([.key("transport"), .key("dmsg_servers")], .array([relay(peerA, "198.51.100.7:8081")]))
        let c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.dmsgServers,
                       [DmsgServerAddress(publicKey: TestKeys.peerA.publicKey, address: HostPort(host: "198.51.100.7", port: 8081))])
        XCTAssertEqual(try VisorConfig.parse(c.jsonText()), c)
        // Left out when empty (configs written before dmsg stay byte-identical).
        XCTAssertFalse(VisorConfig.generate(keyPair: TestKeys.own).jsonText().contains("dmsg_servers"))
    }

    func testBadDmsgServers() {
        let own = TestKeys.own.publicKey.hex
        let path = "transport.dmsg_servers"
        assertOnly(problems { $0.set([.key("transport"), .key("dmsg_servers")], .object([])) }, path, "expected an array")
        assertOnly(problems { $0.set([.key("transport"), .key("dmsg_servers")], .array([self.relay(self.peerA, "nohost")])) },
                   path + "[0].addr", "is not HOST:PORT")
        assertOnly(problems { $0.set([.key("transport"), .key("dmsg_servers")], .array([self.relay("ab12", "198.51.100.7:1")])) },
                   path + "[0].pk", "not a 64-hex public key")
        assertOnly(problems { $0.set([.key("transport"), .key("dmsg_servers")], .array([self.relay(own, "198.51.100.7:1")])) },
                   path + "[0].pk", "is this visor's own public key")
        assertOnly(problems {
            $0.set([.key("transport"), .key("dmsg_servers")],
                   .array([self.relay(self.peerA, "198.51.100.7:1"), self.relay(self.peerA, "198.51.100.8:1")]))
        }, path + "[1].pk", "relay server listed twice")
        assertOnly(problems {
            $0.set([.key("transport"), .key("dmsg_servers")], .array([.object([.init(name: "pk", value: .string(self.peerA))])]))
        }, path + "[0].addr", "missing (required)")
        assertOnly(problems {
            $0.set([.key("transport"), .key("dmsg_servers")],
                   .array((0...16).map { i in self.relay(TestKeys.pair(UInt8(10 + i)).publicKey.hex, "198.51.100.7:1") }))
        }, path, "17 relay servers (at most 16)")
    }

    func testDiscoveryURL() throws {
        assertOnly(problems { $0.set([.key("transport"), .key("discovery")], .string("ftp://example.org")) },
                   "transport.discovery", "is not an http:// or https:// URL")
        assertOnly(problems { $0.set([.key("transport"), .key("discovery")], .string("https://u@example.org/")) },
                   "transport.discovery", "user information is not allowed")
        var doc = baseDocument()
        doc.set([.key("transport"), .key("discovery")], .string("https://sd.example.org:8443/api"))
        let c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.discovery, "https://sd.example.org:8443/api")
        XCTAssertEqual(c.warnings().map(\.path), ["transport.discovery"])
        // http:// is what the visor registers with: no warning.
        doc.set([.key("transport"), .key("discovery")], .string("http://198.51.100.1:9090"))
        XCTAssertEqual(try VisorConfig.parse(doc.prettyPrinted()).warnings(), [])
    }

    func testCountry() throws {
        for bad in ["de", "DEU", "D", "1A"] {
            assertOnly(problems { $0.set([.key("transport"), .key("country")], .string(bad)) },
                       "transport.country", "is not an ISO 3166-1 alpha-2 code")
        }
        assertOnly(problems { $0.set([.key("transport"), .key("country")], .number("49")) }, "transport.country", "expected a string")
        var doc = baseDocument()
        doc.set([.key("transport"), .key("country")], .string("DE"))
        let c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.country, "DE")
        XCTAssertEqual(c.warnings().map(\.path), ["transport.country"])   // no discovery to register with
        // Written back only when set; the text round-trips.
        XCTAssertTrue(c.jsonText().contains("\"country\": \"DE\""))
        XCTAssertEqual(try VisorConfig.parse(c.jsonText()), c)
        XCTAssertFalse(try VisorConfig.parse(baseDocument().prettyPrinted()).jsonText().contains("country"))
    }

    func testPublicAddr() throws {
        for bad in ["203.0.113.5", "203.0.113.5:0", "203.0.113.5:70000", "2001:db8::1:7777", ""] {
            assertOnly(problems { $0.set([.key("transport"), .key("public_addr")], .string(bad)) },
                       "transport.public_addr", "is not HOST:PORT")
        }
        assertOnly(problems { $0.set([.key("transport"), .key("public_addr")], .number("7777")) },
                   "transport.public_addr", "expected a string")
        var doc = baseDocument()
        doc.set([.key("transport"), .key("public_addr")], .string("[2001:db8::5]:7777"))
        var c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.transport.publicAddr, HostPort(host: "2001:db8::5", port: 7777))
        XCTAssertEqual(c.warnings().map(\.path), ["transport.public_addr"])   // no discovery to advertise it to
        XCTAssertTrue(c.jsonText().contains("\"public_addr\": \"[2001:db8::5]:7777\""))
        XCTAssertEqual(try VisorConfig.parse(c.jsonText()), c)
        doc.set([.key("transport"), .key("discovery")], .string("http://198.51.100.1:9090"))
        doc.set([.key("transport"), .key("stcpr_port")], .number("0"))
        c = try VisorConfig.parse(doc.prettyPrinted())
        XCTAssertEqual(c.warnings().map(\.message), ["set, but the stcpr listener is disabled (stcpr_port is 0)"])
        XCTAssertFalse(try VisorConfig.parse(baseDocument().prettyPrinted()).jsonText().contains("public_addr"))
    }

    func testNoListenersAndNoPeersIsAWarningNotAnError() throws {
        var doc = baseDocument()
        doc.set([.key("transport"), .key("stcpr_port")], .number("0"))
        doc.set([.key("transport"), .key("sudph_port")], .number("0"))
        XCTAssertEqual(try VisorConfig.parse(doc.prettyPrinted()).warnings(), [])  // it still has a peer
        doc.set([.key("transport"), .key("peers")], .object([]))
        let warnings = try VisorConfig.parse(doc.prettyPrinted()).warnings()
        XCTAssertEqual(warnings.map(\.path), ["transport"])
        XCTAssertTrue(warnings.first?.message.contains("both listeners are disabled") ?? false)
    }

    // MARK: launcher

    func testAppPortRangeAndUniqueness() {
        let found = problems {
            $0.set([.key("launcher"), .key("apps"), .index(2), .key("port")], .number("99999"))
            $0.set([.key("launcher"), .key("apps"), .index(3), .key("port")], .number("44"))
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "launcher.apps[2].port", message: "99999 is not in 1...65535"),
            FieldProblem(path: "launcher.apps[3].port", message: #"port 44 already used by "vpn-server""#),
        ])
        assertOnly(problems { $0.set([.key("launcher"), .key("apps"), .index(0), .key("port")], .number("0")) },
                   "launcher.apps[0].port", "0 is not in 1...65535")
    }

    func testAppNames() {
        let found = problems {
            $0.set([.key("launcher"), .key("apps"), .index(1), .key("name")], .string("skysocks"))
            $0.set([.key("launcher"), .key("apps"), .index(3), .key("name")], .string("bittorrent"))
        }
        XCTAssertEqual(found.map(\.path), ["launcher.apps[2].name", "launcher.apps[3].name"])
        XCTAssertEqual(found[0].message, #"duplicate app "skysocks" (also launcher.apps[1])"#)
        XCTAssertTrue(found[1].message.hasPrefix(#"unknown app "bittorrent" (known: vpn-server, vpn-client"#))
    }

    // MARK: Paths and log level

    func testPathsAndLogLevel() {
        let found = problems {
            $0.set([.key("cli_addr")], .string("run/cli.sock"))
            $0.set([.key("log_level")], .string("loud"))
            $0.set([.key("state_dir")], .string("var/lib"))
        }
        XCTAssertEqual(found, [
            FieldProblem(path: "cli_addr", message: #"must be an absolute path, got "run/cli.sock""#),
            FieldProblem(path: "log_level", message: #""loud" is not one of trace, debug, info, notice, warning, error, critical"#),
            FieldProblem(path: "state_dir", message: #"must be an absolute path, got "var/lib""#),
        ])
    }

    func testSocketPathLengthLimit() {
        let long = "/" + String(repeating: "s", count: Limits.maxUnixSocketPathBytes)
        assertOnly(problems { $0.set([.key("cli_addr")], .string(long)) }, "cli_addr", "unix socket path")
    }

    // MARK: Collection of problems

    func testAllProblemsAreReportedTogether() {
        let found = problems {
            $0.set([.key("pk")], .string("nope"))
            $0.set([.key("bogus")], .bool(true))
            $0.set([.key("transport"), .key("sudph_port")], .number("70000"))
            $0.set([.key("transport"), .key("peers"), .key(self.peerA), .key("stcpr")], .string("[::1"))
            $0.set([.key("launcher"), .key("apps"), .index(0), .key("name")], .string("x"))
            $0.set([.key("log_level")], .string("LOUD"))
        }
        XCTAssertEqual(Set(found.map(\.path)), [
            "bogus", "pk", "transport.sudph_port", "transport.peers[\"\(peerA)\"].stcpr",
            "launcher.apps[0].name", "log_level",
        ])
        XCTAssertEqual(found.count, 6)
    }

    func testSyntaxErrorsCarryLineAndColumn() {
        let text = "{\n  \"version\": \"1\",\n  \"pk\": nope\n}\n"
        XCTAssertThrowsError(try VisorConfig.parse(text)) { error in
            XCTAssertEqual(error as? ConfigError, .syntax(line: 3, column: 9, message: "unexpected character 'n', expected a value"))
            XCTAssertEqual((error as? ConfigError)?.report(file: "x.json"),
                           "x.json: not valid JSON: line 3, column 9: unexpected character 'n', expected a value")
        }
    }

    func testReportListsEveryProblemOnItsOwnLine() {
        let error = ConfigError.invalid([
            FieldProblem(path: "pk", message: "not a 64-hex public key"),
            FieldProblem(path: "log_level", message: "\"loud\" is not one of trace"),
        ])
        XCTAssertEqual(error.description, "pk: not a 64-hex public key\nlog_level: \"loud\" is not one of trace")
        XCTAssertEqual(error.report(file: "c.json"),
                       "c.json: 2 problems:\n  pk: not a 64-hex public key\n  log_level: \"loud\" is not one of trace")
    }
}
