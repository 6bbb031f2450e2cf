import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireIO
import SkywireTransport
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// The pty session host (`skywire pty-host`, docs/pty.md "Session host"): sshd-style privilege
/// separation for boards, where the visor runs in a sandbox no root shell can live in. The visor's
/// `pty` app (`--session-host PATH`) checks the whitelist, connects to the host's unix socket, sends
/// a `PtyHostHeader` and then splices the client's stream to the connection; the host runs the
/// session with the same `PtyHostSession`/`PtySessionWorker` as the in-process path, over a
/// `ChannelAppStream`. The host trusts its socket: only root may connect (mode 0600).
public enum PtySessionHost {
    /// How long the visor has to send the header (it sends it at once).
    static let headerTimeout: TimeAmount = PtyHostSession.defaultOpenTimeout
    /// `--max-sessions` of `pty-host --socket`: connections served at once; more are closed.
    public static let defaultMaxSessions = PtyOptions.defaultMaxSessions
    /// The socket's mode: root only.
    static let socketMode: mode_t = 0o600

    /// Serves one session on `descriptor`, a connected AF_UNIX stream socket (systemd's
    /// `Accept=yes`: the socket is stdin). Returns when the session and its connection ended.
    public static func serve(connectedDescriptor descriptor: CInt, group: EventLoopGroup, logger: Logger) async throws {
        let done = group.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try install(on: channel, logger: logger, done: done) }
            }
            .withConnectedSocket(descriptor).get()
        try await channel.closeFuture.get()
        try await done.futureResult.get()
    }

    /// Listens on `path` (mode 0600; a stale socket is replaced) and serves one session per
    /// connection, at most `maxSessions` at once, until the returned channel closes.
    public static func listen(path: String, maxSessions: Int, group: EventLoopGroup, logger: Logger) async throws -> Channel {
        _ = unlink(path)
        let active = NIOLockedValueBox(0)
        let old = umask(0o177)
        defer { umask(old) }
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // Over the limit, a connection still gets its header read and an `error` frame
                // (the client sees why), up to as many again; beyond that it is closed at once.
                let slot: Slot = active.withLockedValue { count in
                    guard count < 2 * maxSessions else { return .none }
                    count += 1
                    return count <= maxSessions ? .session : .busy
                }
                guard slot != .none else {
                    logger.warning("pty-host: refused a connection: \(maxSessions) sessions already")
                    return channel.close()
                }
                let done = channel.eventLoop.makePromise(of: Void.self)
                channel.closeFuture.and(done.futureResult).whenComplete { _ in active.withLockedValue { $0 -= 1 } }
                let refusal = slot == .busy ? "the session host is busy: \(maxSessions) sessions already" : nil
                return channel.eventLoop.makeCompletedFuture { try install(on: channel, logger: logger, done: done, refusal: refusal) }
            }
            .bind(unixDomainSocketPath: path).get()
        umask(old)
        guard chmod(path, socketMode) == 0 else { throw SocketError("chmod \(path): \(String(cString: strerror(errno)))") }
        logger.info("pty-host: listening", metadata: ["socket": "\(path)", "max_sessions": "\(maxSessions)"])
        return server
    }

    private enum Slot { case session, busy, none }

    struct SocketError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// A connection's pipeline: the header reader, which then starts the session. `done`
    /// completes when the session ended (its worker finished, or it never started).
    /// With `refusal`, the session is answered with that `error` after the header instead.
    private static func install(on channel: Channel, logger: Logger, done: EventLoopPromise<Void>, refusal: String? = nil) throws {
        try channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        try channel.pipeline.syncOperations.addHandler(HeaderReader(logger: logger, done: done, refusal: refusal))
    }

    /// Reads the `PtyHostHeader`, then puts a `ChannelAppStream` behind itself (passing every
    /// later read on) and starts a `PtyHostSession` on it.
    private final class HeaderReader: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let logger: Logger
        private let done: EventLoopPromise<Void>
        private let refusal: String?
        private var buffered: [UInt8] = []
        private var started = false
        private var refused = false
        private var timer: Scheduled<Void>?

        init(logger: Logger, done: EventLoopPromise<Void>, refusal: String?) {
            self.logger = logger
            self.done = done
            self.refusal = refusal
        }

        func handlerAdded(context: ChannelHandlerContext) {
            let channel = context.channel
            timer = context.eventLoop.scheduleTask(in: PtySessionHost.headerTimeout) { channel.close(promise: nil) }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            guard !started else {
                context.fireChannelRead(data)
                return
            }
            guard !refused else { return }  // the session's frames after a refusal: dropped
            buffered += bytes.readBytes(length: bytes.readableBytes) ?? []
            do {
                guard let (header, length) = try PtyHostHeader.decode(buffered[...]) else {
                    if buffered.count >= PtyHostHeader.maxLength { throw PtyProtocolError("pty host header too long") }
                    return
                }
                timer?.cancel()
                if let refusal {
                    // The visor ends its side once ours ended (it reads our FIN), then the channel closes.
                    refused = true
                    buffered = []
                    logger.warning("pty-host: session refused", metadata: ["pk": "\(HexCoding.encode(header.peer))", "error": "\(refusal)"])
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: PtyFrame.error(refusal).encoded)), promise: nil)
                    context.close(mode: .output, promise: nil)
                    return
                }
                started = true
                let rest = ByteBuffer(bytes: buffered[length...])
                buffered = []
                let stream = ChannelAppStream(channel: context.channel, remoteKeyHex: HexCoding.encode(header.peer), pending: rest)
                try context.pipeline.syncOperations.addHandler(stream)
                let done = self.done
                PtyHostSession(stream: stream, user: header.user, logger: logger, app: nil) { done.succeed(()) }.start()
            } catch {
                logger.warning("pty-host: connection refused", metadata: ["error": "\(error)"])
                context.close(promise: nil)
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if started { context.fireUserInboundEventTriggered(event) } else { context.close(promise: nil) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            timer?.cancel()
            if !started { done.succeed(()) }
            context.fireChannelInactive()
        }
    }

    // MARK: the visor's side

    /// Hands an admitted stream to the session host at `path` (called on the stream's loop by
    /// `PtyApp`): connects a unix socket on that loop (an `EpollEventLoop`, as every transport's
    /// streams have), sends the header, then splices the two on that loop until both ended;
    /// `onDone` runs once then (or when the host cannot be reached: the client gets an `error`
    /// frame). `started` receives the session's hang-up (callable from any thread), for `PtyApp.stop`.
    static func forward(_ stream: AppStream, to path: String, user: String, logger: Logger,
                        started: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
                        onDone: @escaping @Sendable () -> Void) {
        stream.eventLoop.preconditionInEventLoop()
        let peer = stream.remoteKeyHex
        guard let loop = stream.eventLoop as? EpollEventLoop else {
            refuse(stream, "the stream is not on a datapath event loop", logger: logger, onDone: onDone)
            return
        }
        let header: [UInt8]
        do {
            header = try PtyHostHeader(peer: HexCoding.decode(peer) ?? [], user: user).encoded
        } catch {
            refuse(stream, "\(error)", logger: logger, onDone: onDone)
            return
        }
        let host: SocketAppStream
        do {
            host = try SocketAppStream(loop: loop, socket: RawUnixSocket.connect(path: path), remoteKeyHex: peer)
        } catch {
            logger.error("pty: the session host is not reachable", metadata: ["socket": "\(path)", "error": "\(error)"])
            refuse(stream, "the session host is not reachable", logger: logger, onDone: onDone)
            return
        }
        host.write(ByteBuffer(bytes: header))
        logger.info("pty: session handed to the session host", metadata: ["pk": "\(peer)", "socket": "\(path)"])
        let splice = AppStreamSplice(client: stream, server: host, onDone: onDone)
        let hangUp = LoopTransfer(value: splice)
        // Registered before it starts: it may end at once, and `onDone` unregisters it.
        started { loop.execute { hangUp.value.hangUp() } }
        splice.start()
    }

    /// The client gets an `error` frame and FIN (as for a session that cannot start).
    private static func refuse(_ stream: AppStream, _ message: String, logger: Logger, onDone: () -> Void) {
        logger.warning("pty: session refused", metadata: ["pk": "\(stream.remoteKeyHex)", "error": "\(message)"])
        stream.write(ByteBuffer(bytes: PtyFrame.error(message).encoded))
        stream.finish()
        onDone()
    }
}
