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
    /// The event loop of the accepted TCP connection: a stream on this loop needs no move. A stream
    /// on another `EpollEventLoop` gets the connection moved there; one on no such loop is refused.
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
/// The listener and the accepted connections are raw sockets (`RawSocksSocket`) on `datapathLoop`;
/// a connection whose stream runs on another datapath loop moves there before the pipe starts
/// (`RawSocksSocket.move`), so a connection and its stream always share one thread.
public final class SkysocksClientApp: Sendable {
    public let options: SkysocksClientOptions
    let logger: Logger
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()
    /// Runs what stays on NIO: the local UDP relay of a UDP ASSOCIATE (docs/architecture.md).
    private let group: EventLoopGroup
    private let datapathLoop: EpollEventLoop
    private let opener: SkysocksStreamOpener
    /// The listener (used on `datapathLoop` only) and its address.
    private let listener = NIOLockedValueBox<(LoopTransfer<RawTCPListener>, SocketAddress?)?>(nil)

    /// `datapathLoop` runs the listener and the accepted connections (the visor passes the loop the
    /// transport to the server is dialled on, so stream calls usually need no move).
    public init(options: SkysocksClientOptions, group: EventLoopGroup, datapathLoop: EpollEventLoop,
                logger: Logger = Logger(label: "skysocks-client"), opener: @escaping SkysocksStreamOpener) {
        self.options = options
        self.group = group
        self.datapathLoop = datapathLoop
        self.logger = logger
        self.opener = opener
    }

    /// Parses app arguments (`-k PK`, `--addr HOST:PORT`, ...; see `SkysocksClientOptions.parse`).
    public convenience init(arguments: [String], group: EventLoopGroup, datapathLoop: EpollEventLoop,
                            logger: Logger = Logger(label: "skysocks-client"),
                            opener: @escaping SkysocksStreamOpener) throws {
        self.init(options: try SkysocksClientOptions.parse(arguments), group: group,
                  datapathLoop: datapathLoop, logger: logger, opener: opener)
    }

    /// Listen backlog.
    static let backlog: Int32 = 1024

    /// Binds the listener.
    public func start() -> EventLoopFuture<Void> {
        registry.reopen()
        let loop = datapathLoop
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
                    app.connectionAccepted(socket)
                    // The application sends its greeting right after connecting: it is usually
                    // there already, and reading it now saves a trip through epoll_wait.
                    socket.readNow()
                } catch {
                    app.logger.notice("could not set up an accepted connection", metadata: ["error": "\(error)"])
                }
            }
            let local = listener.localAddress
            app.listener.withLockedValue { $0 = (LoopTransfer(value: listener), local) }
            app.logger.info("skysocks-client listening", metadata: [
                "address": "\(local.map { "\($0)" } ?? "?")", "server": "\(app.options.serverKeyHex)",
            ])
        } }
    }

    /// The listener's address once started (port 0 in options picks a free port).
    public var localAddress: SocketAddress? { listener.withLockedValue { $0?.1 } }

    /// Closes the listener and every proxied connection.
    public func stop() -> EventLoopFuture<Void> {
        let listener = self.listener.withLockedValue { value in
            defer { value = nil }
            return value
        }
        registry.closeAll()
        guard let (transfer, _) = listener else { return datapathLoop.makeSucceededVoidFuture() }
        return datapathLoop.submit { transfer.value.close() }
    }

    public var status: SkysocksStatus {
        var status = counters.snapshot
        status.activeSessions = registry.count
        return status
    }

    // MARK: - Per connection (on the connection's loop)

    private func connectionAccepted(_ socket: RawSocksSocket) {
        counters.update { $0.totalSessions += 1 }
        let connection = socket.connection
        guard let id = registry.register(limit: options.maxConnections) else {
            logger.notice("connection limit reached, closing new connection")
            counters.update { $0.failedSessions += 1 }
            connection.closeUnattached()
            return
        }
        let loop = socket.loop
        // Carried to the stream's loop, touched only on `loop` until the socket moves there.
        let socketTransfer = LoopTransfer(value: socket)
        registry.setAbort(id) { RawSocksSocket.close(socketTransfer, madeOn: loop) }
        let request = SkysocksStreamRequest(remoteKeyHex: options.serverKeyHex, remotePort: options.serverPort,
                                            preferredEventLoop: loop)
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
                app.failLocally(socketTransfer, on: loop, code: code, id: id)
            case .success(let stream):
                guard let streamLoop = stream.datapathLoop else {
                    app.logger.warning("skysocks-client: \(SkysocksStreamLoopError())")
                    app.counters.update { $0.failedSessions += 1 }
                    let reset = LoopTransfer(value: stream)
                    stream.eventLoop.execute { reset.value.reset(.appClosed) }
                    app.failLocally(socketTransfer, on: loop, code: .generalFailure, id: id)
                    return
                }
                // Socket and pipe share the stream's loop: the socket moves there unless it is there.
                let streamTransfer = LoopTransfer(value: stream)
                let join: @Sendable () -> Void = {
                    let stream = streamTransfer.value
                    RawSocksSocket.join(socketTransfer, from: loop, to: stream, on: streamLoop) { socket, hold in
                        app.startPipe(stream, socket: socket, hold: hold, id: id)
                    }
                }
                if streamLoop.inEventLoop { join() } else { streamLoop.execute(join) }
            }
        }
    }

    /// Answers the application's dialogue here with `code` (no stream), on the socket's `loop`.
    private func failLocally(_ socket: LoopTransfer<RawSocksSocket>, on loop: EpollEventLoop, code: Socks5ReplyCode, id: Int) {
        let registry = self.registry
        loop.execute {
            let connection = socket.value.connection
            connection.beginLocalFailure(code: code, history: nil)
            connection.whenClosed { registry.unregister(id) }
        }
    }

    /// On the stream's loop (the socket's): creates the pipe and attaches it to the connection.
    private func startPipe(_ stream: AppStream, socket: RawSocksSocket, hold: AppStreamHold?, id: Int) {
        let registry = self.registry
        let pipe = SocksStreamPipe(stream: stream, socket: socket, role: .client,
                                   connection: NIOLoopBound(socket.connection, eventLoop: socket.loop), snoop: true,
                                   udpGroup: group, counters: counters, logger: logger) { registry.unregister(id) }
        pipe.start()
        hold?.release(to: pipe)
    }
}
