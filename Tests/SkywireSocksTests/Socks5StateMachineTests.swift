import NIOCore
import SkywireConfig
import SkywireCrypto
import XCTest
@testable import SkywireSocks

final class Socks5StateMachineTests: XCTestCase {
    private func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    /// Feeds `input` one byte at a time; returns everything sent and the final outcome.
    private func feedBytewise(_ handshake: inout Socks5ServerHandshake, _ input: [UInt8])
        -> (output: [UInt8], outcome: Socks5ServerHandshake.Outcome) {
        var output: [UInt8] = []
        var outcome = Socks5ServerHandshake.Outcome.needMoreData
        for byte in input {
            let step = handshake.receive(buffer([byte]))
            output += step.output.readableBytesView
            outcome = step.outcome
            if case .needMoreData = outcome { continue }
            break
        }
        return (output, outcome)
    }

    private let connectIPv4: [UInt8] = [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]

    func testNoAuthConnectIPv4ByteByByte() {
        var hs = Socks5ServerHandshake(authentication: .none)
        let (out, outcome) = feedBytewise(&hs, [5, 2, 2, 0] + connectIPv4)
        XCTAssertEqual(out, [5, 0])
        guard case .request(let request, let pipelined) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(request, Socks5Request(command: .connect, address: .ipv4(0x7F00_0001), port: 8080))
        XCTAssertEqual(pipelined.readableBytes, 0)
        XCTAssertTrue(hs.isFinished)
    }

    func testEverySplitGivesTheSameResult() {
        let input: [UInt8] = [5, 1, 0] + [5, 1, 0, 3, 9] + Array("localhost".utf8) + [0, 80] + [0xAA, 0xBB]
        for split in 1..<input.count {
            var hs = Socks5ServerHandshake(authentication: .none)
            var out: [UInt8] = []
            let first = hs.receive(buffer(Array(input[..<split])))
            out += first.output.readableBytesView
            var outcome = first.outcome
            if case .needMoreData = outcome {
                let second = hs.receive(buffer(Array(input[split...])))
                out += second.output.readableBytesView
                outcome = second.outcome
            }
            XCTAssertEqual(out, [5, 0], "split \(split)")
            guard case .request(let request, let pipelined) = outcome else { return XCTFail("split \(split): \(outcome)") }
            XCTAssertEqual(request.address, .domain("localhost"))
            XCTAssertEqual(request.port, 80)
            // Bytes after the request are kept for the upstream, except when the split fell inside them.
            let expected: [UInt8] = split >= input.count - 2 ? Array(input[(input.count - 2)..<split]) : [0xAA, 0xBB]
            XCTAssertEqual(Array(pipelined.readableBytesView), expected, "split \(split)")
        }
    }

    func testIPv6Request() {
        var hs = Socks5ServerHandshake(authentication: .none)
        let addr: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        let (out, outcome) = feedBytewise(&hs, [5, 1, 0, 5, 1, 0, 4] + addr + [1, 0])
        XCTAssertEqual(out, [5, 0])
        guard case .request(let request, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(request.address, .ipv6(0, 1))
        XCTAssertEqual(request.port, 256)
        XCTAssertEqual(request.address.description, "[0:0:0:0:0:0:0:1]")
    }

    func testUsernamePasswordSuccessAndFailure() {
        let creds = Socks5Credentials(username: "alice", password: "s3cret")
        var hs = Socks5ServerHandshake(authentication: .usernamePassword(creds))
        let auth: [UInt8] = [1, 5] + Array("alice".utf8) + [6] + Array("s3cret".utf8)
        let (out, outcome) = feedBytewise(&hs, [5, 2, 0, 2] + auth + connectIPv4)
        XCTAssertEqual(out, [5, 2, 1, 0])
        guard case .request = outcome else { return XCTFail("\(outcome)") }

        var bad = Socks5ServerHandshake(authentication: .usernamePassword(creds))
        let wrong: [UInt8] = [1, 5] + Array("alice".utf8) + [6] + Array("s3creT".utf8)
        let (badOut, badOutcome) = feedBytewise(&bad, [5, 1, 2] + wrong + connectIPv4)
        XCTAssertEqual(badOut, [5, 2, 1, 1])
        guard case .failed = badOutcome else { return XCTFail("\(badOutcome)") }
    }

    func testNoAcceptableMethod() {
        var hs = Socks5ServerHandshake(authentication: .usernamePassword(Socks5Credentials(username: "u", password: "p")))
        let (out, outcome) = feedBytewise(&hs, [5, 1, 0])
        XCTAssertEqual(out, [5, 0xFF])
        guard case .failed = outcome else { return XCTFail("\(outcome)") }

        var hs2 = Socks5ServerHandshake(authentication: .none)
        XCTAssertEqual(Array(hs2.receive(buffer([5, 1, 2])).output.readableBytesView), [5, 0xFF])
    }

    func testMalformedGreetings() {
        for input: [UInt8] in [[4, 1, 0, 0x1F, 0x90], [5, 0]] {
            var hs = Socks5ServerHandshake(authentication: .none)
            let (out, outcome) = feedBytewise(&hs, input)
            XCTAssertEqual(out, [5, 0xFF], "\(input)")
            guard case .failed = outcome else { return XCTFail("\(input): \(outcome)") }
        }
    }

    func testMalformedAuthentication() {
        let creds = Socks5Credentials(username: "u", password: "p")
        for auth: [UInt8] in [[2, 1, 0x75, 1, 0x70], [1, 0], [1, 1, 0x75, 0]] {
            var hs = Socks5ServerHandshake(authentication: .usernamePassword(creds))
            let (out, outcome) = feedBytewise(&hs, [5, 1, 2] + auth)
            XCTAssertEqual(out, [5, 2, 1, 1], "\(auth)")
            guard case .failed = outcome else { return XCTFail("\(auth): \(outcome)") }
        }
    }

    /// Request errors and the REP code each must produce (RFC 1928 §6).
    func testRequestErrorsMapToReplyCodes() {
        let cases: [([UInt8], Socks5ReplyCode)] = [
            ([5, 2, 0, 1, 127, 0, 0, 1, 0, 80], .commandNotSupported),  // BIND
            ([5, 9, 0, 1, 127, 0, 0, 1, 0, 80], .commandNotSupported),  // unknown CMD
            ([5, 1, 0, 7, 127, 0, 0, 1, 0, 80], .addressTypeNotSupported),  // bad ATYP
            ([4, 1, 0, 1, 127, 0, 0, 1, 0, 80], .generalFailure),  // bad VER
            ([5, 1, 1, 1, 127, 0, 0, 1, 0, 80], .generalFailure),  // RSV ≠ 0
            ([5, 1, 0, 3, 0, 0, 80], .generalFailure),  // empty domain
            ([5, 1, 0, 3, 3, 0x61, 0x00, 0x62, 0, 80], .generalFailure),  // NUL in domain
        ]
        for (request, code) in cases {
            var hs = Socks5ServerHandshake(authentication: .none)
            let (out, outcome) = feedBytewise(&hs, [5, 1, 0] + request)
            XCTAssertEqual(out, [5, 0, 5, code.rawValue, 0, 1, 0, 0, 0, 0, 0, 0], "\(request)")
            guard case .failed = outcome else { return XCTFail("\(request): \(outcome)") }
            // Input after failure is ignored.
            XCTAssertEqual(hs.receive(buffer([1, 2, 3])).output.readableBytes, 0)
        }
    }

    func testReplyBuilderEveryCode() {
        for code in Socks5ReplyCode.allCases {
            let ipv4 = Socks5Reply.encode(code: code, boundAddress: .ipv4(0x0A00_0001), boundPort: 1080)
            XCTAssertEqual(Array(ipv4.readableBytesView), [5, code.rawValue, 0, 1, 10, 0, 0, 1, 0x04, 0x38])
            let ipv6 = Socks5Reply.encode(code: code, boundAddress: .ipv6(0x2001_0DB8_0000_0000, 1), boundPort: 1)
            XCTAssertEqual(Array(ipv6.readableBytesView),
                           [5, code.rawValue, 0, 4, 0x20, 1, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
            let domain = Socks5Reply.encode(code: code, boundAddress: .domain("ab"), boundPort: 2)
            XCTAssertEqual(Array(domain.readableBytesView), [5, code.rawValue, 0, 3, 2, 0x61, 0x62, 0, 2])
            guard case .complete(let parsed, let length) = Socks5Parser.parseReply(domain) else {
                return XCTFail("reply does not parse back")
            }
            XCTAssertEqual(parsed, Socks5Reply(code: code.rawValue, boundAddress: .domain("ab"), boundPort: 2))
            XCTAssertEqual(length, 9)
        }
    }

    func testUDPHeaderParseAndBuild() {
        let header = Socks5UDPHeader(address: .ipv4(0x7F00_0001), port: 53)
        var buf = ByteBuffer()
        header.write(to: &buf)
        buf.writeBytes([0xDE, 0xAD])
        XCTAssertEqual(Array(buf.readableBytesView), [0, 0, 0, 1, 127, 0, 0, 1, 0, 53, 0xDE, 0xAD])
        guard case .success(let (parsed, length)) = Socks5UDPHeader.parse(buf) else { return XCTFail() }
        XCTAssertEqual(parsed, header)
        XCTAssertEqual(length, 10)
        XCTAssertEqual(header.encodedLength, 10)

        let domain = buffer([0, 0, 0, 3, 1, 0x78, 0, 7, 1])
        guard case .success(let (d, dl)) = Socks5UDPHeader.parse(domain) else { return XCTFail() }
        XCTAssertEqual(d.address, .domain("x"))
        XCTAssertEqual(d.port, 7)
        XCTAssertEqual(dl, 8)

        XCTAssertEqual(try? Socks5UDPHeader.parse(buffer([0, 0, 1, 1, 127, 0, 0, 1, 0, 53])).get().0, nil)
        guard case .failure(.fragmented) = Socks5UDPHeader.parse(buffer([0, 0, 1, 1, 127, 0, 0, 1, 0, 53])) else {
            return XCTFail("FRAG ≠ 0 must be rejected")
        }
        guard case .failure(.reservedNotZero) = Socks5UDPHeader.parse(buffer([0, 1, 0, 1, 127, 0, 0, 1, 0, 53])) else {
            return XCTFail()
        }
        guard case .failure(.truncated) = Socks5UDPHeader.parse(buffer([0, 0, 0, 1, 127, 0])) else { return XCTFail() }
        guard case .failure(.badAddress) = Socks5UDPHeader.parse(buffer([0, 0, 0, 9, 127, 0, 0, 1, 0, 53])) else {
            return XCTFail()
        }
    }

    func testUDPFrameDecoderAcrossSplits() {
        let frames: [[UInt8]] = [[1, 2, 3], [], [4], Array(repeating: 9, count: 300)]
        var wire: [UInt8] = []
        for f in frames { wire += [UInt8(f.count >> 8), UInt8(f.count & 0xFF)] + f }
        for chunk in [1, 2, 5, 1000] {
            var decoder = SkysocksUDPFrameDecoder()
            var got: [[UInt8]] = []
            var i = 0
            while i < wire.count {
                decoder.append(buffer(Array(wire[i..<min(i + chunk, wire.count)])))
                i += chunk
                while let d = decoder.next() { got.append(Array(d.readableBytesView)) }
            }
            XCTAssertEqual(got, frames.filter { !$0.isEmpty }, "chunk \(chunk)")
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
    }

    // MARK: Snooper

    private func bytes(_ b: ByteBuffer) -> [UInt8] { Array(b.readableBytesView) }

    func testSnooperConnectBecomesPassthrough() {
        var s = Socks5DialogueSnooper()
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 1]))), [])
        XCTAssertEqual(bytes(s.clientBytes(buffer([0]))), [5, 1, 0])
        // Pipelined request is held until the method is known.
        XCTAssertEqual(bytes(s.clientBytes(buffer(connectIPv4 + [0x47]))), [])
        guard case .forward(let c1, let s1) = s.serverBytes(buffer([5, 0])) else { return XCTFail() }
        XCTAssertEqual(bytes(c1), [5, 0])
        XCTAssertEqual(bytes(s1), connectIPv4 + [0x47])
        XCTAssertFalse(s.isPassthrough)
        guard case .forward(let c2, _) = s.serverBytes(buffer([5, 0, 0, 1, 1, 2, 3, 4, 0, 9, 0x48])) else { return XCTFail() }
        XCTAssertEqual(bytes(c2), [5, 0, 0, 1, 1, 2, 3, 4, 0, 9, 0x48])
        XCTAssertTrue(s.isPassthrough)
        XCTAssertEqual(bytes(s.clientBytes(buffer([1, 2]))), [1, 2])
    }

    func testSnooperUDPAssociateWithAuthByteByByte() {
        var s = Socks5DialogueSnooper()
        let auth: [UInt8] = [1, 1, 0x75, 1, 0x70]
        let request: [UInt8] = [5, 3, 0, 1, 0, 0, 0, 0, 0, 0]
        var toServer: [UInt8] = []
        for b in [5, 1, 2] as [UInt8] { toServer += bytes(s.clientBytes(buffer([b]))) }
        XCTAssertEqual(toServer, [5, 1, 2])
        for b in auth + request + [0x99] { toServer += bytes(s.clientBytes(buffer([b]))) }
        XCTAssertEqual(toServer, [5, 1, 2])  // held until the method selection
        var toClient: [UInt8] = []
        var event: Socks5DialogueSnooper.ServerOutput?
        for b in [5, 2, 1, 0, 5, 0, 0, 1, 9, 9, 9, 9, 0, 7, 0, 3] as [UInt8] {
            switch s.serverBytes(buffer([b])) {
            case .forward(let c, let sv):
                toClient += bytes(c)
                toServer += bytes(sv)
            case let e:
                event = e
            }
            if event != nil { break }
        }
        XCTAssertEqual(toServer, [5, 1, 2] + auth + request)  // 0x99 after a UDP ASSOCIATE is dropped
        XCTAssertEqual(toClient, [5, 2, 1, 0])
        guard case .udpAssociated(let before, let reply, let req, let frames) = event else { return XCTFail("\(String(describing: event))") }
        XCTAssertEqual(before.readableBytes, 0)
        XCTAssertEqual(reply, Socks5Reply(code: 0, boundAddress: .ipv4(0x0909_0909), boundPort: 7))
        XCTAssertEqual(req.command, .udpAssociate)
        XCTAssertEqual(frames.readableBytes, 0)
        XCTAssertEqual(bytes(s.clientBytes(buffer([1, 2, 3]))), [])
    }

    func testSnooperAnswersNoAuthGreetingLocallyAndSwallowsServerMethod() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 1]))), [])
        XCTAssertNil(s.takeLocalReply())
        // Greeting complete: answered here and held, so that it leaves together with the request.
        XCTAssertEqual(bytes(s.clientBytes(buffer([0]))), [])
        XCTAssertEqual(s.takeLocalReply().map(bytes), [5, 0])
        XCTAssertNil(s.takeLocalReply(), "only once")
        XCTAssertTrue(s.methodAnsweredLocally)
        XCTAssertEqual(bytes(s.clientBytes(buffer(Array(connectIPv4.prefix(4))))), [], "request incomplete")
        XCTAssertEqual(bytes(s.clientBytes(buffer(Array(connectIPv4.dropFirst(4))))), [5, 1, 0] + connectIPv4)
        // The server's own METHOD selection is not passed on; its reply is.
        guard case .forward(let c1, let s1) = s.serverBytes(buffer([5, 0, 5, 0, 0, 1])) else { return XCTFail() }
        XCTAssertEqual(bytes(c1), [])
        XCTAssertEqual(bytes(s1), [])
        guard case .forward(let c2, _) = s.serverBytes(buffer([1, 2, 3, 4, 0, 9, 0x48])) else { return XCTFail() }
        XCTAssertEqual(bytes(c2), [5, 0, 0, 1, 1, 2, 3, 4, 0, 9, 0x48])
        XCTAssertTrue(s.isPassthrough)
    }

    func testSnooperLocalAnswerTurnsServerRefusalIntoNotAllowedReply() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 1, 0] + connectIPv4))), [5, 1, 0] + connectIPv4)
        XCTAssertEqual(s.takeLocalReply().map(bytes), [5, 0])
        // The server wants authentication (0xFF: none of the offered methods).
        guard case .forward(let c, _) = s.serverBytes(buffer([5, 0xFF])) else { return XCTFail() }
        XCTAssertEqual(bytes(c), [5, Socks5ReplyCode.connectionNotAllowed.rawValue, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(s.isPassthrough)
        XCTAssertTrue(s.hasForwardedServerBytes)
    }

    func testSnooperReleasesAHeldGreetingBeforeGarbage() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 1, 0]))), [])
        // Not a SOCKS5 request: everything goes to the server, greeting first, which answers it.
        XCTAssertEqual(bytes(s.clientBytes(buffer([9, 9, 9, 9]))), [5, 1, 0, 9, 9, 9, 9])
    }

    /// fuzz-socks-snooper reproducer (FuzzTesting/corpus/fuzz-socks-snooper/regression-held-greeting):
    /// a locally answered greeting is held for the request; when the server's bytes make the dialogue
    /// passthrough first, the held greeting must leave at once, not wait for more client bytes.
    func testSnooperReleasesAHeldGreetingWhenTheServerEndsTheDialogue() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 2, 0, 1]))), [])
        XCTAssertEqual(s.takeLocalReply().map(bytes), [5, 0])
        // Not a METHOD selection (version 0): both directions become plain pipes.
        guard case .forward(_, let toServer) = s.serverBytes(buffer([0, 0, 0, 0, 0, 0, 0, 0, 0])) else { return XCTFail() }
        XCTAssertTrue(s.isPassthrough)
        XCTAssertEqual(bytes(toServer), [5, 2, 0, 1], "the held greeting goes to the server with the passthrough")
    }

    func testSnooperAnswersLocallyWhenNoAuthIsOfferedBesideGSSAPI() {
        // curl built with GSSAPI offers 00 and 01; the server never picks 01, so 00 is answered here.
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 2, 0, 1] + connectIPv4))), [5, 2, 0, 1] + connectIPv4)
        XCTAssertEqual(s.takeLocalReply().map(bytes), [5, 0])
        XCTAssertTrue(s.methodAnsweredLocally)
        guard case .forward(let c, let sv) = s.serverBytes(buffer([5, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 9])) else {
            return XCTFail()
        }
        XCTAssertEqual(bytes(c), [5, 0, 0, 1, 1, 2, 3, 4, 0, 9], "the server's METHOD selection is swallowed")
        XCTAssertEqual(bytes(sv), [])
        XCTAssertTrue(s.isPassthrough)
    }

    func testSnooperLeavesGreetingsWithoutNoAuthToTheServer() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 1, 1]))), [5, 1, 1])
        XCTAssertNil(s.takeLocalReply())
        XCTAssertFalse(s.methodAnsweredLocally)
        guard case .forward(let c, _) = s.serverBytes(buffer([5, 0xFF])) else { return XCTFail() }
        XCTAssertEqual(bytes(c), [5, 0xFF])
    }

    func testSnooperDoesNotAnswerGreetingsOfferingAuthentication() {
        var s = Socks5DialogueSnooper(answerNoAuthLocally: true)
        XCTAssertEqual(bytes(s.clientBytes(buffer([5, 2, 0, 2] + connectIPv4))), [5, 2, 0, 2])
        XCTAssertNil(s.takeLocalReply())
        XCTAssertFalse(s.methodAnsweredLocally)
        guard case .forward(let c, let sv) = s.serverBytes(buffer([5, 0])) else { return XCTFail() }
        XCTAssertEqual(bytes(c), [5, 0])
        XCTAssertEqual(bytes(sv), connectIPv4)
    }

    func testSnooperPassesGarbageThrough() {
        var s = Socks5DialogueSnooper()
        XCTAssertEqual(bytes(s.clientBytes(buffer([4, 1, 0, 80]))), [4, 1, 0, 80])
        guard case .forward(let c, _) = s.serverBytes(buffer([5, 0xFF])) else { return XCTFail() }
        XCTAssertEqual(bytes(c), [5, 0xFF])
        XCTAssertTrue(s.isPassthrough)
    }

    func testSnooperFailedReplyForUDPIsPassedThrough() {
        var s = Socks5DialogueSnooper()
        _ = s.clientBytes(buffer([5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]))
        guard case .forward(let c, let sv) = s.serverBytes(buffer([5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0])) else {
            return XCTFail()
        }
        XCTAssertEqual(bytes(sv), [5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(bytes(c), [5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(s.hasForwardedServerBytes)
    }

    // MARK: Arguments

    func testServerArguments() throws {
        let key = KeyPair.generate().publicKey
        let pk = key.hex
        let options = try SkysocksServerOptions.parse(["--whitelist", "\(pk),\(pk.uppercased())", "--user=u", "--pass", "p",
                                                       "--handshake-timeout", "2.5", "--max-sessions", "7"])
        XCTAssertEqual(options.whitelist, .keys([key]))
        XCTAssertEqual(options.credentials, Socks5Credentials(username: "u", password: "p"))
        XCTAssertEqual(options.handshakeTimeout, .milliseconds(2500))
        XCTAssertEqual(options.maxSessions, 7)
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--user", "u"]))
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--whitelist", "abc"]))
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--whitelist", "\(pk),abc"]))
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--bogus", "1"]))
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--max-sessions"]))
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--max-sessions", "-3"]))
    }

    /// Closed by default (issue 16): no or an empty `--whitelist` admits nobody; `any` alone admits every key.
    func testServerWhitelistIsClosedByDefault() throws {
        let key = KeyPair.generate().publicKey
        XCTAssertEqual(SkysocksServerOptions().whitelist, .nobody)
        for args in [[], ["--whitelist", ""], ["-w", " , "], ["--max-sessions", "3"]] {
            XCTAssertEqual(try SkysocksServerOptions.parse(args).whitelist, .nobody, "\(args)")
        }
        XCTAssertEqual(try SkysocksServerOptions.parse(["-w", "any"]).whitelist, .anyone)
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--whitelist", "any", "--whitelist", key.hex])) { e in
            XCTAssertTrue("\(e)".contains("cannot be combined"), "\(e)")
        }
    }

    func testClientArguments() throws {
        let pk = String(repeating: "0f", count: 32)
        let defaults = try SkysocksClientOptions.parse(["-k", pk])
        XCTAssertEqual(defaults.serverKeyHex, pk)
        XCTAssertEqual(defaults.listenHost, "127.0.0.1")
        XCTAssertEqual(defaults.listenPort, 1080)
        XCTAssertEqual(defaults.serverPort, 3)
        let custom = try SkysocksClientOptions.parse(["--pk", pk, "--addr", "[::1]:9050", "--server-port", "30"])
        XCTAssertEqual(custom.listenHost, "::1")
        XCTAssertEqual(custom.listenPort, 9050)
        XCTAssertEqual(custom.serverPort, 30)
        XCTAssertThrowsError(try SkysocksClientOptions.parse([])) { error in
            XCTAssertTrue("\(error)".contains("-k"))
        }
        XCTAssertThrowsError(try SkysocksClientOptions.parse(["-k", pk, "--addr", "nothost:1"]))
        XCTAssertThrowsError(try SkysocksClientOptions.parse(["-k", pk, "--addr", "127.0.0.1:99999"]))
        XCTAssertThrowsError(try SkysocksClientOptions.parse(["-k", pk, "extra"]))
    }
}
