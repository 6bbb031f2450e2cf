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

    enum State {
        case initiatorStart(NoiseHandshake)
        case initiatorAwaitingResponse(NoiseHandshake)
        case responderAwaitingInitiation(NoiseHandshake)
        case established(send: CipherState, receive: CipherState)
        case closed
    }

    /// Decides, after the handshake, whether the peer may stay, and builds its mux connection.
    struct Hooks {
        /// Called once the peer is authenticated; returns nil to refuse it.
        var established: (_ remote: PublicKey, _ link: StcprHandler) -> MuxConnection?
        /// Called once when the connection ends, with a reason when it failed.
        var closed: (_ reason: String?) -> Void
    }

    private var state: State
    private let hooks: Hooks
    private let logger: Logger
    private let handshakeTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var timeoutTask: Scheduled<Void>?
    private(set) var connection: MuxConnection?
    private(set) var remoteKey: PublicKey?
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
        if let expectedRemote {
            state = .initiatorStart(try NoiseHandshake.ikInitiator(identity: identity, remote: expectedRemote))
            remoteKey = expectedRemote
        } else {
            state = .responderAwaitingInitiation(try NoiseHandshake.ikResponder(identity: identity))
        }
        self.hooks = hooks
        self.logger = logger
        self.handshakeTimeout = handshakeTimeout
        self.identityKey = identity.publicKey
    }

    private let identityKey: PublicKey

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
        guard case .initiatorStart(let hs) = state else { return }
        do {
            let msg1 = try StcprHandshake.initiation(hs, identity: identityKey)
            state = .initiatorAwaitingResponse(hs)
            writeRaw(msg1)
            context.flush()
        } catch {
            fail("cannot write handshake: \(error)")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        counters.addReceived(frame.readableBytes + NoiseLengthPrefixDecoder.prefixLength)
        switch state {
        case .responderAwaitingInitiation(let hs):
            do {
                let (claimed, msg2, send, receive) = try StcprHandshake.respond(hs, to: Array(frame.readableBytesView))
                remoteKey = claimed
                guard let conn = hooks.established(claimed, self) else {
                    fail("peer \(claimed.hex) refused", level: .info)
                    return
                }
                writeRaw(msg2)
                context.flush()
                state = .established(send: send, receive: receive)
                connection = conn
                timeoutTask?.cancel()
            } catch {
                fail("handshake from \(context.remoteAddress.map { "\($0)" } ?? "?") rejected: \(error)", level: .info)
            }
        case .initiatorAwaitingResponse(let hs):
            do {
                let (send, receive) = try StcprHandshake.complete(hs, with: Array(frame.readableBytesView))
                state = .established(send: send, receive: receive)
                timeoutTask?.cancel()
                guard let remoteKey, let conn = hooks.established(remoteKey, self) else {
                    fail("connection no longer wanted")
                    return
                }
                connection = conn
            } catch {
                fail("handshake with \(remoteKey?.hex ?? "?") failed: \(error)", level: .warning)
            }
        case .established(_, let receive):
            var plain = context.channel.allocator.buffer(capacity: frame.readableBytes)
            do {
                try frame.withUnsafeReadableBytes { ct in
                    try plain.writeWithUnsafeMutableBytes(minimumWritableBytes: ct.count) { out in
                        try receive.decrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), ciphertext: ct, into: out)
                    }
                }
            } catch {
                fail("transport message from \(remoteKey?.hex ?? "?") rejected: \(error)", level: .warning)
                return
            }
            connection?.receive(frame: plain)
        case .initiatorStart, .closed:
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
        guard case .established(let send, _) = state, let context else { return }
        let length = frame.readableBytes + NoiseConstants.tagLength
        // Records of one flush share a buffer: one channel write and allocation per flush (or per
        // `recordBatchLimit` bytes of bulk data), not per frame; a full buffer is written, never grown.
        var out: ByteBuffer
        if (pendingRecords?.writableBytes ?? 0) >= 2 + length {
            out = pendingRecords.take()!  // moved out: stays uniquely referenced, no copy on write
        } else {
            if let full = pendingRecords.take() {
                context.write(wrapOutboundOut(full), promise: nil)
            }
            let capacity = 2 + length >= Self.recordBatchCapacity ? Self.recordBatchLimit : Self.recordBatchCapacity
            out = context.channel.allocator.buffer(capacity: max(2 + length, capacity))
        }
        out.writeInteger(UInt16(length))
        do {
            try frame.withUnsafeReadableBytes { pt in
                try out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { dst in
                    try send.encrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext: pt, into: dst)
                }
            }
        } catch {
            fail("cannot encrypt: \(error)")
            return
        }
        counters.addSent(2 + length)
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
        out.writeInteger(UInt16(message.count))
        out.writeBytes(message)
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
        if case .closed = state { return }
        state = .closed
        timeoutTask?.cancel()
        connection?.linkClosed(reason: reason ?? "closed")
        connection = nil
        hooks.closed(reason)
    }
}
