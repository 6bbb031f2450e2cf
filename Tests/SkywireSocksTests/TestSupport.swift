import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import XCTest
@testable import SkywireSocks
import SkywireTransport

#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// A blocking TCP or UDP socket for driving the proxy from a test thread (receive timeout 10 s).
final class TestSocket {
    let fd: Int32
    static let timeoutSeconds = 10

    init(udp: Bool = false, ipv6: Bool = false) {
        fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Self.timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    static func connect(to address: SocketAddress) throws -> TestSocket {
        let s = TestSocket(ipv6: address.protocol == .inet6)
        let rc = address.withSockAddr { Glibc.connect(s.fd, $0, socklen_t($1)) }
        guard rc == 0 else { throw IOError(errnoCode: errno, reason: "connect") }
        return s
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    func sendTo(_ bytes: [UInt8], _ address: SocketAddress) {
        _ = bytes.withUnsafeBytes { buf in
            address.withSockAddr { sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t($1)) }
        }
    }

    /// Reads exactly `count` bytes, fewer if the connection closes or times out.
    func receive(exactly count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            got += n
        }
        return Array(out[..<got])
    }

    /// Reads until EOF (or timeout / `limit`).
    func receiveAll(limit: Int = 64 << 20) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            out += chunk[..<n]
        }
        return out
    }

    /// One datagram.
    func receiveDatagram() -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? Array(chunk[..<n]) : nil
    }

    /// True when the peer closed (recv returns 0 or a reset) within the timeout.
    func waitForClose() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func bind(_ address: SocketAddress) {
        _ = address.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
    }
}

/// A TCP server on `host` (a free port) whose every connection gets a handler from `makeHandler`;
/// remote half-closure allowed.
func startTestServer(on group: EventLoopGroup, host: String = "127.0.0.1",
                     _ makeHandler: @escaping @Sendable () -> ChannelHandler) throws -> Channel {
    try ServerBootstrap(group: group)
        .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(makeHandler()) }
        }
        .bind(host: host, port: 0).wait()
}

/// What a test TCP server does with a connection.
enum TestServerMode: Sendable {
    /// Echoes bytes; half-closes when the client does.
    case echo
    /// Collects until the client half-closes, then sends back `reply(collected)` and closes.
    case collectThenReply
    /// Sends `body` at once and keeps the connection open (an EOF would make NIO drain the socket's
    /// receive buffer regardless of autoRead, which is bounded by SO_RCVBUF but not by us).
    case blob(ByteBuffer)
    /// Minimal HTTP/1.0 server: answers any request with `body`.
    case http(ByteBuffer)
}

final class TestServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let mode: TestServerMode
    var collected = ByteBuffer()
    init(mode: TestServerMode) { self.mode = mode }

    func channelActive(context: ChannelHandlerContext) {
        if case .blob(let body) = mode {
            context.writeAndFlush(wrapOutboundOut(body), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        switch mode {
        case .echo:
            context.writeAndFlush(data, promise: nil)
        case .collectThenReply:
            collected.writeBuffer(&buffer)
        case .http(let body):
            collected.writeBuffer(&buffer)
            if collected.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) != nil {
                var head = context.channel.allocator.buffer(capacity: 128)
                head.writeString("HTTP/1.0 200 OK\r\nContent-Length: \(body.readableBytes)\r\nConnection: close\r\n\r\n")
                context.write(wrapOutboundOut(head), promise: nil)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(body)).whenComplete { _ in channel.close(promise: nil) }
                collected.clear()
            }
        case .blob:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, case .inputClosed = event else { return }
        switch mode {
        case .collectThenReply:
            var reply = context.channel.allocator.buffer(capacity: collected.readableBytes + 16)
            reply.writeString("got \(collected.readableBytes) bytes:")
            reply.writeBuffer(&collected)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
        default:
            context.close(mode: .output, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

final class UDPEchoHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data)),
                              promise: nil)
    }
}

/// A test case with a NIO group (2 loops) and at most one harness, both shut down after each test.
class SkysocksHarnessTestCase: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var harness: SkysocksHarness!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        harness?.shutdown()
        harness = nil
        try? group.syncShutdownGracefully()
    }
}

/// Where the harness puts the streams the client app opens.
enum StreamPlacement {
    /// On the loop the client app prefers (its accepted connection's: its datapath loop).
    case preferred
    /// On another datapath loop (as a stream over a transport dialled on another loop, e.g. dmsg's):
    /// the client app's connection moves there.
    case otherLoop
}

/// Client app → loopback stream pair → server app. The client app runs its connections on an
/// `EpollEventLoop` and streams live on one too (so the server app's exit connections are there as
/// well); the NIO group runs the test servers and the UDP relays.
final class SkysocksHarness {
    let group: EventLoopGroup
    let server: SkysocksServerApp
    let client: SkysocksClientApp
    /// The client visor's key (a real one: whitelists hold parsed keys).
    static let defaultClientKey = KeyPair.generate().publicKey
    let clientKey = SkysocksHarness.defaultClientKey.hex
    let serverKey = String(repeating: "5e", count: 32)
    /// Every acceptor-side (server app) stream opened, for back-pressure measurements.
    let serverStreams = NIOLockedValueBox<[LoopTransfer<LoopbackAppStream>]>([])
    var helperChannels: [Channel] = []
    /// The client app's datapath loop.
    let epoll: EpollEventLoop
    /// Where `.otherLoop` puts the streams.
    let otherEpoll: EpollEventLoop?

    /// Server options whose whitelist lists the harness client (the server refuses everyone by default), with
    /// `--secure=false`: the harness destinations are on 127.0.0.1, which `--secure` refuses.
    static var admittingClient: SkysocksServerOptions {
        var options = SkysocksServerOptions(secure: false)
        options.whitelist = .keys([defaultClientKey])
        return options
    }

    init(group: EventLoopGroup, serverOptions: SkysocksServerOptions = SkysocksHarness.admittingClient,
         clientKey: String? = nil, window: Int = 256 * 1024, failOpen: Bool = false,
         placement: StreamPlacement = .preferred) throws {
        self.group = group
        let epoll = try EpollEventLoop(name: "skysocks-test-datapath")
        self.epoll = epoll
        let otherEpoll = placement == .otherLoop ? try EpollEventLoop(name: "skysocks-test-other") : nil
        self.otherEpoll = otherEpoll
        let server = SkysocksServerApp(options: serverOptions, group: group)
        self.server = server
        server.start()
        let opener = clientKey ?? self.clientKey
        let streams = serverStreams
        let serverKey = self.serverKey
        var options = SkysocksClientOptions(serverKeyHex: serverKey)
        options.listenPort = 0
        client = SkysocksClientApp(options: options, group: group, datapathLoop: epoll) { request in
            let loop: EventLoop = otherEpoll ?? request.preferredEventLoop
            if failOpen {
                return loop.makeFailedFuture(ChannelError.connectTimeout(.seconds(1)))
            }
            let promise = loop.makePromise(of: (any AppStream).self)
            loop.execute {
                let (a, b) = LoopbackAppStream.makePair(on: loop, openerKeyHex: opener, acceptorKeyHex: request.remoteKeyHex,
                                                       acceptorPort: request.remotePort, window: window)
                streams.withLockedValue { $0.append(LoopTransfer(value: b)) }
                server.accept(b)
                promise.assumeIsolated().succeed(a)
            }
            return promise.futureResult
        }
        try client.start().wait()
    }

    /// A loop for streams made by hand: the datapath loop.
    var streamLoop: EventLoop { epoll }

    var proxyAddress: SocketAddress { client.localAddress! }

    func startTCPServer(_ mode: TestServerMode, host: String = "127.0.0.1") throws -> SocketAddress {
        let channel = try startTestServer(on: group, host: host) { TestServerHandler(mode: mode) }
        helperChannels.append(channel)
        return channel.localAddress!
    }

    func startUDPEcho() throws -> SocketAddress {
        let channel = try DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPEchoHandler()) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        helperChannels.append(channel)
        return channel.localAddress!
    }

    func shutdown() {
        _ = try? client.stop().wait()
        server.stop()
        for c in helperChannels { _ = try? c.close().wait() }
        epoll.shutdown()
        otherEpoll?.shutdown()
    }
}

/// SOCKS5 message bytes for tests.
enum SocksBytes {
    static func connect(_ address: Socks5Address, _ port: Int, command: UInt8 = 1) -> [UInt8] {
        var b = ByteBuffer(bytes: [5, command, 0])
        address.write(to: &b)
        b.writeInteger(UInt16(port))
        return Array(b.readableBytesView)
    }
}
