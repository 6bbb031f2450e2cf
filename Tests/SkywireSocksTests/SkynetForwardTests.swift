import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireTestSupport
import SkywireTransport
import XCTest
@testable import SkywireSocks

#if canImport(Glibc)
import Glibc
#endif

/// A client forward and a server forward joined by in-memory streams on one datapath loop: the
/// opening, the pipe with half-close, and the refusals a local application sees as a prompt close.
final class SkynetForwardTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var epoll: EpollEventLoop!
    /// Where `forwarder(…, streamsElsewhere: true)` puts the streams (another datapath loop).
    private var otherEpoll: EpollEventLoop!
    private var helpers: [Channel] = []
    private var forwarders: [SkynetClientForwarder] = []
    private let clientKey = KeyPair.generate().publicKey.hex
    private let serverKey = KeyPair.generate().publicKey.hex

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        epoll = try EpollEventLoop(name: "skynet-test")
        otherEpoll = try EpollEventLoop(name: "skynet-test-other")
    }

    override func tearDown() {
        for f in forwarders { _ = try? f.stop().wait() }
        for c in helpers { _ = try? c.close().wait() }
        epoll.shutdown()
        otherEpoll.shutdown()
        try? group.syncShutdownGracefully()
    }

    private func targetServer(_ mode: TestServerMode) throws -> Int {
        let channel = try startTestServer(on: group) { TestServerHandler(mode: mode) }
        helpers.append(channel)
        return channel.localAddress!.port!
    }

    /// A server with `forward`, and a started client forward to `remotePort` whose streams reach it;
    /// `streamsElsewhere`: the streams run on another datapath loop than the forward's listener.
    private func forwarder(exposing forward: SkynetServerForward?, remotePort: UInt16,
                           streamsElsewhere: Bool = false) throws -> (SkynetClientForwarder, SkynetServer) {
        let server = SkynetServer(logger: Logger(label: "skynet-test"))
        if let forward { try server.add(forward) }
        let listenLoop = epoll!
        let loop = streamsElsewhere ? otherEpoll! : listenLoop
        let clientKey = self.clientKey, serverKey = self.serverKey
        let local = try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))
        let options = SkynetClientForward(serverKeyHex: serverKey, remotePort: remotePort, localPort: local)
        let forwarder = SkynetClientForwarder(options: options, loop: listenLoop, logger: Logger(label: "skynet-test")) { _ in
            loop.submit {
                let (opener, acceptor) = LoopbackAppStream.makePair(on: loop, openerKeyHex: clientKey, acceptorKeyHex: serverKey,
                                                                    acceptorPort: 57)
                // The server side sees the stream after the opener holds it, as over a transport.
                let arriving = LoopTransfer(value: acceptor)
                loop.execute { server.accept(arriving.value) }
                return opener as any AppStream
            }
        }
        try forwarder.start().wait()
        forwarders.append(forwarder)
        return (forwarder, server)
    }

    private func localAddress(_ f: SkynetClientForwarder) throws -> SocketAddress {
        try SocketAddress(ipAddress: "127.0.0.1", port: Int(f.options.localPort))
    }

    func testForwardsWithHalfCloseBothWays() throws {
        try checkForwardsWithHalfCloseBothWays(streamsElsewhere: false)
    }

    /// Streams on another datapath loop than the listener's (as over dmsg): each connection moves
    /// to its stream's loop (`RawSocksSocket.move`) and carries the same bytes.
    func testConnectionMovesToTheStreamsLoop() throws {
        try checkForwardsWithHalfCloseBothWays(streamsElsewhere: true)
    }

    private func checkForwardsWithHalfCloseBothWays(streamsElsewhere: Bool) throws {
        let port = try targetServer(.collectThenReply)
        let key = try PublicKey(hex: clientKey)
        let (f, server) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(port)),
                                                                      whitelist: .keys([key])), remotePort: 8080,
                                        streamsElsewhere: streamsElsewhere)
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let socket = try TestSocket.connect(to: try localAddress(f))
        socket.send(payload)
        socket.shutdownWrite()  // the target answers only after our FIN reached it
        let got = socket.receiveAll()
        XCTAssertEqual(got, Array("got \(payload.count) bytes:".utf8) + payload)
        XCTAssertNil(f.lastError)
        let stats = server.forwardStatus.first?.1
        XCTAssertEqual(stats?.totalSessions, 1)
        XCTAssertEqual(stats?.bytesUp, UInt64(payload.count))
    }

    /// The target half-closes first (a banner, then FIN) and keeps reading: the application sees
    /// the banner and EOF, and everything it sends afterwards still reaches the target.
    func testTargetHalfClosesFirstAndKeepsReading() throws {
        let received = NIOLockedValueBox<(bytes: Int, eof: Bool)>((0, false))
        let channel = try startTestServer(on: group) { BannerThenReadHandler(received) }
        helpers.append(channel)
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(channel.localAddress!.port!)),
                                                                 whitelist: .anyone), remotePort: 8080)
        let socket = try TestSocket.connect(to: try localAddress(f))
        XCTAssertEqual(socket.receiveAll(), Array(BannerThenReadHandler.banner.utf8), "banner, then EOF")
        let payload = [UInt8](repeating: 0x5A, count: 200_000)
        socket.send(payload)
        socket.shutdownWrite()
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, !received.withLockedValue({ $0.eof }) { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(received.withLockedValue { $0.bytes }, payload.count)
        XCTAssertTrue(received.withLockedValue { $0.eof }, "the application's FIN reached the target")
    }

    func testKeyNotOnTheListIsClosedPromptlyAndSaysWhy() throws {
        let port = try targetServer(.echo)
        let other = KeyPair.generate().publicKey
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(port)),
                                                                 whitelist: .keys([other])), remotePort: 8080)
        let socket = try TestSocket.connect(to: try localAddress(f))
        socket.send(Array("hello".utf8))
        let started = ContinuousClock.now
        XCTAssertTrue(socket.waitForClose(), "the local connection stays open")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        XCTAssertEqual(f.lastError, "\(SkynetOpenError.reset(.forbidden))")
        XCTAssertEqual(f.status.failedSessions, 1)
    }

    func testNoWhitelistRefusesEveryone() throws {
        let port = try targetServer(.echo)
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(port))),
                                   remotePort: 8080)
        let socket = try TestSocket.connect(to: try localAddress(f))
        XCTAssertTrue(socket.waitForClose())
        XCTAssertEqual(f.lastError, "\(SkynetOpenError.reset(.forbidden))")
    }

    func testClosedTargetPortAndUnexposedPortCloseCleanly() throws {
        let closed = try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: closed),
                                                                 whitelist: .anyone), remotePort: 8080)
        let socket = try TestSocket.connect(to: try localAddress(f))
        XCTAssertTrue(socket.waitForClose())
        XCTAssertEqual(f.lastError, "\(SkynetOpenError.status(.refused))")

        let (g, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: closed),
                                                                 whitelist: .anyone), remotePort: 9999)
        let other = try TestSocket.connect(to: try localAddress(g))
        XCTAssertTrue(other.waitForClose())
        XCTAssertEqual(g.lastError, "\(SkynetOpenError.status(.notExposed))")
    }

    /// A refusal for a stream on another datapath loop than the listener's (as over sudph or
    /// dmsg): the local connection, still on the listener's loop, is closed there (closing it on
    /// the stream's loop trapped: `EpollEventLoop.unwatch off the loop thread`).
    func testRefusalWithTheStreamOnAnotherLoop() throws {
        let port = try targetServer(.echo)
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(port)),
                                                                 whitelist: .anyone), remotePort: 9999, streamsElsewhere: true)
        let socket = try TestSocket.connect(to: try localAddress(f))
        XCTAssertTrue(socket.waitForClose())
        XCTAssertEqual(f.lastError, "\(SkynetOpenError.status(.notExposed))")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, f.status.activeSessions > 0 { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(f.status.activeSessions, 0)
    }

    /// A stream whose request never completes (one byte of three) is reset after the request
    /// timeout; one from a key no forward admits at once, before anything is read.
    func testUnfinishedRequestIsResetAfterTheTimeout() throws {
        let key = try PublicKey(hex: clientKey)
        let server = SkynetServer(logger: Logger(label: "skynet-test"), requestTimeout: .milliseconds(200))
        try server.add(SkynetServerForward(port: 8080, whitelist: .keys([key])))
        let loop = epoll!
        let clientKey = self.clientKey, serverKey = self.serverKey
        let stranger = KeyPair.generate().publicKey.hex
        let streams = try loop.submit { () -> LoopTransfer<(LoopbackAppStream, LoopbackAppStream)> in
            let (slow, slowAcceptor) = LoopbackAppStream.makePair(on: loop, openerKeyHex: clientKey, acceptorKeyHex: serverKey, acceptorPort: 57)
            let (other, otherAcceptor) = LoopbackAppStream.makePair(on: loop, openerKeyHex: stranger, acceptorKeyHex: serverKey, acceptorPort: 57)
            server.accept(slowAcceptor)
            server.accept(otherAcceptor)
            slow.write(ByteBuffer(bytes: [SkynetWire.version]))
            return LoopTransfer(value: (slow, other))
        }.wait()
        let early = try loop.submit { (streams.value.0.resetCode, streams.value.1.resetCode) }.wait()
        XCTAssertNil(early.0, "reset before the timeout")
        XCTAssertEqual(early.1, .forbidden, "a stranger's stream is reset at once")
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try loop.submit { streams.value.0.resetCode }.wait(), .protocolError)
    }

    func testConnectionCapAnswersBusy() throws {
        let port = try targetServer(.echo)
        let (f, _) = try forwarder(exposing: SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: UInt16(port)),
                                                                 whitelist: .anyone, maxConnections: 1), remotePort: 8080)
        let first = try TestSocket.connect(to: try localAddress(f))
        first.send([1, 2, 3])
        XCTAssertEqual(first.receive(exactly: 3), [1, 2, 3])
        let second = try TestSocket.connect(to: try localAddress(f))
        XCTAssertTrue(second.waitForClose())
        XCTAssertEqual(f.lastError, "\(SkynetOpenError.status(.busy))")
        first.send([4])
        XCTAssertEqual(first.receive(exactly: 1), [4], "the admitted connection keeps working")
    }
}

/// Sends `banner`, shuts its output at once, then counts what arrives until the client's FIN.
private final class BannerThenReadHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked Sendable: used on its channel's event loop only; `received` locks inside.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    static let banner = "hello, then FIN\n"
    private let received: NIOLockedValueBox<(bytes: Int, eof: Bool)>

    init(_ received: NIOLockedValueBox<(bytes: Int, eof: Bool)>) { self.received = received }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: Self.banner)), promise: nil)
        context.close(mode: .output, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let count = unwrapInboundIn(data).readableBytes
        received.withLockedValue { $0.bytes += count }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, case .inputClosed = event else { return }
        received.withLockedValue { $0.eof = true }
        context.close(promise: nil)
    }

    /// With its output already shut, NIO reports the peer's clean FIN as the channel going
    /// inactive (no `inputClosed`); an abort would be an error first (`errorCaught`).
    func channelInactive(context: ChannelHandlerContext) {
        received.withLockedValue { $0.eof = $0.eof || !failed }
    }

    private var failed = false

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failed = true
        context.close(promise: nil)
    }
}
