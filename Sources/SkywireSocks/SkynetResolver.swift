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
/// Per connection: the application's socket is piped (with the skysocks client's dialogue
/// snooper, which answers the greeting locally) to one end of an in-memory stream pair; a
/// `SkynetResolverSession` speaks SOCKS5 on the other end, then splices it to the SkyNet stream,
/// hands it to the local `SkynetServer`, or pipes it to the upstream server.
public final class SkynetResolver: Sendable {
    public static let skynetSuffix = ".skynet"
    public static let selfName = "skywire.skynet"
    public static let dmsgSuffix = ".dmsg"
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
        let (application, session) = LoopbackAppStream.makePair(on: loop, acceptorPort: SkynetResolverOptions.defaultListen.port)
        let registry = local.registry
        let pipe = SocksStreamPipe(stream: application, socket: socket, role: .client,
                                   connection: NIOLoopBound(socket.connection, eventLoop: loop), snoop: true,
                                   counters: counters, logger: logger) { registry.unregister(id) }
        let transfer = LoopTransfer(value: pipe)
        let loop = self.loop
        registry.setAbort(id) { loop.execute { transfer.value.abort() } }
        SkynetResolverSession(resolver: self, stream: session).start()
        pipe.start()
        socket.readNow()
    }
}

/// The SOCKS5 server end of one resolver connection (on the resolver's loop): the dialogue, then
/// the destination's route.
final class SkynetResolverSession: AppStreamDelegate {
    /// The dialogue bytes kept to replay to the upstream server: greeting, RFC 1929 and request fit.
    static let maxDialogueBytes = 2 * 1024

    private let resolver: SkynetResolver
    private let stream: AppStream
    private var handshake = Socks5ServerHandshake(authentication: .none)
    private var dialogue = ByteBuffer()
    /// More than `maxDialogueBytes` came before the request: it cannot be replayed upstream.
    private var dialogueOverflow = false
    private var active = true
    private var timer: Scheduled<Void>?

    init(resolver: SkynetResolver, stream: AppStream) {
        self.resolver = resolver
        self.stream = stream
    }

    func start() {
        stream.setDelegate(self)
        timer = stream.eventLoop.assumeIsolated().scheduleTask(in: SkynetResolver.handshakeTimeout) { [self] in
            guard active else { return }
            end()
            stream.reset(.appClosed)
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard active else { return }
        if dialogue.readableBytes + data.readableBytes <= Self.maxDialogueBytes {
            var copy = data
            dialogue.writeBuffer(&copy)
        } else {
            dialogueOverflow = true
        }
        let step = handshake.receive(data)
        switch step.outcome {
        case .needMoreData:
            if step.output.readableBytes > 0 { stream.write(step.output) }
        case .failed(let reason):
            resolver.logger.debug("skynet: resolver SOCKS5 dialogue failed", metadata: ["reason": "\(reason)"])
            end()
            answer(step.output)
        case .request(let request, let pipelined):
            end()
            route(request, held: step.output, pipelined: pipelined)
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        guard active else { return }
        end()
        stream.finish()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { end() }
    func appStreamWritabilityChanged(_ stream: AppStream) {}

    private func end() {
        active = false
        timer?.cancel()
    }

    /// Sends `output` and FIN, and lets go of the stream.
    private func answer(_ output: ByteBuffer) {
        if output.readableBytes > 0 { stream.write(output) }
        stream.setDelegate(nil)
        stream.finish()
    }

    private func refuse(_ destination: String, _ code: Socks5ReplyCode, held: ByteBuffer) {
        resolver.noteRefused(destination, code)
        var out = held
        Socks5Reply.write(code: code, to: &out)
        answer(out)
    }

    private func route(_ request: Socks5Request, held: ByteBuffer, pipelined: ByteBuffer) {
        let destination = "\(request.address):\(request.port)"
        guard request.command == .connect else {
            refuse(destination, .commandNotSupported, held: held)
            return
        }
        switch SkynetResolverSession.destination(of: request.address) {
        case .this:
            resolver.localServer.serve(stream, port: request.port, pipelined: pipelined) { status in
                var out = held
                Socks5Reply.write(code: status == .ok ? .succeeded : SkynetOpenError.status(status).socksReply, to: &out)
                return out
            }
        case .visor(let key):
            let stream = self.stream
            // Bytes the application sends before the reply wait in the in-memory stream's window.
            stream.setReadPaused(true)
            SkynetClientForwarder.open(resolver.opener(key), port: request.port, on: .presented(on: resolver.loop)) { [resolver] result in
                switch result {
                case .failure(let error):
                    resolver.logger.info("skynet: resolver could not reach the visor", metadata: [
                        "destination": "\(destination)", "reason": "\(error)",
                    ])
                    self.refuse(destination, error.socksReply, held: held)
                case .success(let (remote, leftover)):
                    var out = held
                    Socks5Reply.write(code: .succeeded, to: &out)
                    stream.write(out)
                    AppStreamSplice.join(stream, remote, pendingForB: pipelined, pendingForA: leftover)
                    stream.setReadPaused(false)
                    remote.setReadPaused(false)  // paused by `SkynetOpening`
                }
            }
        case .upstream where resolver.options.upstream != nil:
            upstream(destination, held: held)
        case .refused(let code), .upstream(let code):
            refuse(destination, code, held: held)
        }
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

    /// Replays the dialogue to the upstream SOCKS5 server and pipes the rest: its METHOD selection
    /// and reply reach the application's snooper as a skysocks server's would.
    private func upstream(_ destination: String, held: ByteBuffer) {
        guard let upstream = resolver.options.upstream, !dialogueOverflow,
              let loop = stream.datapathLoop else {
            refuse(destination, .generalFailure, held: held)
            return
        }
        let stream = self.stream
        let dialogue = self.dialogue
        stream.setReadPaused(true)
        RawTCPConnector.connect(on: loop, host: upstream.host, port: Int(upstream.port), timeout: SkynetServer.connectTimeout) { [self] result in
            switch result {
            case .failure(let error):
                resolver.logger.info("skynet: resolver upstream unreachable", metadata: ["upstream": "\(upstream)", "error": "\(error)"])
                refuse(destination, SkysocksServerApp.replyCode(for: error), held: held)
            case .success(let descriptor):
                do {
                    let socket = try RawSocksSocket(loop: loop, socket: descriptor, localFailureTimeout: SkynetServer.failureLinger)
                    socket.write(dialogue)
                    SkynetClientForwarder.pipe(stream, to: socket, leftover: ByteBuffer(), role: .server,
                                               counters: resolver.counters, logger: resolver.logger) {}
                    stream.setReadPaused(false)
                } catch {
                    refuse(destination, .generalFailure, held: held)
                }
            }
        }
    }
}
