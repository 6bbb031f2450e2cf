import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport

/// The resolving proxy of the `skynet` app (`skywire cli resolver up`): a SOCKS5 listener
/// (default 127.0.0.1:4446) where a CONNECT to `<pk>.skynet:PORT` is a SkyNet stream to that
/// visor's exposed PORT, `skywire.skynet:PORT` reaches this visor's own exposed PORT, and every
/// other destination goes to the `--upstream` SOCKS5 server when one is set. Fails closed: a
/// malformed `.skynet` name, a `.dmsg` name (not served yet: no relay) or another name without
/// upstream gets reply 0x04, an IP address without upstream 0x08, UDP ASSOCIATE 0x07.
///
/// Per connection (a `RawSocksSocket` on the listener's loop): a `SkynetResolverSession` reads the
/// SOCKS5 dialogue straight from the socket, then carries the connection over a SkyNet stream
/// (moved once to the stream's datapath loop and piped, as the client forward does), hands it to
/// the local `SkynetServer`, or splices it to the upstream server (`SkynetResolverUpstream`).
public final class SkynetResolver: Sendable {
    public static let skynetSuffix = ".skynet"
    public static let selfName = "skywire.skynet"
    public static let dmsgSuffix = ".dmsg"
    /// How long a client may take to finish its SOCKS5 request (and the upstream server its
    /// METHOD selection) before the connection is closed.
    static let handshakeTimeout: TimeAmount = .seconds(10)

    public let options: SkynetResolverOptions
    let logger: Logger
    let local: SkynetLocalListener
    let localServer: SkynetServer
    let opener: SkynetStreamOpener
    private let refusedBox = NIOLockedValueBox<UInt64>(0)

    public init(options: SkynetResolverOptions, loop: EpollEventLoop, localServer: SkynetServer, logger: Logger,
                opener: @escaping SkynetStreamOpener) {
        self.options = options
        self.localServer = localServer
        self.logger = logger
        self.opener = opener
        local = SkynetLocalListener(loop: loop, cap: options.maxConnections, lingerTimeout: Self.handshakeTimeout, logger: logger)
    }

    var loop: EpollEventLoop { local.loop }
    var counters: SkysocksCounters { local.counters }

    public var status: SkysocksStatus {
        var status = local.status
        status.refusedDestinations = refusedBox.withLockedValue { $0 }
        return status
    }

    public func start() -> EventLoopFuture<Void> {
        let resolver = self
        return local.start(host: options.listen.host, port: options.listen.port,
                           onAccept: { socket, id in resolver.accepted(socket, id: id) },
                           onRefused: { reason in resolver.logger.notice("skynet: resolver refused a connection", metadata: ["reason": "\(reason)"]) })
            .map { address in
                resolver.logger.info("skynet: resolver listening", metadata: [
                    "address": "\(address)", "upstream": "\(resolver.options.upstream.map { "\($0)" } ?? "none")",
                ])
            }
    }

    public func stop() -> EventLoopFuture<Void> { local.stop() }

    func noteRefused(_ destination: String, _ code: Socks5ReplyCode) {
        refusedBox.withLockedValue { $0 &+= 1 }
        counters.update { $0.failedSessions += 1 }
        logger.info("skynet: resolver refused a destination", metadata: ["destination": "\(destination)", "reply": "\(code)"])
    }

    private func accepted(_ socket: RawSocksSocket, id: Int) {
        let transfer = LoopTransfer(value: socket)
        let loop = self.loop, registry = local.registry
        registry.setAbort(id) { RawSocksSocket.close(transfer, madeOn: loop) }
        // Wherever the connection ends (here, or on the stream's loop it moved to).
        socket.connection.whenClosed { registry.unregister(id) }
        SkynetResolverSession(resolver: self, socket: socket).start()
        // The application sends its greeting right after connecting (as in the skysocks client).
        socket.readNow()
    }
}

/// The SOCKS5 server side of one resolver connection, on the listener's loop: reads the dialogue
/// from the socket (`SocksConnectionReader`, any split; bytes behind the request are buffered by
/// the connection for the pipe), then routes the request. Refusals answer with their reply code
/// and close.
final class SkynetResolverSession: SocksConnectionReader {
    let resolver: SkynetResolver
    let socket: RawSocksSocket
    private var handshake = Socks5ServerHandshake(authentication: .none)
    private var timer: Scheduled<Void>?

    init(resolver: SkynetResolver, socket: RawSocksSocket) {
        self.resolver = resolver
        self.socket = socket
    }

    func start() {
        let socket = self.socket, logger = resolver.logger
        timer = resolver.loop.assumeIsolated().scheduleTask(in: SkynetResolver.handshakeTimeout) {
            logger.debug("skynet: resolver SOCKS5 dialogue timed out")
            socket.close()
        }
        socket.connection.read(by: self)
    }

    func connectionRead(_ buffer: ByteBuffer) {
        let step = handshake.receive(buffer)
        switch step.outcome {
        case .needMoreData:
            if step.output.readableBytes > 0 { socket.write(step.output) }
        case .failed(let reason):
            resolver.logger.debug("skynet: resolver SOCKS5 dialogue failed", metadata: ["reason": "\(reason)"])
            timer?.cancel()
            socket.writeAndClose(step.output)
        case .request(let request, let pipelined):
            timer?.cancel()
            // A METHOD selection for a greeting that came in the same read leaves first.
            if step.output.readableBytes > 0 { socket.write(step.output) }
            socket.connection.stopReading(pending: pipelined)
            route(request)
        }
    }

    func connectionInputClosed() {
        timer?.cancel()
        socket.close()
    }

    /// Answers the request with `code` and closes (counted and logged as a refusal).
    func refuse(_ destination: String, _ code: Socks5ReplyCode) {
        resolver.noteRefused(destination, code)
        socket.writeAndClose(Socks5Reply.encode(code: code))
    }

    private func route(_ request: Socks5Request) {
        let destination = "\(request.address):\(request.port)"
        guard request.command == .connect else {
            refuse(destination, .commandNotSupported)
            return
        }
        switch SkynetResolverSession.destination(of: request.address) {
        case .this:
            serveHere(port: request.port)
        case .visor(let key):
            carry(to: key, port: request.port, destination: destination)
        case .upstream where resolver.options.upstream != nil:
            SkynetResolverUpstream.connect(self, request: request, destination: destination)
        case .refused(let code), .upstream(let code):
            refuse(destination, code)
        }
    }

    /// `<pk>.skynet`: a SkyNet stream to that visor; once it is open, the connection moves to the
    /// stream's loop, gets the success reply there and is piped.
    private func carry(to key: String, port: UInt16, destination: String) {
        let resolver = self.resolver
        SkynetClientForwarder.carry(LoopTransfer(value: socket), from: resolver.loop, over: resolver.opener(key), port: port,
                                    counters: resolver.counters, logger: resolver.logger,
                                    failed: { error in
                                        resolver.logger.info("skynet: resolver could not reach the visor", metadata: [
                                            "destination": "\(destination)", "reason": "\(error)",
                                        ])
                                        self.refuse(destination, error.socksReply)
                                    },
                                    connected: { socket in socket.write(Socks5Reply.encode(code: .succeeded)) },
                                    onDone: {})
    }

    /// `skywire.skynet`: this visor's own forward, served by the local `SkynetServer` through an
    /// in-memory stream on this loop (its whitelist not applied: the local operator asks).
    private func serveHere(port: UInt16) {
        let (application, session) = LoopbackAppStream.makePair(on: resolver.loop, acceptorPort: SkynetResolverOptions.defaultListen.port)
        resolver.localServer.serve(session, port: port, pipelined: ByteBuffer()) { status in
            Socks5Reply.encode(code: status == .ok ? .succeeded : SkynetOpenError.status(status).socksReply)
        }
        SkynetClientForwarder.pipe(application, to: socket, leftover: ByteBuffer(), role: .client,
                                   counters: resolver.counters, logger: resolver.logger) {}
    }

    enum Destination: Equatable {
        /// `skywire.skynet`: this visor.
        case this
        /// `<pk>.skynet` (the key as 64 lowercase hex).
        case visor(String)
        /// For the upstream server; without one, refused with this reply.
        case upstream(Socks5ReplyCode)
        case refused(Socks5ReplyCode)
    }

    /// Where a request's address goes (names compared without case and a trailing dot).
    static func destination(of address: Socks5Address) -> Destination {
        guard case .domain(let raw) = address else { return .upstream(.addressTypeNotSupported) }
        var name = raw.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        if name == SkynetResolver.selfName { return .this }
        if name.hasSuffix(SkynetResolver.skynetSuffix) {
            let label = name.dropLast(SkynetResolver.skynetSuffix.count)
            guard let key = try? SkysocksArgumentScanner.publicKey(String(label), option: "") else { return .refused(.hostUnreachable) }
            return .visor(key)
        }
        // `.dmsg` names need the relay (docs/skynet.md); never sent upstream.
        if name.hasSuffix(SkynetResolver.dmsgSuffix) { return .refused(.hostUnreachable) }
        return .upstream(.hostUnreachable)
    }
}
