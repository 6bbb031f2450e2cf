import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SkywireDiscovery
import SkywireWire

/// The running service: the HTTP API on TCP and the rendezvous on UDP, sharing one handler.
/// Store calls block, so they run on a `NIOThreadPool`, never on an event loop.
public final class DiscoveryServer: Sendable {
    public let httpAddress: SocketAddress
    public let udpAddress: SocketAddress
    private let group: MultiThreadedEventLoopGroup
    private let pool: NIOThreadPool
    private let httpChannel: any Channel
    private let udpChannel: any Channel
    private let purgeTask: RepeatedTask

    /// Binds both sockets (`udpAnnounce`: the "udp" of `GET /v1/info`; default the bound address).
    public static func start(store: any DiscoveryStore, http: SocketAddress, udp: SocketAddress, ttlSeconds: Int,
                             udpAnnounce: String?, limits: DiscoveryRateLimits = DiscoveryRateLimits(),
                             allowPrivateAddresses: Bool = false,
                             requestDeadline: TimeAmount = .seconds(Int64(DiscoveryAPI.requestDeadlineSeconds)),
                             connectionLimits: DiscoveryConnectionLimits = .standard,
                             logger: Logger) async throws -> DiscoveryServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        do {
            let handlerBox = NIOLockedValueBox<DiscoveryHandler?>(nil)
            let udpChannel = try await DatagramBootstrap(group: group)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(RendezvousHandler(handler: handlerBox, pool: pool, logger: logger))
                    }
                }
                .bind(to: udp).get()
            let boundUDP = udpChannel.localAddress!
            let announce = udpAnnounce ?? Self.hostPort(boundUDP)
            let handler = DiscoveryHandler(store: store, ttlSeconds: ttlSeconds, udpAddress: announce, limits: limits,
                                           allowPrivateAddresses: allowPrivateAddresses)
            handlerBox.withLockedValue { $0 = handler }
            let connections = DiscoveryConnectionCounter(limits: connectionLimits)
            let httpChannel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { ch in
                    let address = ch.remoteAddress.flatMap { RendezvousAddress($0)?.address }.map(DiscoveryRateLimits.ipKey)
                    guard connections.admit(address) else {
                        logger.debug("connection from \(ch.remoteAddress.map { "\($0)" } ?? "?") refused: at most \(connectionLimits.total) connections, \(connectionLimits.perAddress) per address")
                        ch.close(promise: nil)
                        return ch.eventLoop.makeSucceededVoidFuture()
                    }
                    ch.closeFuture.whenComplete { _ in connections.release(address) }
                    return ch.eventLoop.makeCompletedFuture {
                        // Idle and slow clients cannot pin sockets: the request deadline covers both.
                        try ch.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try ch.pipeline.syncOperations.addHandler(DiscoveryHTTPHandler(handler: handler, pool: pool, udp: udpChannel,
                                                                                       deadline: requestDeadline, logger: logger))
                    }
                }
                .bind(to: http).get()
            // Expired rows are never returned; this only keeps the tables small.
            let interval = TimeAmount.seconds(Int64(max(1, ttlSeconds / 2)))
            let purgeLoop = group.next()
            let purgeTask = purgeLoop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { _ in
                pool.runIfActive(eventLoop: purgeLoop) {
                    let n = try store.purge(nowMs: DiscoveryClock.nowMs())
                    if n > 0 { logger.debug("purged \(n) expired rows") }
                }.recover { error in logger.warning("purge failed: \(error)") }
            }
            return DiscoveryServer(httpAddress: httpChannel.localAddress!, udpAddress: boundUDP, group: group, pool: pool,
                                   httpChannel: httpChannel, udpChannel: udpChannel, purgeTask: purgeTask)
        } catch {
            try? await pool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private init(httpAddress: SocketAddress, udpAddress: SocketAddress, group: MultiThreadedEventLoopGroup, pool: NIOThreadPool,
                 httpChannel: any Channel, udpChannel: any Channel, purgeTask: RepeatedTask) {
        self.httpAddress = httpAddress
        self.udpAddress = udpAddress
        self.group = group
        self.pool = pool
        self.httpChannel = httpChannel
        self.udpChannel = udpChannel
        self.purgeTask = purgeTask
    }

    /// Resolves when either socket closes.
    public func wait() async throws {
        try await httpChannel.closeFuture.get()
    }

    public func stop() async {
        purgeTask.cancel()
        try? await httpChannel.close()
        try? await udpChannel.close()
        try? await pool.shutdownGracefully()
        try? await group.shutdownGracefully()
    }

    static func hostPort(_ a: SocketAddress) -> String {
        guard let ip = a.ipAddress, let port = a.port else { return "\(a)" }
        if case .v6 = a { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }
}

/// Unix time in milliseconds (clock_gettime(CLOCK_REALTIME)).
public enum DiscoveryClock {
    public static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

extension RendezvousAddress {
    /// The address and port of a NIO socket address (IPv4 or IPv6 only).
    init?(_ a: SocketAddress) {
        switch a {
        case .v4(let v4):
            var addr = v4.address.sin_addr.s_addr   // network order
            let bytes = withUnsafeBytes(of: &addr) { Array($0) }
            self.init(address: bytes, port: UInt16(bigEndian: v4.address.sin_port))
        case .v6(let v6):
            var addr = v6.address.sin6_addr
            let bytes = withUnsafeBytes(of: &addr) { Array($0) }
            self.init(address: bytes, port: UInt16(bigEndian: v6.address.sin6_port))
        default:
            return nil
        }
    }

    /// The NIO socket address to send to.
    func socketAddress() throws -> SocketAddress {
        if address.count == 4 {
            return try SocketAddress(ipAddress: address.map(String.init).joined(separator: "."), port: Int(port))
        }
        let s = String(description.dropFirst().prefix { $0 != "]" })
        return try SocketAddress(ipAddress: s, port: Int(port))
    }
}
