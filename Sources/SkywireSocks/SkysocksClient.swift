import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireTransport

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

/// Carries a value to the event loop that owns it (the value is only touched there after the hop).
struct LoopTransfer<Value>: @unchecked Sendable {
    let value: Value
}

/// The `skysocks-client` app: a TCP listener (default 127.0.0.1:1080) whose every connection is
/// carried as its own stream to the server app, piped both ways with back-pressure and half-close.
/// UDP ASSOCIATE gets a local UDP relay (docs/socks.md).
public final class SkysocksClientApp: Sendable {
    public let options: SkysocksClientOptions
    let logger: Logger
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()
    private let group: EventLoopGroup
    /// Where the listener and accepted connections run; by default `group`. Must be a
    /// MultiThreadedEventLoopGroup or one of its loops (ServerBootstrap's rule).
    private let childGroup: EventLoopGroup
    private let opener: SkysocksStreamOpener
    private let listener = NIOLockedValueBox<Channel?>(nil)

    /// `childGroup` runs the listener and the accepted connections (default: `group`); the visor passes
    /// the home loop of the transport to the server, so stream calls need no thread hop.
    public init(options: SkysocksClientOptions, group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                logger: Logger = Logger(label: "skysocks-client"),
                opener: @escaping SkysocksStreamOpener) {
        self.options = options
        self.group = group
        self.childGroup = childGroup ?? group
        self.logger = logger
        self.opener = opener
    }

    /// Parses app arguments (`-k PK`, `--addr HOST:PORT`, ...; see `SkysocksClientOptions.parse`).
    public convenience init(arguments: [String], group: EventLoopGroup, childGroup: EventLoopGroup? = nil,
                            logger: Logger = Logger(label: "skysocks-client"),
                            opener: @escaping SkysocksStreamOpener) throws {
        self.init(options: try SkysocksClientOptions.parse(arguments), group: group, childGroup: childGroup,
                  logger: logger, opener: opener)
    }

    /// Binds the listener.
    public func start() -> EventLoopFuture<Void> {
        registry.reopen()
        let app = self
        let timeout = options.handshakeTimeout
        // The listener runs on the child loop too: NIO's accept handler then sets a connection up
        // without the two thread hops (there and back) it makes when the loops differ.
        return ServerBootstrap(group: childGroup, childGroup: childGroup)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY: accepted sockets inherit it from the listener (NIO sets it there). Half-closure
            // is set in the initializer: no per-connection future chain for option application.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                    try channel.pipeline.syncOperations.addHandler(SocksChannelHandler(
                        localFailureTimeout: timeout,
                        onActive: { handler, context in app.connectionActive(handler, context: context) }))
                }
            }
            .bind(host: options.listenHost, port: options.listenPort)
            .map { channel in
                app.listener.withLockedValue { $0 = channel }
                app.logger.info("skysocks-client listening", metadata: [
                    "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "server": "\(app.options.serverKeyHex)",
                ])
            }
    }

    /// The listener's address once started (port 0 in options picks a free port).
    public var localAddress: SocketAddress? { listener.withLockedValue { $0?.localAddress } }

    /// Closes the listener and every proxied connection.
    public func stop() -> EventLoopFuture<Void> {
        let channel = listener.withLockedValue { value -> Channel? in
            defer { value = nil }
            return value
        }
        registry.closeAll()
        guard let channel else { return group.next().makeSucceededVoidFuture() }
        return channel.close().recover { _ in }
    }

    public var status: SkysocksStatus {
        var status = counters.snapshot
        status.activeSessions = registry.count
        return status
    }

    // MARK: - Per connection (on the connection's event loop)

    private func connectionActive(_ handler: SocksChannelHandler, context: ChannelHandlerContext) {
        let channel = context.channel
        counters.update { $0.totalSessions += 1 }
        guard let id = registry.register(limit: options.maxConnections) else {
            logger.notice("connection limit reached, closing new connection")
            counters.update { $0.failedSessions += 1 }
            handler.closeUnattached()
            return
        }
        registry.setAbort(id) { channel.close(promise: nil) }
        let handlerBound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let request = SkysocksStreamRequest(remoteKeyHex: options.serverKeyHex, remotePort: options.serverPort,
                                            preferredEventLoop: channel.eventLoop)
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
                channel.eventLoop.execute {
                    handlerBound.value.beginLocalFailure(code: code, history: nil)
                }
                channel.closeFuture.whenComplete { _ in app.registry.unregister(id) }
            case .success(let stream):
                let transfer = LoopTransfer(value: stream)
                if stream.eventLoop.inEventLoop {
                    app.startPipe(transfer.value, channel: channel, handler: handlerBound, id: id)
                } else {
                    stream.eventLoop.execute {
                        app.startPipe(transfer.value, channel: channel, handler: handlerBound, id: id)
                    }
                }
            }
        }
    }

    /// On the stream's loop: creates the pipe and attaches it to the connection's handler.
    private func startPipe(_ stream: AppStream, channel: Channel, handler: NIOLoopBound<SocksChannelHandler>, id: Int) {
        let registry = self.registry
        let pipe = SocksStreamPipe(stream: stream, channel: channel, role: .client, handler: handler, snoop: true,
                                   counters: counters, logger: logger) { registry.unregister(id) }
        stream.setDelegate(pipe)
        let pipeBound = NIOLoopBound(pipe, eventLoop: stream.eventLoop)
        let streamLoop = stream.eventLoop
        if channel.eventLoop.inEventLoop {
            handler.value.attach(pipeBound, streamLoop: streamLoop)
        } else {
            channel.eventLoop.execute { handler.value.attach(pipeBound, streamLoop: streamLoop) }
        }
    }
}
