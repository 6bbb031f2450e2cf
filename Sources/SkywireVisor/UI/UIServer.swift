import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The web UI's listener (docs/ui.md): plain HTTP/1.1 on `ui.listen`, one request per
/// connection, at most `maxConnections` at once, each given `requestTimeout` to send its request.
public final class UIServer: Sendable {
    public static let maxConnections = 64
    /// Time a connection has to deliver its whole request (slow-loris bound).
    public static let requestTimeout = TimeAmount.seconds(10)
    static let backlog: Int32 = 64

    public let address: String
    let handler: UIHandler
    private let group: EventLoopGroup
    private let logger: Logger
    private let channel: NIOLockedValueBox<Channel?> = NIOLockedValueBox(nil)
    private let open = NIOLockedValueBox(0)

    public init(host: String, port: Int, group: EventLoopGroup, handler: UIHandler, logger: Logger) {
        self.address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.host = host
        self.port = port
        self.group = group
        self.handler = handler
        self.logger = logger
    }

    private let host: String
    private let port: Int

    /// The port actually bound (differs from the configured one only for port 0 in tests).
    public var boundPort: Int? { channel.withLockedValue { $0?.localAddress?.port } }

    public func start() async throws {
        let handler = self.handler, logger = self.logger, open = self.open
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: Self.backlog)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { n -> Bool in
                    guard n < Self.maxConnections else { return false }
                    n += 1
                    return true
                }
                guard admitted else {
                    logger.debug("ui: connection refused, \(Self.maxConnections) already open")
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UIConnectionHandler(handler: handler, logger: logger))
                }
            }
            .bind(host: host, port: port).get()
        channel.withLockedValue { $0 = ch }
        logger.info("web UI listening", metadata: ["address": "\(address)"])
    }

    public func stop() async {
        let ch = channel.withLockedValue { c -> Channel? in
            defer { c = nil }
            return c
        }
        try? await ch?.close()
    }
}

/// One connection: parse one request (bounded by `UIHTTPParser`), answer it, close.
private final class UIConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let handler: UIHandler
    private let logger: Logger
    private var parser = UIHTTPParser()
    private var done = false
    private var deadline: Scheduled<Void>?

    init(handler: UIHandler, logger: Logger) {
        self.handler = handler
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: UIServer.requestTimeout) {
            let (this, context) = loopBound.value
            guard !this.done else { return }
            this.finish(context: context, UIHandler.error(408, "timeout", "no complete request within \(UIServer.requestTimeout.nanoseconds / 1_000_000_000) s"))
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        let bytes = unwrapInboundIn(data)
        switch parser.feed(bytes.readableBytesView) {
        case .needMore:
            return
        case .refused(let status, let message):
            finish(context: context, UIHandler.error(status, "bad_request", message))
        case .request(let request):
            done = true
            deadline?.cancel()
            let source = context.channel.remoteAddress?.ipAddress ?? "?"
            let handler = self.handler
            let promise = context.eventLoop.makePromise(of: UIHTTPResponse.self)
            promise.completeWithTask { await handler.respond(to: request, source: source) }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { response in
                let (this, context) = loopBound.value
                this.write(context: context, response)
            }
        }
    }

    private func finish(context: ChannelHandlerContext, _ response: UIHTTPResponse) {
        done = true
        deadline?.cancel()
        write(context: context, response)
    }

    private func write(context: ChannelHandlerContext, _ response: UIHTTPResponse) {
        let buffer = context.channel.allocator.buffer(bytes: response.encoded())
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
