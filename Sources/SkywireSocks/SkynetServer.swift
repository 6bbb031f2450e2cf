import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireConfig
import SkywireSystem
import SkywireTransport

/// A forward's state while it is exposed: its options, the whitelist as checked per stream, its
/// counters and its open connections. Sendable: immutable, the counters and registry lock inside.
final class SkynetExposedForward: Sendable {
    let options: SkynetServerForward
    let admitted: AppWhitelist.HexIndex
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()

    init(_ options: SkynetServerForward) {
        self.options = options
        admitted = options.whitelist.hexIndex
    }
}

/// The server half of the `skynet` app: streams arriving on its port (57) name an exposed port
/// (`SkynetRequest`); a key the forward's whitelist admits is connected to the forward's target and
/// the stream is piped to that TCP connection (back-pressure and half-close both ways,
/// `SocksStreamPipe`). Connections are raw sockets on the stream's own `EpollEventLoop`.
public final class SkynetServer: Sendable {
    /// From a stream's arrival until its request must be complete (default).
    public static let defaultRequestTimeout: TimeAmount = .seconds(10)
    /// For the connection to the target (name resolution included).
    public static let connectTimeout: TimeAmount = .seconds(10)
    /// How long a stream answered with a failure waits for the client's FIN before it is reset.
    static let failureLinger: TimeAmount = .seconds(5)

    let logger: Logger
    let requestTimeout: TimeAmount
    private let forwards = NIOLockedValueBox<[SkynetExposedForward]>([])

    public init(logger: Logger, requestTimeout: TimeAmount = defaultRequestTimeout) {
        self.logger = logger
        self.requestTimeout = requestTimeout
    }

    /// Exposes a port; refused when the name or port is taken.
    public func add(_ forward: SkynetServerForward) throws(SkysocksArgumentError) {
        let result: Result<Void, SkysocksArgumentError> = forwards.withLockedValue { list in
            var options = SkynetOptions(servers: list.map(\.options))
            do throws(SkysocksArgumentError) { try options.add(server: forward) } catch { return .failure(error) }
            list.append(SkynetExposedForward(forward))
            return .success(())
        }
        try result.get()
        logger.info("skynet: exposing port", metadata: [
            "name": "\(forward.name)", "port": "\(forward.port)", "target": "\(forward.target)", "access": "\(forward.whitelist.summary)",
        ])
    }

    /// Stops exposing the forwards `matching` selects and closes their connections; returns how many.
    @discardableResult
    public func remove(where matching: (SkynetServerForward) -> Bool) -> Int {
        let removed: [SkynetExposedForward] = forwards.withLockedValue { list in
            let gone = list.filter { matching($0.options) }
            list.removeAll { matching($0.options) }
            return gone
        }
        for forward in removed {
            forward.registry.closeAll()
            logger.info("skynet: port no longer exposed", metadata: ["name": "\(forward.options.name)", "port": "\(forward.options.port)"])
        }
        return removed.count
    }

    /// Each forward with its activity.
    public var forwardStatus: [(SkynetServerForward, SkysocksStatus)] {
        forwards.withLockedValue { $0 }.map { forward in
            var status = forward.counters.snapshot
            status.activeSessions = forward.registry.count
            return (forward.options, status)
        }
    }

    func forward(port: UInt16) -> SkynetExposedForward? { forwards.withLockedValue { list in list.first { $0.options.port == port } } }

    private func admitsAnywhere(_ hex: String) -> Bool { forwards.withLockedValue { list in list.contains { $0.admitted.admits(hex) } } }

    /// Serves one stream that arrived on the app's port. Call on `stream.eventLoop`.
    public func accept(_ stream: AppStream) {
        stream.eventLoop.preconditionInEventLoop()
        // A key no forward admits learns nothing about what is exposed.
        guard admitsAnywhere(stream.remoteKeyHex) else {
            logger.info("skynet: refused stream from a key no forward admits", metadata: ["remote": "\(stream.remoteKeyHex)"])
            stream.reset(.forbidden)
            return
        }
        serve(stream, port: nil, pipelined: ByteBuffer()) { SkynetReply(status: $0).encoded }
    }

    /// Runs a session for `stream` on its datapath loop. `port` nil: read from the stream's request;
    /// set: the stream is this visor's own (the resolver's `skywire.skynet`), no request and no
    /// whitelist; `pipelined`: bytes already read from it. `reply` encodes the answer the stream gets.
    func serve(_ stream: AppStream, port: UInt16?, pipelined: ByteBuffer, reply: @escaping (SkynetStatus) -> ByteBuffer) {
        guard let loop = stream.datapathLoop else {
            logger.warning("skynet: \(SkysocksStreamLoopError())", metadata: ["remote": "\(stream.remoteKeyHex)"])
            stream.reset(.appClosed)
            return
        }
        SkynetServerSession(server: self, stream: stream, loop: loop, ownPort: port, reply: reply).start(pipelined: pipelined)
    }

    static func status(for error: Error) -> SkynetStatus {
        switch SkysocksServerApp.replyCode(for: error) {
        case .connectionRefused: .refused
        case .hostUnreachable, .networkUnreachable, .ttlExpired: .unreachable
        default: .failed
        }
    }
}

/// One stream served by `SkynetServer`: the request, the connection to the target, then a
/// `SocksStreamPipe` owns the stream. Confined to `loop` (the stream's).
final class SkynetServerSession: AppStreamDelegate {
    private enum State {
        case awaitingRequest(ByteBuffer)
        case connecting(SkynetExposedForward, id: Int, pending: CircularBuffer<ByteBuffer>, fin: Bool)
        /// A failure reply and FIN were sent; waiting for the client's FIN (or the linger timer).
        case failed
        case handedOver(SocksStreamPipe)
        case done
    }

    private let server: SkynetServer
    private let stream: AppStream
    private let loop: EpollEventLoop
    private let ownPort: UInt16?
    private let reply: (SkynetStatus) -> ByteBuffer
    private var state: State = .awaitingRequest(ByteBuffer())
    private var timer: Scheduled<Void>?

    init(server: SkynetServer, stream: AppStream, loop: EpollEventLoop, ownPort: UInt16?, reply: @escaping (SkynetStatus) -> ByteBuffer) {
        self.server = server
        self.stream = stream
        self.loop = loop
        self.ownPort = ownPort
        self.reply = reply
    }

    func start(pipelined: ByteBuffer) {
        stream.setDelegate(self)
        if let ownPort {
            handle(port: ownPort, pipelined: pipelined)
            return
        }
        timer = loop.assumeIsolated().scheduleTask(in: server.requestTimeout) { [self] in
            guard case .awaitingRequest = state else { return }
            server.logger.debug("skynet: request timed out", metadata: ["remote": "\(stream.remoteKeyHex)"])
            end(reset: .protocolError)
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        switch state {
        case .awaitingRequest(var buffer):
            var data = data
            buffer.writeBuffer(&data)
            switch SkynetRequest.parse(buffer) {
            case .incomplete:
                state = .awaitingRequest(buffer)
            case .invalid(let reason):
                server.logger.info("skynet: bad request", metadata: ["remote": "\(stream.remoteKeyHex)", "reason": "\(reason)"])
                end(reset: .protocolError)
            case .complete(let request, let length):
                timer?.cancel()
                buffer.moveReaderIndex(forwardBy: length)
                handle(port: request.port, pipelined: buffer)
            }
        case .connecting(let forward, let id, var pending, let fin):
            pending.append(data)
            state = .connecting(forward, id: id, pending: pending, fin: fin)
        case .failed, .handedOver, .done:
            break
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        switch state {
        case .connecting(let forward, let id, let pending, _):
            state = .connecting(forward, id: id, pending: pending, fin: true)
        case .awaitingRequest:
            stream.finish()
            end(reset: nil)
        case .failed:
            end(reset: nil)
        case .handedOver, .done:
            break
        }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        if case .connecting(let forward, let id, _, _) = state { forward.registry.unregister(id) }
        end(reset: nil)
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    private func handle(port: UInt16, pipelined: ByteBuffer) {
        let remote = stream.remoteKeyHex
        guard let forward = server.forward(port: port) else {
            server.logger.info("skynet: request for a port not exposed", metadata: ["remote": "\(remote)", "port": "\(port)"])
            fail(.notExposed)
            return
        }
        guard ownPort != nil || forward.admitted.admits(remote) else {
            server.logger.info("skynet: refused a key the forward does not admit", metadata: [
                "remote": "\(remote)", "name": "\(forward.options.name)", "port": "\(port)",
            ])
            forward.counters.update { $0.failedSessions += 1 }
            fail(.forbidden)
            return
        }
        forward.counters.update { $0.totalSessions += 1 }
        guard let id = forward.registry.register(limit: forward.options.maxConnections) else {
            server.logger.notice("skynet: connection cap reached", metadata: ["name": "\(forward.options.name)", "cap": "\(forward.options.maxConnections)"])
            forward.counters.update { $0.failedSessions += 1 }
            fail(.busy)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: loop)
        let loop = self.loop
        forward.registry.setAbort(id) { loop.execute { bound.value.abort() } }
        var pending = CircularBuffer<ByteBuffer>()
        if pipelined.readableBytes > 0 { pending.append(pipelined) }
        state = .connecting(forward, id: id, pending: pending, fin: false)
        // Held until the pipe runs: bytes that arrive meanwhile stay in the mux window.
        stream.setReadPaused(true)
        let target = forward.options.target
        RawTCPConnector.connect(on: loop, host: target.host, port: Int(target.port), timeout: SkynetServer.connectTimeout) { [self] result in
            guard case .connecting(let forward, let id, let pending, let fin) = state else { return }  // the descriptor closes with the result
            switch result {
            case .failure(let error):
                let status = SkynetServer.status(for: error)
                server.logger.info("skynet: target connection failed", metadata: [
                    "name": "\(forward.options.name)", "target": "\(target)", "error": "\(error)", "status": "\(status)",
                ])
                forward.registry.unregister(id)
                forward.counters.update { $0.failedSessions += 1 }
                fail(status)
            case .success(let descriptor):
                do {
                    let socket = try RawSocksSocket(loop: loop, socket: descriptor, localFailureTimeout: SkynetServer.failureLinger)
                    stream.write(reply(.ok))
                    let pipe = SocksStreamPipe(stream: stream, socket: socket, role: .server,
                                               connection: NIOLoopBound(socket.connection, eventLoop: loop), snoop: false,
                                               counters: forward.counters, logger: server.logger) { forward.registry.unregister(id) }
                    state = .handedOver(pipe)
                    pipe.start()
                    for data in pending { pipe.appStream(stream, didReceive: data) }
                    if fin { pipe.appStreamDidReceiveFinish(stream) }
                    stream.setReadPaused(false)
                } catch {
                    forward.registry.unregister(id)
                    fail(.failed)
                }
            }
        }
    }

    /// The app stopped or the forward was removed.
    private func abort() {
        switch state {
        case .handedOver(let pipe): pipe.abort()
        case .done: break
        default: end(reset: .appClosed)
        }
    }

    /// Sends the failure reply and FIN, then waits (bounded) for the client's FIN.
    private func fail(_ status: SkynetStatus) {
        timer?.cancel()
        state = .failed
        stream.write(reply(status))
        stream.finish()
        timer = loop.assumeIsolated().scheduleTask(in: SkynetServer.failureLinger) { [self] in
            if case .failed = state { end(reset: .appClosed) }
        }
    }

    private func end(reset code: AppStreamResetCode?) {
        if case .done = state { return }
        state = .done
        timer?.cancel()
        stream.setDelegate(nil)
        if let code { stream.reset(code) }
    }
}
