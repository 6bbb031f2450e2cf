import NIOCore
import SkywireConfig
import SkywireCrypto
import XCTest
@testable import SkywireSocks

/// The SkyNet stream opening, byte by byte (docs/skynet.md, "Wire").
final class SkynetWireTests: XCTestCase {
    private func bytes(_ b: ByteBuffer) -> [UInt8] { Array(b.readableBytesView) }

    func testRequestEncodesVersionThenBigEndianPort() {
        XCTAssertEqual(bytes(SkynetRequest(port: 8080).encoded), [0x01, 0x1F, 0x90])
        XCTAssertEqual(bytes(SkynetRequest(port: 1).encoded), [0x01, 0x00, 0x01])
        XCTAssertEqual(bytes(SkynetRequest(port: 65535).encoded), [0x01, 0xFF, 0xFF])
    }

    func testRequestParsesInAnySplitAndLeavesTheRest() {
        let input: [UInt8] = [0x01, 0x1F, 0x90, 0xAA]
        for cut in 0..<3 {
            XCTAssertEqual(SkynetRequest.parse(ByteBuffer(bytes: input.prefix(cut))), .incomplete, "cut \(cut)")
        }
        XCTAssertEqual(SkynetRequest.parse(ByteBuffer(bytes: input)), .complete(SkynetRequest(port: 8080), length: 3))
    }

    func testRequestRefusesOtherVersionsAndPortZero() {
        guard case .invalid = SkynetRequest.parse(ByteBuffer(bytes: [0x02, 0x1F, 0x90])) else { return XCTFail("version 2 accepted") }
        guard case .invalid = SkynetRequest.parse(ByteBuffer(bytes: [0x00])) else { return XCTFail("version 0 accepted") }
        guard case .invalid = SkynetRequest.parse(ByteBuffer(bytes: [0x01, 0x00, 0x00])) else { return XCTFail("port 0 accepted") }
    }

    func testReplyEncodesEveryStatus() {
        for status in SkynetStatus.allCases {
            XCTAssertEqual(bytes(SkynetReply(status: status).encoded), [0x01, status.rawValue])
            XCTAssertEqual(SkynetReply.parse(SkynetReply(status: status).encoded), .complete(SkynetReply(status: status), length: 2))
        }
        XCTAssertEqual(SkynetStatus.allCases.map(\.rawValue), [0, 1, 2, 3, 4, 5, 6])
    }

    func testReplyParsing() {
        XCTAssertEqual(SkynetReply.parse(ByteBuffer()), .incomplete)
        XCTAssertEqual(SkynetReply.parse(ByteBuffer(bytes: [0x01])), .incomplete)
        guard case .invalid = SkynetReply.parse(ByteBuffer(bytes: [0x01, 0x07])) else { return XCTFail("status 7 accepted") }
        guard case .invalid = SkynetReply.parse(ByteBuffer(bytes: [0x05, 0x00])) else { return XCTFail("a SOCKS reply accepted") }
        var withData = ByteBuffer(bytes: [0x01, 0x00, 0x48, 0x49])
        XCTAssertEqual(SkynetReply.parse(withData), .complete(SkynetReply(status: .ok), length: 2))
        withData.moveReaderIndex(forwardBy: 2)
        XCTAssertEqual(Array(withData.readableBytesView), [0x48, 0x49])
    }
}

/// The `skynet` app's arguments (docs/skynet.md, "Config").
final class SkynetOptionsTests: XCTestCase {
    let pk = KeyPair.generate().publicKey.hex

    func testGroupsParseAndRoundTrip() throws {
        let args = ["srv", "--port", "8080", "--wl", pk, "srv", "--port", "22", "--name", "ssh", "--target", "192.0.2.7:22", "--wl", "any",
                    "client", "--pk", pk, "--remote", "80", "--local", "9000", "resolver", "--upstream", "127.0.0.1:1080"]
        let options = try SkynetOptions.parse(args)
        XCTAssertEqual(options.servers.map(\.name), ["srv-8080", "ssh"])
        XCTAssertEqual(options.servers[0].target, HostPort(host: "127.0.0.1", port: 8080))
        XCTAssertEqual(options.servers[1].target, HostPort(host: "192.0.2.7", port: 22))
        XCTAssertEqual(options.servers[1].whitelist, .anyone)
        XCTAssertEqual(options.clients.first?.bindHost, "127.0.0.1")
        XCTAssertEqual(options.clients.first?.name, "fwd-9000")
        XCTAssertEqual(options.resolver?.listen, HostPort(host: "127.0.0.1", port: 4446))
        XCTAssertEqual(options.resolver?.upstream, HostPort(host: "127.0.0.1", port: 1080))
        XCTAssertEqual(try SkynetOptions.parse(options.arguments), options)
        XCTAssertEqual(options.whitelist, .anyone, "one open forward opens the app")
    }

    func testClosedByDefault() throws {
        let options = try SkynetOptions.parse(["srv", "--port", "8080"])
        XCTAssertEqual(options.servers.first?.whitelist, .nobody)
        XCTAssertEqual(options.whitelist?.admitsNobody, true)
        XCTAssertNil(try SkynetOptions.parse([]).whitelist, "nothing exposed: no whitelist to report")
        XCTAssertNil(try SkynetOptions.parse(["client", "--pk", pk, "--remote", "80", "--local", "9000"]).whitelist)
    }

    func testRefusals() {
        let bad: [[String]] = [
            ["--port", "8080"],                                   // no verb
            ["srv"],                                              // no port
            ["srv", "--port", "0"],
            ["srv", "--port", "8080", "--wl", "nokey"],
            ["srv", "--port", "8080", "--wl", "any,\(pk)"],
            ["srv", "--port", "8080", "srv", "--port", "8080"],   // same port twice
            ["srv", "--port", "1", "--name", "a", "srv", "--port", "2", "--name", "a"],
            ["srv", "--port", "8080", "--name", "a b"],
            ["srv", "--port", "8080", "--target", "nohost"],
            ["client", "--pk", pk, "--remote", "80"],             // no --local
            ["client", "--pk", pk, "--remote", "80", "--local", "9000", "--bind", "example.org"],
            ["resolver", "resolver"],
            ["resolver", "--addr", "localhost"],
            ["srv", "--port", "8080", "--bogus", "1"],
        ]
        for args in bad {
            XCTAssertThrowsError(try SkynetOptions.parse(args), "\(args)")
        }
    }

    func testResolverDestinations() {
        typealias D = SkynetResolverSession.Destination
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("\(pk).skynet")), D.visor(pk))
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("\(pk.uppercased()).SKYNET.")), D.visor(pk))
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("skywire.skynet")), D.this)
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("abc.skynet")), D.refused(.hostUnreachable))
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("x.\(pk).skynet")), D.refused(.hostUnreachable))
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("\(pk).dmsg")), D.refused(.hostUnreachable))
        XCTAssertEqual(SkynetResolverSession.destination(of: .domain("example.org")), D.upstream(.hostUnreachable))
        XCTAssertEqual(SkynetResolverSession.destination(of: .ipv4(0xC000_0201)), D.upstream(.addressTypeNotSupported))
    }
}
