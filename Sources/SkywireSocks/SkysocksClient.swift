import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireSystem
import SkywireTransport
import SkywireIO

/// What the client app asks the visor for: a stream to `remotePort` on visor `remoteKeyHex`.
public struct SkysocksStreamRequest: Sendable {
    public var remoteKeyHex: String
    public var remotePort: UInt16
    /// The event loop of the accepted TCP connection: a stream on this loop needs no thread hops.
    /// A stream on another loop works too.
    public var preferredEventLoop: EventLoop
}

/// Opens a stream for the client app (the visor's mux supplies it). The future may complete on any loop.
public typealias SkysocksStreamOpener = @Sendable (SkysocksStreamRequest) -> EventLoopFuture<any AppStream>

/// Settings of the `skysocks-client` app.
public struct SkysocksClientOptions: Sendable {
    public static let defaultAppPort: UInt16 = 13
    public static let defaultListenHost = "127.0.0.1"
    public static let defaultListenPort = 1080
    public static let defaultMaxConnections = 4096

    /// The server visor (64 lowercase hex).
    public var serverKeyHex: String
    /// The server app's port on that visor.
    public var serverPort: UInt16 = SkysocksServerOptions.defaultAppPort
    /// Where applications connect (an IP literal). Only loopback unless configured otherwise.
    public var listenHost = defaultListenHost
    public var listenPort = defaultListenPort
    public var maxConnections = defaultMaxConnections
    /// How long a connection whose stream could not be opened may take to receive its failure reply.
    public var handshakeTimeout: TimeAmount = SkysocksServerOptions.defaultHandshakeTimeout

    public init(serverKeyHex: String) { self.serverKeyHex = serverKeyHex }
}

/// The `skysocks-client` app: a TCP listener (default 127.0.0.1:1080) whose every connection is
/// carried as its own stream to the server app, piped both ways with back-pressure and half-close.
/// UDP ASSOCIATE gets a local UDP relay (docs/socks.md).
///
/// Two datapaths with the same behaviour: NIO channels (default), or, with `datapathLoop`, a raw
/// listener and raw accepted sockets serviced by that `EpollEventLoop` (no NIO channel per connection).
public final class SkysocksClientApp: Sendable {
    public let options: SkysocksClientOptions
    let logger: Logger
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()
    private let group: EventLoopGroup
    /// Where the listener and accepted connections run; by default `group`. Must be a
    /// MultiThreadedEventLoopGroup or one of its loops (ServerBootstrap's rule).
    private let childGroup: EventLoopGroup
    private let datapathLoop: EpollEventLoop?
    private let opener: SkysocksStreamOpener
    private let listener = NIOLockedValueBox<Listener?>(nil)

    private enum Listener {
        case channel(Channel)
        case raw(LoopTransfer<RawTCPListener>, SocketAddress?)
    }

    /// `childGroup` runs the listener and the accepted connections (default: `group`); the visor passes
    /// the home loop of the transport to the server, so stream calls need no thread hop.
    /// `datapathLoop`: when set, the listener and the accepted connections are raw sockets on that loop
    /// instead (`childGroup` is then unused); streams on another loop are reached through a
    /// `HoppingAppStream`. `group` runs what stays on NIO (the local UDP relay of a UDP ASSOCIATE).
    public init(options: SkysocksClientOptions, group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                datapathLoop: EpollEventLoop? = nil, logger: Logger = Logger(label: "skysocks-client"),
                opener: @escaping SkysocksStreamOpener) {
        self.options = options
        self.group = group
        self.childGroup = childGroup ?? group
        self.datapathLoop = datapathLoop
        self.logger = logger
        self.opener = opener
    }

    /// Parses app arguments (`-k PK`, `--addr HOST:PORT`, ...; see `SkysocksClientOptions.parse`).
    public convenience init(arguments: [String], group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                            datapathLoop: EpollEventLoop? = nil, logger: Logger = Logger(label: "skysocks-client"),
                            opener: @escaping SkysocksStreamOpener) throws {
        self.init(options: try SkysocksClientOptions.parse(arguments), group: group, childGroup: childGroup,
                  datapathLoop: datapathLoop, logger: logger, opener: opener)
    }

    /// Listen backlog (both datapaths).
    static let backlog: Int32 = 1024

    /// Binds the listener.
    public func start() -> EventLoopFuture<Void> {
        registry.reopen()
        if let datapathLoop { return startRaw(on: datapathLoop) }
        let app = self
        let timeout = options.handshakeTimeout
        // The listener runs on the child loop too: NIO's accept handler then sets a connection up
        // without the two thread hops (there and back) it makes when the loops differ.
        return ServerBootstrap(group: childGroup, childGroup: childGroup)
            .serverChannelOption(ChannelOptions.backlog, value: Self.backlog)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY: accepted sockets inherit it from the listener (NIO sets it there). Half-closure
            // is set in the initializer: no per-connection future chain for option application.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                    try channel.pipeline.syncOperations.addHandler(SocksChannelHandler(
                        localFailureTimeout: timeout,
                        onActive: { socket, connection in app.connectionAccepted(socket, connection: connection) }))
                }
            }
            .bind(host: options.listenHost, port: options.listenPort)
            .map { channel in
                app.listener.withLockedValue { $0 = .channel(channel) }
                app.logListening(channel.localAddress)
            }
    }

    private func startRaw(on loop: EpollEventLoop) -> EventLoopFuture<Void> {
        let (host, port) = (options.listenHost, options.listenPort)
        let app = self
        let timeout = options.handshakeTimeout
        // getaddrinfo(3) on the blocking pool (listen_host may be a name).
        return BlockingPool.shared.runFuture(on: loop) {
            try SocketAddress.makeAddressResolvingHost(host, port: port)
        }.flatMap { address in loop.submit {
            let listener = try RawTCPListener(loop: loop, address: address, backlog: Self.backlog) { fd in
                do {
                    let socket = try RawSocksSocket(loop: loop, socket: OwnedDescriptor(taking: fd), localFailureTimeout: timeout)
                    app.connectionAccepted(socket, connection: socket.connection)
                    // The application sends its greeting right after connecting: it is usually
                    // there already, and reading it now saves a trip through epoll_wait.
                    socket.readNow()
                } catch {
                    app.logger.notice("could not set up an accepted connection", metadata: ["error": "\(error)"])
                }
            }
            let local = listener.localAddress
            app.listener.withLockedValue { $0 = .raw(LoopTransfer(value: listener), local) }
            app.logListening(local)
        } }
    }

    private func logListening(_ address: SocketAddress?) {
        logger.info("skysocks-client listening", metadata: [
            "address": "\(address.map { "\($0)" } ?? "?")", "server": "\(options.serverKeyHex)",
            "datapath": "\(datapathLoop == nil ? "nio" : "raw")",
        ])
    }

    /// The listener's address once started (port 0 in options picks a free port).
    public var localAddress: SocketAddress? {
        listener.withLockedValue { listener -> SocketAddress? in
            switch listener {
            case .channel(let channel): return channel.localAddress
            case .raw(_, let address): return address
            case nil: return nil
            }
        }
    }

    /// Closes the listener and every proxied connection.
    public func stop() -> EventLoopFuture<Void> {
        let listener = self.listener.withLockedValue { value -> Listener? in
            defer { value = nil }
            return value
        }
        registry.closeAll()
        switch listener {
        case .channel(let channel):
            return channel.close().recover { _ in }
        case .raw(let transfer, _):
            guard let loop = datapathLoop else { return group.next().makeSucceededVoidFuture() }
            return loop.submit { transfer.value.close() }
        case nil:
            return group.next().makeSucceededVoidFuture()
        }
    }

    public var status: SkysocksStatus {
        var status = counters.snapshot
        status.activeSessions = registry.count
        return status
    }

    // MARK: - Per connection (on the connection's event loop)

    private func connectionAccepted(_ socket: SocksSocket, connection: SocksConnection) {
        counters.update { $0.totalSessions += 1 }
        guard let id = registry.register(limit: options.maxConnections) else {
            logger.notice("connection limit reached, closing new connection")
            counters.update { $0.failedSessions += 1 }
            connection.closeUnattached()
            return
        }
        let loop = socket.eventLoop
        // Carried to other loops, touched only on `loop` (and the socket's thread-safe NIO methods).
        let connectionBound = NIOLoopBound(connection, eventLoop: loop)
        let socketTransfer = LoopTransfer(value: socket)
        registry.setAbort(id) { loop.execute { socketTransfer.value.close() } }
        let request = SkysocksStreamRequest(remoteKeyHex: options.serverKeyHex, remotePort: options.serverPort,
                                            preferredEventLoop: loop)
        let raw = socket is RawSocksSocket
        let app = self
        opener(request).whenComplete { result in
            switch result {
            case .failure(let error):
                app.logger.info("could not open a stream to the server", metadata: ["error": "\(error)"])
                app.counters.update { $0.failedSessions += 1 }
                // A refusal by the server visor (whitelist) is "not allowed"; anything else means
                // the server could not be reached.
                let code: Socks5ReplyCode = (error as? TransportError)?.streamCode == .forbidden
                    ? .connectionNotAllowed : .hostUnreachable
                let fail: @Sendable () -> Void = {
                    connectionBound.value.beginLocalFailure(code: code, history: nil)
                    connectionBound.value.whenClosed { app.registry.unregister(id) }
                }
                if loop.inEventLoop { fail() } else { loop.execute(fail) }
            case .success(let stream):
                let transfer = LoopTransfer(value: stream)
                let start = { @Sendable in
                    let stream = transfer.value
                    if raw && stream.eventLoop !== loop {
                        // A raw socket and its pipe share one loop: present the stream there.
                        let hopping = LoopTransfer(value: HoppingAppStream(wrapping: stream, on: loop))
                        loop.execute {
                            app.startPipe(hopping.value, socket: socketTransfer.value, connection: connectionBound, id: id)
                        }
                    } else {
                        app.startPipe(stream, socket: socketTransfer.value, connection: connectionBound, id: id)
                    }
                }
                if stream.eventLoop.inEventLoop { start() } else { stream.eventLoop.execute(start) }
            }
        }
    }

    /// On the stream's loop: creates the pipe and attaches it to the connection.
    private func startPipe(_ stream: AppStream, socket: SocksSocket, connection: NIOLoopBound<SocksConnection>,
                           id: Int) {
        let registry = self.registry
        let pipe = SocksStreamPipe(stream: stream, socket: socket, role: .client, connection: connection, snoop: true,
                                   udpGroup: group, counters: counters, logger: logger) { registry.unregister(id) }
        pipe.start()
    }
}
