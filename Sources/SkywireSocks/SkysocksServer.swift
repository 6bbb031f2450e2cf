import Logging
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireSystem
import SkywireTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SkywireIO

/// Settings of the `skysocks` server app.
public struct SkysocksServerOptions: Sendable {
    /// Visor port the server app listens on.
    public static let defaultAppPort: UInt16 = 3
    public static let defaultHandshakeTimeout: TimeAmount = .seconds(10)
    public static let defaultConnectTimeout: TimeAmount = .seconds(10)
    public static let defaultMaxSessions = 4096

    /// Remote visors allowed to use the proxy; nobody unless keys are listed or `--whitelist any`.
    public var whitelist = AppWhitelist.nobody
    /// When set, clients must authenticate with RFC 1929 username/password.
    public var credentials: Socks5Credentials?
    /// Time from a stream's arrival until its SOCKS5 request must be complete.
    public var handshakeTimeout = defaultHandshakeTimeout
    /// Time allowed for the outgoing TCP connection (DNS included).
    public var connectTimeout = defaultConnectTimeout
    /// Concurrent sessions; further streams are reset with `tooManyStreams`.
    public var maxSessions = defaultMaxSessions
    /// Policy hook: return false to refuse a destination with reply 0x02 (connection not allowed).
    public var destinationFilter: (@Sendable (Socks5Request) -> Bool)?
    /// `--secure` (default): refuse CONNECT and UDP destinations in non-public ranges and the exit's
    /// own addresses (`SecureDestinations`), names by what they resolve to, with reply 0x02.
    public var secure: Bool

    public init(secure: Bool = true) {
        self.secure = secure
    }
}

/// The `skysocks` app: accepts streams on visor port 3 and speaks SOCKS5 (RFC 1928) end to end with
/// the client application over each; opens the outgoing TCP connections and UDP sockets at the exit.
///
/// The visor calls `accept(_:)` for every incoming stream on the app's port, on the stream's event loop.
/// Each exit connection is a raw non-blocking socket (`RawSocksSocket`) on the stream's
/// `EpollEventLoop` (no NIO channel per session); a stream on no such loop is refused.
public final class SkysocksServerApp: Sendable {
    public let options: SkysocksServerOptions
    let logger: Logger
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()
    /// `options.whitelist`, as checked per stream.
    let admitted: AppWhitelist.HexIndex
    /// Runs the UDP ASSOCIATE sockets of streams on `EpollEventLoop`s (NIO's shared group when nil).
    let group: EventLoopGroup?
    /// The `--secure` check; nil with `--secure=false`.
    let destinations: SecureDestinations?

    /// `group`: NIO loops for what cannot run on an `EpollEventLoop` (UDP ASSOCIATE's exit socket of a
    /// stream carried on one); the visor passes its NIO group. Nil: NIO's shared singleton group.
    public init(options: SkysocksServerOptions, group: EventLoopGroup? = nil,
                logger: Logger = Logger(label: "skysocks")) {
        self.options = options
        admitted = options.whitelist.hexIndex
        self.group = group
        self.logger = logger
        destinations = options.secure ? SecureDestinations() : nil
    }

    /// Parses app arguments (`--whitelist`, `--user`, `--pass`, ...; see `SkysocksServerOptions.parse`).
    public convenience init(arguments: [String], group: EventLoopGroup? = nil,
                            logger: Logger = Logger(label: "skysocks")) throws {
        self.init(options: try SkysocksServerOptions.parse(arguments), group: group, logger: logger)
    }

    /// Starts accepting streams (after `stop()`, accepts again).
    public func start() {
        registry.reopen()
        logger.info("skysocks started", metadata: [
            "whitelist": "\(options.whitelist.summary)",
            "auth": "\(options.credentials == nil ? "none" : "username/password")",
            "secure": "\(options.secure)",
        ])
    }

    /// Refuses new streams and aborts every open session.
    public func stop() {
        registry.closeAll()
        logger.info("skysocks stopped")
    }

    public var status: SkysocksStatus {
        var status = counters.snapshot
        status.activeSessions = registry.count
        return status
    }

    /// Serves one incoming stream. Must be called on `stream.eventLoop`.
    public func accept(_ stream: AppStream) {
        stream.eventLoop.preconditionInEventLoop()
        counters.update { $0.totalSessions += 1 }
        if !admitted.admits(stream.remoteKeyHex) {
            logger.info("refused stream from non-whitelisted visor", metadata: ["remote": "\(stream.remoteKeyHex)"])
            counters.update { $0.failedSessions += 1 }
            stream.reset(.forbidden)
            return
        }
        guard let id = registry.register(limit: options.maxSessions) else {
            logger.notice("session limit reached, refusing stream", metadata: ["remote": "\(stream.remoteKeyHex)"])
            counters.update { $0.failedSessions += 1 }
            stream.reset(.tooManyStreams)
            return
        }
        // Every session answers (METHOD selection, reply, or a failure on the handshake timer), so the
        // stream's acceptance can travel with that answer: one message to the client visor, not two.
        stream.deferAcceptance()
        let session = SkysocksServerSession(app: self, stream: stream, id: id)
        let bound = NIOLoopBound(session, eventLoop: stream.eventLoop)
        let loop = stream.eventLoop
        registry.setAbort(id) { loop.execute { bound.value.abort() } }
        session.start()
    }

    /// Maps a connect error to a SOCKS5 reply code (docs/socks.md, "Reply codes").
    public static func replyCode(for error: Error) -> Socks5ReplyCode {
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return .connectionRefused
            case ENETUNREACH, ENETDOWN: return .networkUnreachable
            case EHOSTUNREACH, EHOSTDOWN, ETIMEDOUT: return .hostUnreachable
            case EACCES, EPERM: return .connectionNotAllowed
            case EAFNOSUPPORT, EADDRNOTAVAIL: return .networkUnreachable
            default: return .generalFailure
            }
        }
        if let error = error as? NIOConnectionError {
            // Every address failed: report the first connection error; none means DNS found nothing.
            if let first = error.connectionErrors.first { return replyCode(for: first.error) }
            return .hostUnreachable
        }
        if let error = error as? SystemError {  // the raw datapath's connect (RawTCPConnector)
            return replyCode(for: IOError(errnoCode: error.errno, reason: error.call))
        }
        if error is SkysocksDestinationRefused { return .connectionNotAllowed }
        if let error = error as? ChannelError, case .connectTimeout = error { return .hostUnreachable }
        if error is SocketAddressError || error is SocketAddressError.UnknownHost || error is ResolutionError {
            return .hostUnreachable
        }
        return .generalFailure
    }
}

/// One stream served by `SkysocksServerApp`: the SOCKS5 dialogue, then the outgoing connection, after
/// which a `SocksStreamPipe` (CONNECT) or `SkysocksServerUDPAssociation` takes the stream over.
/// Confined to the stream's event loop.
final class SkysocksServerSession: AppStreamDelegate {
    private enum State {
        case handshake(Socks5ServerHandshake)
        case connecting(pending: CircularBuffer<ByteBuffer>, finReceived: Bool)
        /// A failure reply was sent with FIN; waiting for the client's FIN (or the linger timer).
        case failed
        /// Another object owns the stream now, or it ended.
        case handedOver
        case done
    }

    /// How long a session that answered with an error waits for the client's FIN before resetting.
    static let failureLinger: TimeAmount = .seconds(5)

    private let app: SkysocksServerApp
    private let stream: AppStream
    private let id: Int
    private var state: State
    private var timer: Scheduled<Void>?
    private var handoff: (() -> Void)?
    /// Dialogue output (METHOD selection / RFC 1929 status) produced together with a complete request:
    /// the client sent them in one go and waits for nothing but the reply, so they leave with it.
    private var heldOutput: ByteBuffer?

    init(app: SkysocksServerApp, stream: AppStream, id: Int) {
        self.app = app
        self.stream = stream
        self.id = id
        let authentication: Socks5ServerHandshake.Authentication =
            app.options.credentials.map { .usernamePassword($0) } ?? .none
        state = .handshake(Socks5ServerHandshake(authentication: authentication))
    }

    func start() {
        stream.setDelegate(self)
        timer = stream.eventLoop.assumeIsolated().scheduleTask(in: app.options.handshakeTimeout) { [self] in
            if case .handshake = state {
                // FIN (not RESET): the client app then closes the application's connection cleanly.
                app.logger.debug("handshake timed out", metadata: ["remote": "\(stream.remoteKeyHex)"])
                failWithReply(ByteBuffer())
            }
        }
    }

    func abort() {
        switch state {
        case .handedOver:
            handoff?()
        case .done:
            break
        default:
            end(reset: .appClosed, failed: false)
        }
    }

    // MARK: AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        switch state {
        case .handshake(var handshake):
            state = .done
            let step = handshake.receive(data)
            state = .handshake(handshake)
            switch step.outcome {
            case .needMoreData:
                if step.output.readableBytes > 0 { stream.write(step.output) }
            case .failed(let reason):
                app.logger.debug("SOCKS5 dialogue failed", metadata: ["reason": "\(reason)"])
                failWithReply(step.output)
            case .request(let request, let pipelined):
                if step.output.readableBytes > 0 { heldOutput = step.output }
                timer?.cancel()
                handle(request, pipelined: pipelined)
            }
        case .connecting(var pending, let fin):
            pending.append(data)
            state = .connecting(pending: pending, finReceived: fin)
        case .failed, .handedOver, .done:
            break
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        switch state {
        case .connecting(let pending, _):
            state = .connecting(pending: pending, finReceived: true)
        case .failed:
            end(reset: nil, failed: false)
        case .handshake:
            // The client left before asking for anything.
            stream.finish()
            end(reset: nil, failed: true)
        case .handedOver, .done:
            break
        }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        if case .failed = state {
            end(reset: nil, failed: false)
        } else {
            end(reset: nil, failed: true)
        }
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    // MARK: Request handling

    private func handle(_ request: Socks5Request, pipelined: ByteBuffer) {
        if let filter = app.options.destinationFilter, !filter(request) {
            app.logger.info("destination refused by policy", metadata: ["destination": "\(request.address):\(request.port)"])
            failWithReply(Socks5Reply.encode(code: .connectionNotAllowed))
            return
        }
        if request.command == .connect, let refused = app.refusal(for: request.address) {
            refuse(request, SkysocksDestinationRefused(refusals: [refused]))
            return
        }
        var pending = CircularBuffer<ByteBuffer>()
        if pipelined.readableBytes > 0 { pending.append(pipelined) }
        state = .connecting(pending: pending, finReceived: false)
        switch request.command {
        case .connect:
            // Data that arrives while connecting is held; stop granting window until the pipe runs.
            stream.setReadPaused(true)
            connect(request)
        case .udpAssociate:
            SkysocksServerUDPAssociation.start(app: app, stream: stream, request: request,
                                               before: heldOutput) { [self] result in
                guard case .connecting(let pending, let fin) = state else {
                    if case .success(let association) = result { association.close() }
                    return
                }
                switch result {
                case .failure(let error):
                    app.logger.info("UDP ASSOCIATE failed", metadata: ["error": "\(error)"])
                    failWithReply(Socks5Reply.encode(code: SkysocksServerApp.replyCode(for: error)))
                case .success(let association):
                    heldOutput = nil  // written by `start`, ahead of the reply
                    state = .handedOver
                    handoff = { association.abort() }
                    association.begin(pending: pending, finReceived: fin) { [app, id] in app.registry.unregister(id) }
                }
            }
        case .bind:
            failWithReply(Socks5Reply.encode(code: .commandNotSupported))  // the parser never returns BIND
        }
    }

    /// Connects to the request's address, or to the addresses its name resolves to (at the exit,
    /// off the loop) that `--secure` allows, within the connect timeout.
    private func connect(_ request: Socks5Request) {
        let deadline = NIODeadline.now() + app.options.connectTimeout
        guard case .domain(let name) = request.address else {
            guard let address = request.address.socketAddress(port: request.port) else {
                failWithReply(Socks5Reply.encode(code: .addressTypeNotSupported))
                return
            }
            connect(request, to: [address], deadline: deadline)
            return
        }
        SocketAddress.resolveOffLoop(host: name, port: Int(request.port), on: stream.eventLoop) { [self] result in
            guard case .connecting = state else { return }
            do {
                connect(request, to: try app.admitted(try result.get()), deadline: deadline)
            } catch {
                connectFailed(request, error: error)
            }
        }
    }

    /// The exit connection to the first of `addresses` that answers, within `deadline`: a raw socket
    /// on the stream's datapath loop (`RawTCPConnector`, one address after the other).
    private func connect(_ request: Socks5Request, to addresses: [SocketAddress], deadline: NIODeadline) {
        guard let loop = stream.datapathLoop else {
            connectFailed(request, error: SkysocksStreamLoopError())
            return
        }
        let timeout = app.options.handshakeTimeout
        RawTCPConnector.connect(on: loop, to: addresses, deadline: deadline) { [self] result in
            switch result {
            case .failure(let error):
                connectFailed(request, error: error)
            case .success(let descriptor):
                guard case .connecting = state else { return }  // the descriptor closes with its owner
                do {
                    let socket = try RawSocksSocket(loop: loop, socket: descriptor, localFailureTimeout: timeout)
                    connected(socket, connection: socket.connection)
                } catch {
                    connectFailed(request, error: error)
                }
            }
        }
    }

    private func connectFailed(_ request: Socks5Request, error: Error) {
        guard case .connecting = state else { return }
        if let refused = error as? SkysocksDestinationRefused {
            refuse(request, refused)
            return
        }
        let code = SkysocksServerApp.replyCode(for: error)
        app.logger.debug("connect failed", metadata: [
            "destination": "\(request.address):\(request.port)", "error": "\(error)", "reply": "\(code)",
        ])
        failWithReply(Socks5Reply.encode(code: code))
    }

    private func connected(_ socket: RawSocksSocket, connection: SocksConnection) {
        guard case .connecting(let pending, let fin) = state else {
            socket.close()
            return
        }
        let local = socket.localAddress
        let bound = local.flatMap { Socks5Address($0) } ?? .ipv4(0)
        let boundPort = UInt16(local?.port ?? 0)
        stream.write(withHeldOutput(Socks5Reply.encode(code: .succeeded, boundAddress: bound, boundPort: boundPort)))
        let app = self.app
        let id = self.id
        // The exit connection is on the stream's loop (made there).
        let pipe = SocksStreamPipe(stream: stream, socket: socket, role: .server,
                                   connection: NIOLoopBound(connection, eventLoop: socket.loop), snoop: false,
                                   counters: app.counters, logger: app.logger) { app.registry.unregister(id) }
        state = .handedOver
        handoff = { pipe.abort() }
        pipe.start()
        for data in pending { pipe.appStream(stream, didReceive: data) }
        if fin { pipe.appStreamDidReceiveFinish(stream) }
        stream.setReadPaused(false)
    }

    /// Reply 0x02 to a destination `--secure` refused.
    private func refuse(_ request: Socks5Request, _ refused: SkysocksDestinationRefused) {
        app.noteRefused(request, remote: stream.remoteKeyHex, refused)
        failWithReply(Socks5Reply.encode(code: .connectionNotAllowed))
    }

    /// Sends an error reply and FIN, then waits (bounded) for the client's FIN.
    private func failWithReply(_ reply: ByteBuffer) {
        timer?.cancel()
        app.counters.update { $0.failedSessions += 1 }
        state = .failed
        let out = withHeldOutput(reply)
        if out.readableBytes > 0 { stream.write(out) }
        stream.finish()
        timer = stream.eventLoop.assumeIsolated().scheduleTask(in: Self.failureLinger) { [self] in
            if case .failed = state { end(reset: .appClosed, failed: false) }
        }
    }

    /// `reply` behind the held dialogue output, if any (which is then no longer held).
    private func withHeldOutput(_ reply: ByteBuffer) -> ByteBuffer {
        guard var held = heldOutput.take() else { return reply }
        var reply = reply
        held.writeBuffer(&reply)
        return held
    }

    /// Releases the session; `reset` aborts the stream first.
    private func end(reset code: AppStreamResetCode?, failed: Bool) {
        if case .done = state { return }
        state = .done
        timer?.cancel()
        if failed { app.counters.update { $0.failedSessions += 1 } }
        stream.setDelegate(nil)
        if let code { stream.reset(code) }
        app.registry.unregister(id)
    }
}
