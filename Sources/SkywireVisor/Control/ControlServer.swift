import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireSystem
import SkywireTransport
#if canImport(Glibc)
import Glibc
#endif

/// The visor's control socket: a Unix stream socket at `cli_addr`, mode 0600 (root
/// only), serving one JSON request per line and answering one JSON response per line.
public final class ControlServer: Sendable {
    public typealias Handler = @Sendable (ControlRequest) async -> ControlResponse
    /// Opens the stream a `stream.open` request asks for (docs/cli.md): after its answer the
    /// connection carries that stream's bytes (`ControlStreamBridge`).
    public typealias StreamOpener = @Sendable (ControlRequest) async throws -> AppStream

    private let path: String
    private let group: EventLoopGroup
    private let handler: Handler
    private let streamOpener: StreamOpener?
    private let logger: Logger
    private let channel: NIOLockedValueBox<Channel?> = NIOLockedValueBox(nil)

    public init(path: String, group: EventLoopGroup, logger: Logger, streamOpener: StreamOpener? = nil,
                handler: @escaping Handler) {
        self.path = path
        self.group = group
        self.logger = logger
        self.handler = handler
        self.streamOpener = streamOpener
    }

    /// Binds the socket. Refuses to take over a socket another live visor still serves.
    public func start() async throws {
        try Self.prepareDirectory(for: path)
        if try await BlockingPool.shared.run({ [path] in ControlClient.isServing(path: path) }) {
            throw ControlError(.conflict, "\(path): another visor is already serving this control socket")
        }
        let handler = self.handler
        let streamOpener = self.streamOpener
        let logger = self.logger
        let oldMask = umask(0o177)
        defer { umask(oldMask) }
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(handler: handler, streamOpener: streamOpener, logger: logger))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        _ = chmod(path, 0o600)
        channel.withLockedValue { $0 = ch }
        logger.info("control socket listening", metadata: ["path": "\(path)"])
    }

    public func stop() async {
        let ch = channel.withLockedValue { c -> Channel? in
            defer { c = nil }
            return c
        }
        try? await ch?.close()
        if ch != nil { _ = unlink(path) }
    }

    /// Creates the socket's directory (mode 0700) if it does not exist.
    static func prepareDirectory(for path: String) throws {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let dir = String(path[..<slash])
        var st = stat()
        if stat(dir, &st) == 0 { return }
        var prefix = ""
        for part in dir.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw ControlError(.failed, "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// Splits input into lines, runs each request through the handler, writes the responses in order.
private final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let handler: ControlServer.Handler
    private let streamOpener: ControlServer.StreamOpener?
    private let logger: Logger
    private var buffer: ByteBuffer?
    private var queue: [[UInt8]] = []
    private var busy = false

    init(handler: @escaping ControlServer.Handler, streamOpener: ControlServer.StreamOpener?, logger: Logger) {
        self.handler = handler
        self.streamOpener = streamOpener
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        var pending: ByteBuffer
        if var held = buffer {
            buffer = nil  // one reference: the append below does not copy
            held.writeBuffer(&incoming)
            pending = held
        } else {
            pending = incoming
        }
        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")),
              let line = pending.readBytes(length: newline - pending.readerIndex) {
            pending.moveReaderIndex(forwardBy: 1)
            queue.append(line)
        }
        if pending.readableBytes > ControlCodec.maxLineBytes {
            logger.warning("control request too long; closing connection")
            buffer = nil
            context.close(promise: nil)
            return
        }
        pending.discardReadBytes()
        buffer = pending
        processNext(context: context)
    }

    private func processNext(context: ChannelHandlerContext) {
        guard !busy, !queue.isEmpty else { return }
        busy = true
        let line = queue.removeFirst()
        let handler = self.handler
        let streamOpener = self.streamOpener
        let promise = context.eventLoop.makePromise(of: ControlStreamBridge.Answer.self)
        promise.completeWithTask {
            let response: ControlResponse
            do {
                let request = try ControlCodec.decode(ControlRequest.self, from: line)
                if request.method == ControlStreamBridge.method, let streamOpener {
                    return try await ControlStreamBridge.open(request, with: streamOpener)
                }
                response = await handler(request)
            } catch {
                response = ControlResponse(id: 0, error: ControlError(.badRequest, "malformed request: \(error)"))
            }
            return ControlStreamBridge.Answer(line: try ControlCodec.encodeLine(response), stream: nil)
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { result in
            let (this, context) = loopBound.value
            this.busy = false
            switch result {
            case .success(let answer) where answer.stream != nil:
                // The connection now carries the stream: bytes after the request line go to it.
                let leftover = this.buffer
                this.buffer = nil
                ControlStreamBridge.takeOver(context: context, answer: answer, leftover: leftover, logger: this.logger)
                return
            case .success(let answer):
                let bytes = answer.line
                context.writeAndFlush(this.wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            case .failure(let error):
                this.logger.error("control response failed: \(error)")
                context.close(promise: nil)
                return
            }
            this.processNext(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
