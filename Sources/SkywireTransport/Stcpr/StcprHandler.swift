import Logging
import NIOCore
import SkywireCrypto

/// One stcpr connection (PROTOCOL.md §3): runs the Noise IK handshake, then carries one
/// encrypted mux frame per length-prefixed Noise message. Sits after `NoiseLengthPrefixDecoder`.
final class StcprHandler: ChannelDuplexHandler, FrameLink {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    /// Largest DATA payload per frame over stcpr (PROTOCOL.md §5).
    static let maxDataPayload = 16 * 1024
    /// Queued-but-unsent bytes above which streams stop writing.
    static let highWatermark = 1 << 20

    /// Decides, after the handshake, whether the peer may stay, and builds its mux connection.
    struct Hooks {
        /// Called once the peer is authenticated; returns nil to refuse it.
        var established: (_ remote: PublicKey, _ link: StcprHandler) -> MuxConnection?
        /// Called once when the connection ends, with a reason when it failed.
        var closed: (_ reason: String?) -> Void
    }

    private var session: StcprSession
    private let hooks: Hooks
    private let logger: Logger
    private let handshakeTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var timeoutTask: Scheduled<Void>?
    private(set) var connection: MuxConnection?
    var remoteKey: PublicKey? { session.remoteKey }
    private var pendingFlush = false
    /// Encrypted records sent since the last flush, written to the channel together by `flush()`.
    private var pendingRecords: ByteBuffer?
    /// Capacity of a flush's record buffer for small records, and for bulk (a record that does not fit
    /// the small size): records of a flush are written in chunks of at most this many bytes.
    static let recordBatchCapacity = 2048
    static let recordBatchLimit = 64 * 1024
    private var closeReason: String?
    let counters = LinkCounters()

    /// `expectedRemote` is set for the dialling side (it knows whom it calls).
    init(identity: KeyPair, expectedRemote: PublicKey?, handshakeTimeout: TimeAmount,
         logger: Logger, hooks: Hooks) throws {
        session = try StcprSession(identity: identity, expectedRemote: expectedRemote)
        self.hooks = hooks
        self.logger = logger
        self.handshakeTimeout = handshakeTimeout
    }

    var maxDataPayload: Int { Self.maxDataPayload }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard timeoutTask == nil else { return }
        timeoutTask = context.eventLoop.scheduleTask(in: handshakeTimeout) { [weak self] in
            self?.fail("handshake not complete in time", level: .info)
        }
        do {
            guard let msg1 = try session.start() else { return }
            writeRaw(msg1)
            context.flush()
        } catch {
            fail("cannot write handshake: \(error)")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let record = unwrapInboundIn(data)
        counters.addReceived(record.readableBytes + NoiseLengthPrefixDecoder.prefixLength)
        let received: StcprSession.Received
        do {
            received = try session.receive(record, allocator: context.channel.allocator)
        } catch {
            if session.isEstablished {
                fail("transport message from \(remoteKey?.hex ?? "?") rejected: \(error)")
            } else if session.isInitiator {
                fail("handshake with \(remoteKey?.hex ?? "?") failed: \(error)")
            } else {
                fail("handshake from \(context.remoteAddress.map { "\($0)" } ?? "?") rejected: \(error)", level: .info)
            }
            return
        }
        switch received {
        case .frame(let frame):
            connection?.receive(frame: frame)
        case .handshakeComplete(let remote, let reply):
            timeoutTask?.cancel()
            guard let conn = hooks.established(remote, self) else {
                if reply == nil { fail("connection no longer wanted") } else { fail("peer \(remote.hex) refused", level: .info) }
                return
            }
            if let reply {
                writeRaw(reply)
                context.flush()
            }
            connection = conn
        case .nothing:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection?.flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection?.linkWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(reason: closeReason ?? "connection closed by peer")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail("\(error)", level: .info)
    }

    // MARK: FrameLink

    func send(frame: ByteBuffer, reliable: Bool) {
        guard session.isEstablished, let context else { return }
        let size = StcprSession.recordSize(ofFrame: frame.readableBytes)
        // Records of one flush share a buffer: one channel write and allocation per flush (or per
        // `recordBatchLimit` bytes of bulk data), not per frame; a full buffer is written, never grown.
        var out: ByteBuffer
        if (pendingRecords?.writableBytes ?? 0) >= size {
            out = pendingRecords.take()!  // moved out: stays uniquely referenced, no copy on write
        } else {
            if let full = pendingRecords.take() {
                context.write(wrapOutboundOut(full), promise: nil)
            }
            let capacity = size >= Self.recordBatchCapacity ? Self.recordBatchLimit : Self.recordBatchCapacity
            out = context.channel.allocator.buffer(capacity: max(size, capacity))
        }
        do {
            _ = try session.seal(frame, into: &out)
        } catch {
            fail("cannot encrypt: \(error)")
            return
        }
        counters.addSent(size)
        pendingRecords = out
        pendingFlush = true
    }

    func flush() {
        guard pendingFlush, let context else { return }
        pendingFlush = false
        if let records = pendingRecords.take() {
            context.write(wrapOutboundOut(records), promise: nil)
        }
        context.flush()
    }

    func close(reason: String) {
        closeReason = reason
        context?.close(promise: nil)
    }

    // MARK: Helpers

    private func writeRaw(_ message: [UInt8]) {
        guard let context else { return }
        var out = context.channel.allocator.buffer(capacity: message.count + 2)
        StcprSession.writeHandshakeRecord(message, into: &out)
        counters.addSent(out.readableBytes)
        context.write(wrapOutboundOut(out), promise: nil)
    }

    private func fail(_ reason: String, level: Logger.Level = .warning) {
        guard closeReason == nil else { return }
        closeReason = reason
        logger.log(level: level, "stcpr: \(reason)")
        context?.close(promise: nil)
    }

    private func finish(reason: String?) {
        guard session.close() else { return }
        timeoutTask?.cancel()
        connection?.linkClosed(reason: reason ?? "closed")
        connection = nil
        hooks.closed(reason)
    }
}
