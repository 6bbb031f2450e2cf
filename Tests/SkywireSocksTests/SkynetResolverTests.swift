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

/// The resolving proxy on its raw path: the SOCKS5 dialogue read straight from the application's
/// socket on the listener's loop, then the connection moved once to the stream's datapath loop
/// (another `EpollEventLoop` here) and piped. Streams are in-memory pairs to a `SkynetServer`.
final class SkynetResolverTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var listenLoop: EpollEventLoop!
    private var streamLoop: EpollEventLoop!
    private var helpers: [Channel] = []
    private var resolvers: [SkynetResolver] = []
    /// The visor behind `<serverKey>.skynet` (its skynet app).
    private var remote: SkynetServer!
    private let clientKey = KeyPair.generate().publicKey.hex
    private let serverKey = KeyPair.generate().publicKey.hex
    /// Every stream the default opener made (the resolver's end), for checks on the stream loop.
    private let opened = NIOLockedValueBox<[LoopTransfer<LoopbackAppStream>]>([])

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        listenLoop = try EpollEventLoop(name: "resolver-listen")
        streamLoop = try EpollEventLoop(name: "resolver-streams")
        remote = SkynetServer(logger: Logger(label: "resolver-test"))
    }

    override func tearDown() {
        for r in resolvers { _ = try? r.stop().wait() }
        for c in helpers { _ = try? c.close().wait() }
        listenLoop.shutdown()
        streamLoop.shutdown()
        try? group.syncShutdownGracefully()
    }

    private func targetServer(_ mode: TestServerMode) throws -> UInt16 {
        let channel = try startTestServer(on: group) { TestServerHandler(mode: mode) }
        helpers.append(channel)
        return UInt16(channel.localAddress!.port!)
    }

    /// Makes the stream to `key` on the stream loop after `delay` (as a transport would), the
    /// other end accepted by `remote`.
    private func opener(delay: TimeAmount = .milliseconds(100)) -> SkynetStreamOpener {
        let loop = streamLoop!, remote = self.remote!, clientKey = self.clientKey, opened = self.opened
        return { key in
            let promise = loop.makePromise(of: (any AppStream).self)
            loop.scheduleTask(in: delay) {
                let stream = Self.connect(on: loop, from: clientKey, to: key, remote: remote)
                opened.withLockedValue { $0.append(LoopTransfer(value: stream)) }
                promise.assumeIsolated().succeed(stream)
            }
            return promise.futureResult
        }
    }

    /// On `loop`: an in-memory stream from `from` to `to`'s skynet app, `remote` taking the far end.
    private static func connect(on loop: EpollEventLoop, from: String, to: String, remote: SkynetServer) -> LoopbackAppStream {
        let (opener, acceptor) = LoopbackAppStream.makePair(on: loop, openerKeyHex: from, acceptorKeyHex: to, acceptorPort: 57)
        // The server side sees the stream after the opener holds it, as over a transport.
        let arriving = LoopTransfer(value: acceptor)
        loop.execute { remote.accept(arriving.value) }
        return opener
    }

    private func resolver(opener: SkynetStreamOpener? = nil, upstream: HostPort? = nil,
                          local: SkynetServer? = nil) throws -> (SkynetResolver, SocketAddress) {
        let port = try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))
        let options = SkynetResolverOptions(listen: HostPort(host: "127.0.0.1", port: port), upstream: upstream)
        let resolver = SkynetResolver(options: options, loop: listenLoop, localServer: local ?? SkynetServer(logger: Logger(label: "resolver-test")),
                                      logger: Logger(label: "resolver-test"), opener: opener ?? self.opener())
        try resolver.start().wait()
        resolvers.append(resolver)
        return (resolver, try SocketAddress(ipAddress: "127.0.0.1", port: Int(port)))
    }

    /// Exposes `port` on the remote visor to `clientKey`, connected to a target in `mode`.
    private func expose(_ port: UInt16, _ mode: TestServerMode, admitting key: String? = nil) throws {
        let target = try targetServer(mode)
        try remote.add(SkynetServerForward(port: port, target: HostPort(host: "127.0.0.1", port: target),
                                           whitelist: .keys([try PublicKey(hex: key ?? clientKey)])))
    }

    private static let greeting: [UInt8] = [5, 1, 0]
    private static let methodSelection: [UInt8] = [5, 0]
    private static let succeeded: [UInt8] = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]

    private func request(_ host: String, _ port: Int, command: UInt8 = 1) -> [UInt8] {
        SocksBytes.connect(.domain(host), port, command: command)
    }

    /// Polls `condition` (bounded: generous for a loaded machine).
    private func eventually(_ what: String, _ condition: () throws -> Bool) rethrows {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("timed out waiting for \(what)")
    }

    // MARK: - The dialogue in any split

    /// Greeting and request arrive a byte per read: the dialogue completes, then the connection
    /// (moved to the stream's loop) carries bytes both ways and half-closes.
    func testDialogueSplitAcrossReads() throws {
        try expose(8080, .echo)
        let (resolver, address) = try resolver()
        let socket = try TestSocket.connect(to: address)
        var one = 1
        setsockopt(socket.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int>.size))
        for byte in Self.greeting {
            socket.send([byte])
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTAssertEqual(socket.receive(exactly: 2), Self.methodSelection)
        for byte in request("\(serverKey).skynet", 8080) {
            socket.send([byte])
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertEqual(socket.receive(exactly: Self.succeeded.count), Self.succeeded)
        socket.send(Array("hello".utf8))
        XCTAssertEqual(socket.receive(exactly: 5), Array("hello".utf8))
        socket.shutdownWrite()
        XCTAssertEqual(socket.receiveAll(), [], "the target's FIN after ours")
        try eventually("the session ends") { resolver.status.activeSessions == 0 }
        XCTAssertEqual(resolver.status.totalSessions, 1)
        XCTAssertEqual(resolver.status.refusedDestinations, 0)
    }

    /// Greeting, request and 300 KB of payload in one write (more than the connection buffers
    /// while the stream opens): the METHOD selection, the reply and then every payload byte in
    /// order, none lost or reordered across the reads, the buffer limit and the move.
    func testPipelinedRequestAndPayloadInOneWrite() throws {
        try expose(8080, .collectThenReply)
        let (_, address) = try resolver()
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let socket = try TestSocket.connect(to: address)
        socket.send(Self.greeting + request("\(serverKey.uppercased()).SKYNET.", 8080) + payload)
        socket.shutdownWrite()
        let got = socket.receiveAll()
        XCTAssertEqual(got, Self.methodSelection + Self.succeeded + Array("got \(payload.count) bytes:".utf8) + payload)
    }

    /// The application leaves after its request, before the stream is open: once the stream
    /// arrives it is released (reset), and the session is no longer counted.
    func testClientClosingBeforeTheStreamOpens() throws {
        try expose(8080, .echo)
        let pending = NIOLockedValueBox<[EventLoopPromise<any AppStream>]>([])
        let loop = streamLoop!
        let (resolver, address) = try resolver(opener: { _ in
            let promise = loop.makePromise(of: (any AppStream).self)
            pending.withLockedValue { $0.append(promise) }
            return promise.futureResult
        })
        do {
            let socket = try TestSocket.connect(to: address)
            socket.send(Self.greeting)
            XCTAssertEqual(socket.receive(exactly: 2), Self.methodSelection)
            socket.send(request("\(serverKey).skynet", 8080) + Array("early".utf8))
            try eventually("the stream asked for") { pending.withLockedValue { $0.count } == 1 }
        }  // closed here
        Thread.sleep(forTimeInterval: 0.1)
        let remote = self.remote!, clientKey = self.clientKey, serverKey = self.serverKey
        let stream = try loop.submit { () -> LoopTransfer<LoopbackAppStream> in
            let stream = Self.connect(on: loop, from: clientKey, to: serverKey, remote: remote)
            pending.withLockedValue { $0[0] }.assumeIsolated().succeed(stream)
            return LoopTransfer(value: stream)
        }.wait()
        try eventually("the stream released") { try loop.submit { stream.value.isClosed }.wait() }
        try eventually("the session ends") { resolver.status.activeSessions == 0 }
        try eventually("the remote forward's connection ends") { remote.forwardStatus.first?.1.activeSessions == 0 }
    }

    /// The resolver stops while a stream is being opened: the connection closes at once, the
    /// stream is released when it arrives.
    func testStopWhileTheStreamOpens() throws {
        try expose(8080, .echo)
        let (resolver, address) = try resolver(opener: opener(delay: .milliseconds(500)))
        let socket = try TestSocket.connect(to: address)
        socket.send(Self.greeting + request("\(serverKey).skynet", 8080))
        XCTAssertEqual(socket.receive(exactly: 2), Self.methodSelection)
        try eventually("the session counted") { resolver.status.activeSessions == 1 }
        try resolver.stop().wait()
        XCTAssertTrue(socket.waitForClose())
        try eventually("the stream made") { opened.withLockedValue { $0.count } == 1 }
        let stream = opened.withLockedValue { $0[0] }
        try eventually("the stream released") { try streamLoop.submit { stream.value.isClosed }.wait() }
        XCTAssertEqual(resolver.status.activeSessions, 0)
    }

    // MARK: - Refusals and their replies

    /// Sends a greeting and `request`; returns the reply (10 bytes for a failure) and whether the
    /// connection then closed.
    private func reply(to request: [UInt8], at address: SocketAddress) throws -> ([UInt8], closed: Bool) {
        let socket = try TestSocket.connect(to: address)
        socket.send(Self.greeting)
        XCTAssertEqual(socket.receive(exactly: 2), Self.methodSelection)
        socket.send(request)
        let reply = socket.receive(exactly: Self.succeeded.count)
        return (reply, socket.waitForClose())
    }

    func testRefusalsKeepTheirReplyCodes() throws {
        try expose(8080, .echo)
        try expose(8081, .echo, admitting: KeyPair.generate().publicKey.hex)
        let closed = try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))
        try remote.add(SkynetServerForward(port: 8082, target: HostPort(host: "127.0.0.1", port: closed), whitelist: .anyone))
        let unreachable = KeyPair.generate().publicKey.hex
        let defaultOpener = opener(delay: .zero), loop = streamLoop!
        let (resolver, address) = try resolver(opener: { key in
            key == unreachable ? loop.makeFailedFuture(TransportError(.unreachable, "no transport to \(key)")) : defaultOpener(key)
        })
        let cases: [(String, [UInt8], Socks5ReplyCode)] = [
            ("a malformed .skynet name", request("abc.skynet", 80), .hostUnreachable),
            ("a .dmsg name", request("\(serverKey).dmsg", 80), .hostUnreachable),
            ("another name without upstream", request("example.org", 80), .hostUnreachable),
            ("an IP address without upstream", SocksBytes.connect(.ipv4(0xC000_0201), 80), .addressTypeNotSupported),
            ("BIND", request("\(serverKey).skynet", 8080, command: 2), .commandNotSupported),
            ("UDP ASSOCIATE", request("\(serverKey).skynet", 8080, command: 3), .commandNotSupported),
            ("a port not exposed", request("\(serverKey).skynet", 4242), .connectionRefused),
            ("a forward that does not admit us", request("\(serverKey).skynet", 8081), .connectionNotAllowed),
            ("the target refusing", request("\(serverKey).skynet", 8082), .connectionRefused),
            ("a visor without a transport", request("\(unreachable).skynet", 80), .hostUnreachable),
        ]
        for (what, bytes, code) in cases {
            let (reply, closed) = try self.reply(to: bytes, at: address)
            XCTAssertEqual(reply, [5, code.rawValue, 0, 1, 0, 0, 0, 0, 0, 0], what)
            XCTAssertTrue(closed, "\(what): the connection stays open")
        }
        // BIND is refused by the dialogue itself (`Socks5ServerHandshake`), before any destination.
        XCTAssertEqual(resolver.status.refusedDestinations, UInt64(cases.count - 1))
        try eventually("every session ends") { resolver.status.activeSessions == 0 }
    }

    /// A greeting without "no authentication", and bytes that are not SOCKS5: the METHOD refusal
    /// (0xFF) and a close, nothing routed.
    func testMalformedDialoguesAreRefused() throws {
        let (resolver, address) = try resolver()
        let userOnly = try TestSocket.connect(to: address)
        userOnly.send([5, 1, 2])
        XCTAssertEqual(userOnly.receive(exactly: 2), [5, 0xFF])
        XCTAssertTrue(userOnly.waitForClose())
        let http = try TestSocket.connect(to: address)
        http.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(http.waitForClose())
        let badRequest = try TestSocket.connect(to: address)
        badRequest.send(Self.greeting)
        XCTAssertEqual(badRequest.receive(exactly: 2), Self.methodSelection)
        badRequest.send([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])
        XCTAssertTrue(badRequest.waitForClose())
        try eventually("every session ends") { resolver.status.activeSessions == 0 }
        XCTAssertEqual(opened.withLockedValue { $0.count }, 0, "a stream was opened")
    }

    // MARK: - skywire.skynet and --upstream

    func testSkywireSkynetReachesThisVisorsForward() throws {
        let target = try targetServer(.echo)
        let local = SkynetServer(logger: Logger(label: "resolver-test"))
        // Listed for another key only: the local operator is not subject to it.
        try local.add(SkynetServerForward(port: 8080, target: HostPort(host: "127.0.0.1", port: target),
                                          whitelist: .keys([KeyPair.generate().publicKey])))
        let (_, address) = try resolver(local: local)
        let socket = try TestSocket.connect(to: address)
        socket.send(Self.greeting + request("skywire.skynet", 8080) + Array("ping".utf8))
        XCTAssertEqual(socket.receive(exactly: 2 + Self.succeeded.count + 4), Self.methodSelection + Self.succeeded + Array("ping".utf8))
        XCTAssertEqual(try self.reply(to: request("skywire.skynet", 9), at: address).0, [5, Socks5ReplyCode.connectionRefused.rawValue, 0, 1, 0, 0, 0, 0, 0, 0])
    }

    /// The upstream server gets a no-authentication greeting and the request in one write; its
    /// METHOD selection is dropped (the application has the resolver's), its reply and the bytes
    /// after it reach the application unchanged. One that wants another method: reply 0x02.
    func testUpstreamGetsTheRequestAndItsReplyPassesThrough() throws {
        let seen = NIOLockedValueBox<[UInt8]>([])
        let upstream = try fakeUpstream(method: 0, seen: seen)
        let (resolver, address) = try resolver(upstream: HostPort(host: "127.0.0.1", port: upstream))
        let ip = SocksBytes.connect(.ipv4(0xC633_6402), 8090)  // 198.51.100.2, never dialled: the fake answers
        let socket = try TestSocket.connect(to: address)
        socket.send([5, 2, 0, 2])  // offers username/password too: the resolver picks "none"
        XCTAssertEqual(socket.receive(exactly: 2), Self.methodSelection)
        socket.send(ip + Array("abc".utf8))
        XCTAssertEqual(socket.receive(exactly: FakeUpstream.reply.count + 3), FakeUpstream.reply + Array("abc".utf8))
        XCTAssertEqual(Array(seen.withLockedValue { $0 }.prefix(Self.greeting.count + ip.count)), Self.greeting + ip)
        socket.shutdownWrite()
        XCTAssertEqual(socket.receiveAll(), [])

        let picky = try fakeUpstream(method: 2, seen: NIOLockedValueBox([]))
        let (_, other) = try self.resolver(upstream: HostPort(host: "127.0.0.1", port: picky))
        XCTAssertEqual(try reply(to: ip, at: other).0, [5, Socks5ReplyCode.connectionNotAllowed.rawValue, 0, 1, 0, 0, 0, 0, 0, 0])
        try eventually("every session ends") { resolver.status.activeSessions == 0 }
    }

    private func fakeUpstream(method: UInt8, seen: NIOLockedValueBox<[UInt8]>) throws -> UInt16 {
        let channel = try startTestServer(on: group) { FakeUpstream(method: method, seen: seen) }
        helpers.append(channel)
        return UInt16(channel.localAddress!.port!)
    }
}

/// A SOCKS5 server that answers the first bytes with METHOD `method` and, for 0, a success reply,
/// then echoes; records what it received.
private final class FakeUpstream: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked Sendable: used on its channel's event loop only; `seen` locks inside.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    static let reply: [UInt8] = [5, 0, 0, 1, 198, 51, 100, 2, 0x1F, 0x9A]
    private let method: UInt8
    private let seen: NIOLockedValueBox<[UInt8]>
    private var answered = false

    init(method: UInt8, seen: NIOLockedValueBox<[UInt8]>) {
        self.method = method
        self.seen = seen
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        seen.withLockedValue { $0 += bytes.readableBytesView }
        guard answered else {
            answered = true
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [5, method] + (method == 0 ? Self.reply : []))), promise: nil)
            return
        }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, case .inputClosed = event else { return }
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
