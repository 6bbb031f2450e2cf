import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport

/// Why a SkyNet stream could not be opened (client side), for the log, `skynet status` and the
/// resolver's SOCKS reply.
public enum SkynetOpenError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with a failure status.
    case status(SkynetStatus)
    /// The stream was reset before the reply (e.g. `forbidden`: no forward there admits our key;
    /// `no such port`: the visor runs no skynet app).
    case reset(AppStreamResetCode)
    /// No stream could be opened (no transport to the visor).
    case unreachable(String)
    /// No reply within `SkynetOpening.replyTimeout`, or a malformed one.
    case noReply(String)

    public var description: String {
        switch self {
        case .status(let s): "refused by the server: \(s)"
        case .reset(.forbidden): "refused by the server: key not whitelisted"
        case .reset(.noSuchPort): "the remote visor runs no skynet app"
        case .reset(let code): "stream reset: \(code)"
        case .unreachable(let why): "visor unreachable: \(why)"
        case .noReply(let why): "no valid reply: \(why)"
        }
    }

    /// The SOCKS5 reply the resolver answers with (RFC 1928 §6).
    var socksReply: Socks5ReplyCode {
        switch self {
        case .status(.forbidden), .reset(.forbidden): .connectionNotAllowed
        case .status(.notExposed), .status(.refused), .reset(.noSuchPort): .connectionRefused
        case .status(.unreachable), .unreachable, .noReply: .hostUnreachable
        default: .generalFailure
        }
    }
}

/// The client side of a stream's opening: sends the `SkynetRequest`, then waits (bounded) for
/// the `SkynetReply`; `completion` runs once, on the stream's loop, with the bytes that came
/// behind an `ok` reply (the caller's pipe then takes the stream over) or the reason. After an
/// `ok` the stream's reads are paused: what follows (more data, FIN) waits until the caller has
/// fed those bytes to its pipe and resumes reading, so nothing overtakes them.
final class SkynetOpening: AppStreamDelegate {
    static let replyTimeout: TimeAmount = .seconds(15)

    private let stream: AppStream
    private var buffer = ByteBuffer()
    private var completion: ((Result<ByteBuffer, SkynetOpenError>) -> Void)?
    private var timer: Scheduled<Void>?

    private init(stream: AppStream, completion: @escaping (Result<ByteBuffer, SkynetOpenError>) -> Void) {
        self.stream = stream
        self.completion = completion
    }

    /// Call on `stream.eventLoop`.
    static func start(_ stream: AppStream, port: UInt16, completion: @escaping (Result<ByteBuffer, SkynetOpenError>) -> Void) {
        let opening = SkynetOpening(stream: stream, completion: completion)
        stream.setDelegate(opening)
        stream.write(SkynetRequest(port: port).encoded)
        opening.timer = stream.eventLoop.assumeIsolated().scheduleTask(in: replyTimeout) {
            opening.finish(.failure(.noReply("timed out")), reset: .appClosed)
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        var data = data
        buffer.writeBuffer(&data)
        switch SkynetReply.parse(buffer) {
        case .incomplete:
            if buffer.readableBytes > SkynetWire.replyLength { finish(.failure(.noReply("oversized")), reset: .protocolError) }
        case .invalid(let reason):
            finish(.failure(.noReply(reason)), reset: .protocolError)
        case .complete(let reply, let length):
            buffer.moveReaderIndex(forwardBy: length)
            if reply.status == .ok {
                stream.setReadPaused(true)
                finish(.success(buffer), reset: nil)
            } else {
                // The server sent FIN behind it; ours closes the stream.
                finish(.failure(.status(reply.status)), reset: nil)
                stream.setDelegate(nil)
                stream.finish()
            }
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        finish(.failure(.noReply("closed before the reply")), reset: nil)
        stream.setDelegate(nil)
        stream.finish()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        finish(.failure(.reset(code)), reset: nil)
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    private func finish(_ result: Result<ByteBuffer, SkynetOpenError>, reset code: AppStreamResetCode?) {
        guard let completion else { return }
        self.completion = nil
        timer?.cancel()
        if let code {
            stream.setDelegate(nil)
            stream.reset(code)
        }
        completion(result)
    }
}

/// Opens a stream to the SkyNet app of a visor (the visor's mux supplies it; the future may
/// complete on any loop).
public typealias SkynetStreamOpener = @Sendable (_ serverKeyHex: String) -> EventLoopFuture<any AppStream>

/// One client forward of the `skynet` app: a raw listener (default 127.0.0.1) on `loop`; each
/// accepted connection becomes its own stream to the server visor, opened with a `SkynetRequest`
/// for `remotePort`, then piped both ways. A refusal closes the local connection at once and is
/// kept as `lastError`.
public final class SkynetClientForwarder: Sendable {
    public let options: SkynetClientForward
    let logger: Logger
    private let local: SkynetLocalListener
    private let opener: SkynetStreamOpener
    private let lastErrorBox = NIOLockedValueBox<String?>(nil)

    public init(options: SkynetClientForward, loop: EpollEventLoop, logger: Logger, opener: @escaping SkynetStreamOpener) {
        self.options = options
        self.logger = logger
        self.opener = opener
        local = SkynetLocalListener(loop: loop, cap: options.maxConnections, lingerTimeout: SkynetServer.failureLinger, logger: logger)
    }

    public var lastError: String? { lastErrorBox.withLockedValue { $0 } }

    public var status: SkysocksStatus { local.status }

    /// Binds the listener.
    public func start() -> EventLoopFuture<Void> {
        let forwarder = self
        return local.start(host: options.bindHost, port: options.localPort,
                           onAccept: { socket, id in forwarder.accepted(socket, id: id) },
                           onRefused: { forwarder.note($0) })
            .map { address in
                forwarder.logger.info("skynet: forwarding", metadata: [
                    "name": "\(forwarder.options.name)", "local": "\(address)", "server": "\(forwarder.options.serverKeyHex)",
                    "remote_port": "\(forwarder.options.remotePort)",
                ])
            }
    }

    /// Closes the listener and every forwarded connection.
    public func stop() -> EventLoopFuture<Void> { local.stop() }

    private func accepted(_ socket: RawSocksSocket, id: Int) {
        let transfer = LoopTransfer(value: socket)
        let loop = local.loop, registry = local.registry
        registry.setAbort(id) { RawSocksSocket.close(transfer, madeOn: loop) }
        let forwarder = self
        Self.carry(transfer, from: loop, over: opener(options.serverKeyHex), port: options.remotePort,
                   counters: local.counters, logger: logger,
                   failed: { error in
                       forwarder.local.counters.update { $0.failedSessions += 1 }
                       forwarder.note("\(error)")
                       transfer.value.connection.closeUnattached()
                       registry.unregister(id)
                   },
                   connected: { _ in forwarder.lastErrorBox.withLockedValue { $0 = nil } },
                   onDone: { registry.unregister(id) })
    }

    /// Carries a connection accepted on `loop` over a SkyNet stream (the forwarder's, the
    /// resolver's `<pk>.skynet`): waits for `future`'s stream and its opening for `port` (`open`),
    /// then moves the connection to the stream's loop (`RawSocksSocket.join`), runs `connected`
    /// there and pipes the two; `onDone` when the pipe ends. A failure runs `failed` on `loop`,
    /// with the connection still there.
    static func carry(_ socket: LoopTransfer<RawSocksSocket>, from loop: EpollEventLoop, over future: EventLoopFuture<any AppStream>,
                      port: UInt16, counters: SkysocksCounters, logger: Logger,
                      failed: @escaping (SkynetOpenError) -> Void, connected: @escaping (RawSocksSocket) -> Void,
                      onDone: @escaping () -> Void) {
        open(future, port: port, failures: loop) { result in
            switch result {
            case .failure(let error):
                failed(error)
            case .success(let (stream, leftover)):
                // On the stream's datapath loop: the connection moves there, then the pipe starts.
                guard let streamLoop = stream.datapathLoop else {  // `open` refused such a stream already
                    stream.reset(.appClosed)
                    let fail = LoopTransfer(value: failed)
                    loop.execute { fail.value(.unreachable("\(SkysocksStreamLoopError())")) }
                    return
                }
                RawSocksSocket.join(socket, from: loop, to: stream, on: streamLoop) { socket, hold in
                    connected(socket)
                    pipe(stream, to: socket, leftover: leftover, role: .client, counters: counters, logger: logger,
                         hold: hold, onDone: onDone)
                }
            }
        }
    }

    /// A refused connection: logged and kept for `skynet status`.
    private func note(_ reason: String) {
        lastErrorBox.withLockedValue { $0 = reason }
        logger.info("skynet: forwarded connection refused", metadata: ["name": "\(options.name)", "reason": "\(reason)"])
    }

    /// Waits for `future`'s stream and runs its opening for `port` on the stream's own datapath
    /// loop (a stream on none is refused), where `completion` runs with the stream and the bytes
    /// behind the reply; every failure (no stream, a refusal, no reply) completes on `failures`,
    /// where the caller's socket still is. After a success the caller moves its socket to the
    /// stream's loop (`RawSocksSocket.join`).
    static func open(_ future: EventLoopFuture<any AppStream>, port: UInt16, failures: EpollEventLoop,
                     completion: @escaping (Result<(AppStream, ByteBuffer), SkynetOpenError>) -> Void) {
        let done = LoopTransfer(value: completion)
        future.whenComplete { result in
            switch result {
            case .failure(let error):
                let reason = (error as? TransportError)?.streamCode.map(SkynetOpenError.reset) ?? .unreachable("\(error)")
                failures.execute { done.value(.failure(reason)) }
            case .success(let stream):
                let transfer = LoopTransfer(value: stream)
                let begin: @Sendable () -> Void = {
                    let stream = transfer.value
                    guard stream.datapathLoop != nil else {
                        stream.reset(.appClosed)
                        failures.execute { done.value(.failure(.unreachable("\(SkysocksStreamLoopError())"))) }
                        return
                    }
                    SkynetOpening.start(stream, port: port) { result in
                        switch result {
                        case .success(let leftover):
                            done.value(.success((stream, leftover)))
                        case .failure(let reason):
                            // The caller's socket is still on `failures` (a refusal must not touch it here).
                            if failures.inEventLoop { done.value(.failure(reason)) } else { failures.execute { done.value(.failure(reason)) } }
                        }
                    }
                }
                if stream.eventLoop.inEventLoop { begin() } else { stream.eventLoop.execute(begin) }
            }
        }
    }

    /// Pipes an opened stream to a local connection (both on the stream's loop).
    /// `hold`: the stream was held while the socket moved here (`RawSocksSocket.join`).
    static func pipe(_ stream: AppStream, to socket: RawSocksSocket, leftover: ByteBuffer, role: SocksStreamPipe.Role,
                     counters: SkysocksCounters, logger: Logger, hold: AppStreamHold? = nil, onDone: @escaping () -> Void) {
        let pipe = SocksStreamPipe(stream: stream, socket: socket, role: role,
                                   connection: NIOLoopBound(socket.connection, eventLoop: socket.loop), snoop: false,
                                   counters: counters, logger: logger, onDone: onDone)
        pipe.start()
        if leftover.readableBytes > 0 { pipe.appStream(stream, didReceive: leftover) }
        if let hold { hold.release(to: pipe) } else { stream.setReadPaused(false) }  // paused by `SkynetOpening`
    }
}
