import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SkywireDiscovery
import SkywireWire

/// One HTTP/1.1 connection: collects a request (body capped at `DiscoveryAPI.maxBodyBytes`,
/// larger: 413 and close; the head is capped by NIO's parser), runs the handler on the thread
/// pool, writes the JSON answer. Each request must arrive complete within `deadline` of the
/// connection opening or of the previous answer, and each answer be read within `deadline`
/// (slowloris, slow readers): else the connection is closed.
final class DiscoveryHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: DiscoveryHandler
    private let pool: NIOThreadPool
    private let udp: any Channel
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var refused = false
    private let deadline: TimeAmount
    private var deadlineTimer: Scheduled<Void>?

    init(handler: DiscoveryHandler, pool: NIOThreadPool, udp: any Channel, deadline: TimeAmount, logger: Logger) {
        self.handler = handler
        self.pool = pool
        self.udp = udp
        self.deadline = deadline
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        armDeadline(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        deadlineTimer = nil
        context.fireChannelInactive()
    }

    /// Starts the clock for the next request (on the event loop).
    private func armDeadline(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        let (deadline, logger) = (self.deadline, self.logger)
        deadlineTimer = context.eventLoop.scheduleTask(in: deadline) {
            // Closed without an answer: NIO's pipelining handler allows no response before a request head.
            let context = ctx.value
            logger.debug("request not complete within \(deadline.nanoseconds / 1_000_000) ms: closing \(context.remoteAddress.map { "\($0)" } ?? "?")")
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            refused = false
            if let len = h.headers.first(name: "content-length"), let n = Int(len), n > DiscoveryAPI.maxBodyBytes {
                refuseTooLarge(context: context, size: n)
            }
        case .body(var buf):
            guard !refused else { return }
            if body.count + buf.readableBytes > DiscoveryAPI.maxBodyBytes {
                refuseTooLarge(context: context, size: body.count + buf.readableBytes)
                return
            }
            body += buf.readBytes(length: buf.readableBytes) ?? []
        case .end:
            guard !refused, let h = head else { return }
            head = nil
            // Complete: no deadline while the handler runs; the next one starts with the answer.
            deadlineTimer?.cancel()
            deadlineTimer = nil
            let req = DiscoveryRequest(method: h.method.rawValue, target: h.uri,
                                       headers: h.headers.map { ($0.name, $0.value) }, body: body,
                                       remoteAddress: context.remoteAddress.flatMap { RendezvousAddress($0)?.address })
            body = []
            let keepAlive = h.isKeepAlive
            let handler = self.handler
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            let udp = self.udp
            let logger = self.logger
            let this = NIOLoopBound(self, eventLoop: loop)
            pool.runIfActive(eventLoop: loop) {
                handler.handle(req, nowMs: DiscoveryClock.nowMs())
            }.whenComplete { result in
                let resp: DiscoveryResponse
                switch result {
                case .success(let r): resp = r
                case .failure(let e): resp = .error(DiscoveryError(503, "service stopping: \(e)"))
                }
                if let p = resp.punch, let to = try? p.to.socketAddress() {
                    var buf = udp.allocator.buffer(capacity: p.datagram.count)
                    buf.writeBytes(p.datagram)
                    udp.writeAndFlush(AddressedEnvelope(remoteAddress: to, data: buf), promise: nil)
                }
                if resp.status >= 400 { logger.info("\(req.method) \(req.target.prefix(120)): \(resp.status) \(resp.body.prefix(200))") }
                Self.write(resp, keepAlive: keepAlive, context: ctx.value)
                // The answer must be taken and (keep-alive) the next request sent within the
                // deadline too: a client that does not read cannot pin the buffered answer.
                if ctx.value.channel.isActive { this.value.armDeadline(context: ctx.value) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or a malformed request (answered 400 by NIO's HTTPServerProtocolErrorHandler): only this connection ends.
        logger.debug("http connection: \(error)")
        context.close(promise: nil)
    }

    private func refuseTooLarge(context: ChannelHandlerContext, size: Int) {
        refused = true
        let e = DiscoveryError.tooLarge("body of \(size) bytes, at most \(DiscoveryAPI.maxBodyBytes)")
        Self.write(.error(e), keepAlive: false, context: context)
    }

    static func write(_ resp: DiscoveryResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        if !resp.body.isEmpty { headers.add(name: "Content-Type", value: "application/json") }
        headers.add(name: "Content-Length", value: String(resp.body.utf8.count))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        if let wait = resp.retryAfter { headers.add(name: "Retry-After", value: String(wait)) }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: resp.status), headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if !resp.body.isEmpty {
            var buf = context.channel.allocator.buffer(capacity: resp.body.utf8.count)
            buf.writeString(resp.body)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buf))), promise: nil)
        }
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive {
            let ch = context.channel
            done.whenComplete { _ in ch.close(promise: nil) }
        }
    }
}

/// The UDP rendezvous socket: BIND in, BIND_OK out (store work on the thread pool). At most
/// `maxInFlight` datagrams wait for the store; more are dropped, so a flood cannot queue unbounded work.
final class RendezvousHandler: ChannelInboundHandler {
    static let maxInFlight = 256
    private let inFlight = NIOLockedValueBox(0)

    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let handler: NIOLockedValueBox<DiscoveryHandler?>
    private let pool: NIOThreadPool
    private let logger: Logger

    init(handler: NIOLockedValueBox<DiscoveryHandler?>, pool: NIOThreadPool, logger: Logger) {
        self.handler = handler
        self.pool = pool
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = unwrapInboundIn(data)
        guard let h = handler.withLockedValue({ $0 }), let source = RendezvousAddress(env.remoteAddress) else { return }
        var buf = env.data
        let bytes = buf.readBytes(length: buf.readableBytes) ?? []
        guard bytes.count <= 512 else { return }
        let admitted = inFlight.withLockedValue { n -> Bool in
            guard n < Self.maxInFlight else { return false }
            n += 1
            return true
        }
        guard admitted else { return }
        let ch = context.channel
        let logger = self.logger
        let remote = env.remoteAddress
        let inFlight = self.inFlight
        let work = pool.runIfActive(eventLoop: context.eventLoop) {
            h.handleDatagram(bytes, from: source, nowMs: DiscoveryClock.nowMs())
        }
        work.whenComplete { _ in inFlight.withLockedValue { $0 -= 1 } }
        work.whenSuccess { result in
            switch result {
            case .success(let reply):
                var out = ch.allocator.buffer(capacity: reply.count)
                out.writeBytes(reply)
                ch.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: out), promise: nil)
            case .failure(.rateLimited(let why)):
                // A flood is not logged line by line: at debug level only.
                logger.debug("datagram from \(source) dropped: rate limited: \(why)")
            case .failure(let drop):
                logger.info("datagram from \(source) dropped: \(drop)")
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors surface here on a UDP socket; the socket stays open.
        logger.debug("rendezvous socket: \(error)")
    }
}
