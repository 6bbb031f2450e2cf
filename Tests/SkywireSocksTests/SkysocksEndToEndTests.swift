import Foundation
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import XCTest
@testable import SkywireSocks
import SkywireTransport
import SkywireIO

/// Full path: TCP application → skysocks-client → LoopbackAppStream pair → skysocks → destination on 127.0.0.1.
/// Connections are raw sockets on the client app's `EpollEventLoop`, streams live there (or, for
/// `.otherLoop`, on another `EpollEventLoop`), so the exit's connections are raw sockets too.
final class SkysocksEndToEndTests: SkysocksHarnessTestCase {

    /// `--secure=false` and the harness client listed (SkysocksHarness.admittingClient): the destinations
    /// here are on 127.0.0.1, which `--secure` refuses (SkysocksSecureTests).
    private func makeHarness(_ options: SkysocksServerOptions = SkysocksHarness.admittingClient, clientKey: String? = nil,
                             window: Int = 256 * 1024, failOpen: Bool = false,
                             placement: StreamPlacement = .preferred) throws -> SkysocksHarness {
        harness = try SkysocksHarness(group: group, serverOptions: options, clientKey: clientKey, window: window,
                                      failOpen: failOpen, placement: placement)
        return harness
    }

    /// Greets with no-auth, sends `request`, returns the socket and the reply bytes (header + IPv4/IPv6 addr).
    private func dial(_ request: [UInt8]) throws -> (TestSocket, [UInt8]) {
        let s = try TestSocket.connect(to: harness.proxyAddress)
        s.send([5, 1, 0])
        XCTAssertEqual(s.receive(exactly: 2), [5, 0])
        s.send(request)
        var reply = s.receive(exactly: 4)
        guard reply.count == 4 else { return (s, reply) }
        reply += s.receive(exactly: reply[3] == 4 ? 18 : 6)
        return (s, reply)
    }

    func testConnectIPv4Echo() throws {
        let h = try makeHarness()
        let echo = try h.startTCPServer(.echo)
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(echo)!, echo.port!))
        XCTAssertEqual(Array(reply.prefix(4)), [5, 0, 0, 1])
        s.send(Array("hello through skysocks".utf8))
        XCTAssertEqual(String(decoding: s.receive(exactly: 22), as: UTF8.self), "hello through skysocks")
        XCTAssertGreaterThanOrEqual(h.server.status.bytesUp, 22)
        XCTAssertGreaterThanOrEqual(h.client.status.bytesDown, 22)
        // The client app asked for streams on its datapath loop.
        let streamLoop = h.serverStreams.withLockedValue { $0.first?.value.eventLoop }
        XCTAssertTrue(streamLoop === h.epoll)
    }

    /// A greeting and request sent in one go (what the client app does after answering the greeting
    /// itself) are answered in one go: METHOD selection and reply in a single stream write.
    func testPipelinedGreetingAndRequestAreAnsweredInOneWrite() throws {
        let h = try makeHarness()
        let echo = try h.startTCPServer(.echo)
        let loop = h.streamLoop
        final class Chunks: AppStreamDelegate {
            var chunks: [[UInt8]] = []
            func appStream(_ stream: AppStream, didReceive data: ByteBuffer) { chunks.append(Array(data.readableBytesView)) }
            func appStreamDidReceiveFinish(_ stream: AppStream) {}
            func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {}
            func appStreamWritabilityChanged(_ stream: AppStream) {}
        }
        let request = SocksBytes.connect(Socks5Address(echo)!, echo.port!)
        let chunks = try loop.submit { () -> LoopTransfer<Chunks> in
            let pair = LoopbackAppStream.makePair(on: loop, openerKeyHex: h.clientKey)
            let chunks = Chunks()
            pair.opener.setDelegate(chunks)
            h.server.accept(pair.acceptor)
            pair.opener.write(ByteBuffer(bytes: [5, 2, 0, 1] + request))
            return LoopTransfer(value: chunks)
        }.wait()
        var got: [[UInt8]] = []
        for _ in 0..<200 {
            got = try loop.submit { chunks.value.chunks }.wait()
            if !got.isEmpty { break }
            usleep(10_000)
        }
        XCTAssertEqual(got.count, 1, "\(got)")
        XCTAssertEqual(Array(got.first?.prefix(6) ?? []), [5, 0, 5, 0, 0, 1], "METHOD selection, then the reply")
        XCTAssertEqual(got.first?.count, 2 + 10)
    }

    func testConnectIPv6() throws {
        let h = try makeHarness()
        let echo: SocketAddress
        do {
            echo = try h.startTCPServer(.echo, host: "::1")
        } catch {
            throw XCTSkip("no IPv6 loopback: \(error)")
        }
        let (s, reply) = try dial(SocksBytes.connect(.ipv6(0, 1), echo.port!))
        XCTAssertEqual(Array(reply.prefix(4)), [5, 0, 0, 4])
        s.send([1, 2, 3])
        XCTAssertEqual(s.receive(exactly: 3), [1, 2, 3])
    }

    func testConnectByDomainResolvedAtExit() throws {
        let h = try makeHarness()
        let echo = try h.startTCPServer(.echo)
        let (s, reply) = try dial(SocksBytes.connect(.domain("localhost"), echo.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, 0])
        s.send([42])
        XCTAssertEqual(s.receive(exactly: 1), [42])
    }

    func testPipelinedDataAfterRequestIsDelivered() throws {
        let h = try makeHarness()
        let echo = try h.startTCPServer(.echo)
        let s = try TestSocket.connect(to: h.proxyAddress)
        s.send([5, 1, 0] + SocksBytes.connect(Socks5Address(echo)!, echo.port!) + Array("early".utf8))
        let reply = s.receive(exactly: 2 + 10)
        XCTAssertEqual(Array(reply.prefix(4)), [5, 0, 5, 0])
        XCTAssertEqual(s.receive(exactly: 5), Array("early".utf8))
    }

    func testCurlDownloadThroughProxy() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
            throw XCTSkip("curl is not installed")
        }
        let h = try makeHarness()
        var body = ByteBuffer()
        var state: UInt32 = 12345
        for _ in 0..<(4 << 20) {
            state = state &* 1_664_525 &+ 1_013_904_223
            body.writeInteger(UInt8(truncatingIfNeeded: state >> 24))
        }
        let http = try h.startTCPServer(.http(body))
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("skysocks-curl-\(getpid()).bin")
        defer { try? FileManager.default.removeItem(at: out) }
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sS", "--max-time", "30", "--socks5-hostname", "127.0.0.1:\(h.proxyAddress.port!)",
                          "-o", out.path, "http://localhost:\(http.port!)/file"]
        try curl.run()
        curl.waitUntilExit()
        XCTAssertEqual(curl.terminationStatus, 0)
        let downloaded = try Data(contentsOf: out)
        XCTAssertEqual(downloaded.count, body.readableBytes)
        XCTAssertTrue(downloaded.elementsEqual(body.readableBytesView), "downloaded bytes differ")
    }

    func testConnectionRefusedReplies05() throws {
        _ = try makeHarness()
        // A port that was just free: bind, note, close.
        let probe = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = probe.localAddress!.port!
        try probe.close().wait()
        let (s, reply) = try dial(SocksBytes.connect(.ipv4(0x7F00_0001), port))
        XCTAssertEqual(Array(reply.prefix(2)), [5, Socks5ReplyCode.connectionRefused.rawValue])
        XCTAssertTrue(s.waitForClose())
    }

    func testUnresolvableDomainReplies04() throws {
        _ = try makeHarness()
        let (s, reply) = try dial(SocksBytes.connect(.domain("no-such-host.invalid"), 80))
        XCTAssertEqual(Array(reply.prefix(2)), [5, Socks5ReplyCode.hostUnreachable.rawValue])
        XCTAssertTrue(s.waitForClose())
    }

    func testBindReplies07() throws {
        _ = try makeHarness()
        let (s, reply) = try dial(SocksBytes.connect(.ipv4(0x7F00_0001), 80, command: 2))
        XCTAssertEqual(reply, [5, 7, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(s.waitForClose())
    }

    func testBadAddressTypeReplies08() throws {
        _ = try makeHarness()
        let s = try TestSocket.connect(to: harness.proxyAddress)
        s.send([5, 1, 0])
        XCTAssertEqual(s.receive(exactly: 2), [5, 0])
        s.send([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])
        XCTAssertEqual(s.receive(exactly: 10), [5, 8, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertTrue(s.waitForClose())
    }

    func testMalformedGreetingGetsErrorAndClose() throws {
        _ = try makeHarness()
        let s = try TestSocket.connect(to: harness.proxyAddress)
        s.send([4, 1, 0, 80, 127, 0, 0, 1, 0])
        XCTAssertEqual(s.receive(exactly: 2), [5, 0xFF])
        XCTAssertTrue(s.waitForClose())
    }

    func testIdleHandshakeIsClosedAfterTimeout() throws {
        var options = SkysocksHarness.admittingClient
        options.handshakeTimeout = .milliseconds(300)
        let h = try makeHarness(options)
        let s = try TestSocket.connect(to: h.proxyAddress)
        s.send([5, 1])  // incomplete greeting, then silence
        let start = Date()
        XCTAssertTrue(s.waitForClose())
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.2)
        XCTAssertLessThan(elapsed, 5)
    }

    func testWhitelistRefusesOtherVisors() throws {
        var options = SkysocksServerOptions(secure: false)
        options.whitelist = .keys([KeyPair.generate().publicKey])
        let h = try makeHarness(options)
        let echo = try h.startTCPServer(.echo)
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(echo)!, echo.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, Socks5ReplyCode.connectionNotAllowed.rawValue])
        XCTAssertTrue(s.waitForClose())
        XCTAssertGreaterThanOrEqual(h.server.status.failedSessions, 1)
    }

    func testWhitelistAdmitsListedVisor() throws {
        let key = KeyPair.generate().publicKey
        try checkAdmitted(.keys([key]), clientKey: key.hex)
    }

    /// Closed by default (issue 16): a server given no whitelist refuses every visor with reply
    /// 0x02 (connection not allowed), before reading any SOCKS request.
    func testNoWhitelistRefusesEveryVisor() throws {
        let h = try makeHarness(SkysocksServerOptions(secure: false))
        let echo = try h.startTCPServer(.echo)
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(echo)!, echo.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, Socks5ReplyCode.connectionNotAllowed.rawValue])
        XCTAssertTrue(s.waitForClose())
        XCTAssertEqual(h.server.status.failedSessions, 1)
        XCTAssertEqual(h.server.status.bytesUp, 0)
    }

    /// `--whitelist any` admits a visor no list names.
    func testWhitelistAnyAdmitsEveryVisor() throws {
        try checkAdmitted(.anyone, clientKey: KeyPair.generate().publicKey.hex)
    }

    /// A server with `whitelist` proxies for the visor `clientKey` (an echo through it).
    private func checkAdmitted(_ whitelist: AppWhitelist, clientKey: String) throws {
        var options = SkysocksServerOptions(secure: false)
        options.whitelist = whitelist
        let h = try makeHarness(options, clientKey: clientKey)
        let echo = try h.startTCPServer(.echo)
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(echo)!, echo.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, 0])
        s.send([9])
        XCTAssertEqual(s.receive(exactly: 1), [9])
    }

    func testUsernamePassword() throws {
        var options = SkysocksHarness.admittingClient
        options.credentials = Socks5Credentials(username: "alice", password: "wonderland")
        let h = try makeHarness(options)
        let echo = try h.startTCPServer(.echo)
        let request = SocksBytes.connect(Socks5Address(echo)!, echo.port!)

        let good = try TestSocket.connect(to: h.proxyAddress)
        good.send([5, 1, 2])
        XCTAssertEqual(good.receive(exactly: 2), [5, 2])
        good.send([1, 5] + Array("alice".utf8) + [10] + Array("wonderland".utf8))
        XCTAssertEqual(good.receive(exactly: 2), [1, 0])
        good.send(request)
        XCTAssertEqual(Array(good.receive(exactly: 10).prefix(2)), [5, 0])
        good.send([7, 7])
        XCTAssertEqual(good.receive(exactly: 2), [7, 7])

        let bad = try TestSocket.connect(to: h.proxyAddress)
        bad.send([5, 1, 2])
        XCTAssertEqual(bad.receive(exactly: 2), [5, 2])
        bad.send([1, 5] + Array("alice".utf8) + [5] + Array("queen".utf8))
        XCTAssertEqual(bad.receive(exactly: 2), [1, 1])
        XCTAssertTrue(bad.waitForClose())

        // Offering only "no authentication": the client app answers the greeting itself (one round
        // trip less), so the server's refusal reaches the application as reply 0x02 to its request.
        let noAuth = try TestSocket.connect(to: h.proxyAddress)
        noAuth.send([5, 1, 0])
        XCTAssertEqual(noAuth.receive(exactly: 2), [5, 0])
        noAuth.send(request)
        XCTAssertEqual(Array(noAuth.receive(exactly: 10).prefix(2)), [5, Socks5ReplyCode.connectionNotAllowed.rawValue])
        XCTAssertTrue(noAuth.waitForClose())
    }

    func testUDPAssociateRelaysDatagrams() throws {
        let h = try makeHarness()
        let (control, udp, relay, datagram) = try associateAndEcho("ping over udp")
        // A fragmented datagram is dropped by the exit; the next one still comes back.
        udp.sendTo([0, 0, 1] + Array(datagram[3...]), relay)
        udp.sendTo(datagram, relay)
        XCTAssertEqual(udp.receiveDatagram(), datagram)
        XCTAssertGreaterThanOrEqual(h.server.status.datagramsDropped, 1)
        // The association ends with the control connection.
        control.shutdownWrite()
        XCTAssertTrue(control.waitForClose())
        assertSessionsEnd(h)
        XCTAssertGreaterThanOrEqual(h.server.status.datagramsDropped, 1)
    }

    func testHalfCloseStillDeliversResponse() throws {
        try checkHalfClosedUpload(of: 300_000, through: makeHarness())
    }

    /// Uploads `size` bytes to a collect-then-reply server, half-closes, and checks the whole answer.
    private func checkHalfClosedUpload(of size: Int, through h: SkysocksHarness) throws {
        let server = try h.startTCPServer(.collectThenReply)
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(server)!, server.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, 0])
        let payload = [UInt8](repeating: 0x5A, count: size)
        s.send(payload)
        s.shutdownWrite()
        let response = s.receiveAll()
        let prefix = Array("got \(size) bytes:".utf8)
        XCTAssertEqual(Array(response.prefix(prefix.count)), prefix)
        XCTAssertEqual(response.count, prefix.count + payload.count)
    }

    func testSlowReaderKeepsBuffersBounded() throws {
        let window = 128 * 1024
        let h = try makeHarness(window: window)
        let size = 24 << 20
        let blob = try h.startTCPServer(.blob(ByteBuffer(repeating: 0xA5, count: size)))
        let (s, reply) = try dial(SocksBytes.connect(Socks5Address(blob)!, blob.port!))
        XCTAssertEqual(Array(reply.prefix(2)), [5, 0])
        sleep(1)  // the application does not read: everything upstream must stall
        let stalled = h.server.status
        let received = s.receive(exactly: size)
        XCTAssertEqual(received.count, size)
        // While stalled only a few windows' worth can have left the destination.
        XCTAssertLessThan(stalled.bytesDown, 8 << 20, "server app kept reading while the reader was stalled")
        let peak = h.server.status.peakBytesWrittenWhileUnwritable
        XCTAssertLessThanOrEqual(peak, 256 * 1024, "bytes written to an unwritable stream")
        let streamPeak = try h.serverStreams.withLockedValue { $0 }.map { transfer in
            try transfer.value.eventLoop.submit { transfer.value.peakQueuedBytes }.wait()
        }.max() ?? 0
        XCTAssertLessThanOrEqual(streamPeak, 64 * 1024 + 256 * 1024, "server stream send queue")
    }

    func testFiveHundredConcurrentConnections() throws {
        let h = try makeHarness()
        let echo = try h.startTCPServer(.echo)
        let request = SocksBytes.connect(Socks5Address(echo)!, echo.port!)
        let count = 500
        let start = Date()
        var sockets: [TestSocket] = []
        for _ in 0..<count {
            let s = try TestSocket.connect(to: h.proxyAddress)
            s.send([5, 1, 0] + request)
            sockets.append(s)
        }
        var ok = 0
        for (i, s) in sockets.enumerated() {
            guard s.receive(exactly: 12).prefix(4) == [5, 0, 5, 0] else { continue }
            let message = Array("conn \(i)".utf8)
            s.send(message)
            if s.receive(exactly: message.count) == message { ok += 1 }
        }
        XCTAssertEqual(ok, count)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertEqual(h.client.status.activeSessions, count)
        sockets.removeAll()
        assertSessionsEnd(h, within: 10)
    }

    func testStreamOnAnotherEventLoop() throws {
        let h = try makeHarness(placement: .otherLoop)
        let server = try h.startTCPServer(.collectThenReply)
        var sockets: [TestSocket] = []
        for _ in 0..<8 {
            let (s, reply) = try dial(SocksBytes.connect(Socks5Address(server)!, server.port!))
            XCTAssertEqual(Array(reply.prefix(2)), [5, 0])
            sockets.append(s)
        }
        let payload = [UInt8](repeating: 0x33, count: 2 << 20)
        for s in sockets {
            s.send(payload)
            s.shutdownWrite()
        }
        for s in sockets {
            let all = s.receiveAll()
            XCTAssertEqual(all.count, "got \(payload.count) bytes:".utf8.count + payload.count, String(decoding: all.prefix(20), as: UTF8.self))
        }
    }

    func testStreamOpenFailureAnswersApplication() throws {
        _ = try makeHarness(failOpen: true)
        let (s, reply) = try dial(SocksBytes.connect(.domain("example.com"), 80))
        XCTAssertEqual(Array(reply.prefix(2)), [5, Socks5ReplyCode.hostUnreachable.rawValue])
        XCTAssertTrue(s.waitForClose())
    }

    /// Waits (bounded) until neither app has a session open.
    private func assertSessionsEnd(_ h: SkysocksHarness, within seconds: TimeInterval = 5,
                                   file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(seconds)
        while h.client.status.activeSessions + h.server.status.activeSessions > 0, Date() < deadline { usleep(20_000) }
        XCTAssertEqual(h.client.status.activeSessions, 0, "client sessions", file: file, line: line)
        XCTAssertEqual(h.server.status.activeSessions, 0, "server sessions", file: file, line: line)
    }

    /// A UDP ASSOCIATE through the harness, and one datagram echoed back through the relay (retried:
    /// UDP); returns the control connection, the application's UDP socket, the relay and the datagram.
    private func associateAndEcho(_ text: String) throws -> (TestSocket, TestSocket, SocketAddress, [UInt8]) {
        let echo = try harness.startUDPEcho()
        let (control, reply) = try dial([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(reply.prefix(4)), [5, 0, 0, 1])
        XCTAssertEqual(Array(reply[4..<8]), [127, 0, 0, 1], "relay must be on the listener's interface")
        let relay = try SocketAddress(ipAddress: "127.0.0.1", port: Int(reply[8]) << 8 | Int(reply[9]))
        let udp = TestSocket(udp: true)
        udp.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        var header = ByteBuffer()
        Socks5UDPHeader(address: Socks5Address(echo)!, port: UInt16(echo.port!)).write(to: &header)
        let datagram = Array(header.readableBytesView) + Array(text.utf8)
        var answer: [UInt8]?
        for _ in 0..<5 where answer == nil {
            udp.sendTo(datagram, relay)
            answer = udp.receiveDatagram()
        }
        XCTAssertEqual(answer, datagram, "the answer carries the echo server as source and the same data")
        return (control, udp, relay, datagram)
    }

    /// Streams on another datapath loop than the client app's: each accepted connection moves to
    /// the stream's loop (`RawSocksSocket.move`) before its pipe starts; a half-closed upload and a
    /// UDP ASSOCIATE (its relay on the NIO group) still work.
    func testMovedConnectionsCarryUploadsAndUDP() throws {
        let h = try makeHarness(placement: .otherLoop)
        try checkHalfClosedUpload(of: 1 << 20, through: h)
        let (control, _, _, _) = try associateAndEcho("mixed loops")
        control.shutdownWrite()
        XCTAssertTrue(control.waitForClose())
        assertSessionsEnd(h)
    }
}
