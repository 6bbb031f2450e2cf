import NIOCore
import SkywireWire

/// An `AppStream` backed by one stream of a `MuxConnection`. Event-loop bound.
///
/// Writes beyond what the session takes (peer window + its send buffer) wait here, and
/// `isWritable` turns false once `writeHighWatermark` bytes wait; nothing is offered to the
/// session while the link is over its high watermark (a peer that grants a large window and
/// does not read cannot grow the link's queue). Reads are delivered to the delegate and
/// acknowledged to the session (which returns window); while paused they wait here, bounded by
/// the window we granted. Both queues are `ByteQueue`s: tiny frames cost about their bytes.
final class MuxStream: AppStream {
    static let writeHighWatermark = 256 * 1024

    let id: MuxStreamID
    /// Strong: an app may keep (and call) a stream after its transport is gone; the connection
    /// drops its streams when the link closes, so there is no lasting cycle.
    private let connection: MuxConnection
    let eventLoop: EventLoop
    let localPort: UInt16
    let remotePort: UInt16
    private var delegate: AppStreamDelegate?
    private var accepted: Bool
    private var pendingWrites = ByteQueue()
    private var pendingBytes: Int { pendingWrites.bytes }
    private var finishRequested = false
    private var finishSent = false
    private var paused = false
    private var inbound = ByteQueue()
    private var remoteFinishPending = false
    /// The remote's FIN reached the delegate.
    private var remoteFinishDelivered = false
    private var ended = false
    private var reportedWritable = true
    /// Set by the app during routing: the connection accepts with a deferred OPEN_OK.
    private(set) var acceptanceDeferred = false
    /// Sends a deferred OPEN_OK that no reply took along; cancelled when the stream ends.
    var acceptanceTimer: Scheduled<Void>?

    init(id: MuxStreamID, connection: MuxConnection, localPort: UInt16, remotePort: UInt16, accepted: Bool) {
        self.id = id
        self.connection = connection
        self.eventLoop = connection.eventLoop
        self.localPort = localPort
        self.remotePort = remotePort
        self.accepted = accepted
    }

    var remoteKeyHex: String { connection.remoteHex }

    var isWritable: Bool { !ended && pendingBytes < Self.writeHighWatermark }

    var hasEnded: Bool { ended }

    /// Runs `body` on the stream's event loop: at once when already there, else hopped. Apps
    /// should call on the loop (AppStream's contract); a call from another thread must never
    /// touch the mux state concurrently.
    @inline(__always)
    private func onLoop(_ body: @escaping () -> Void) -> Bool {
        if eventLoop.inEventLoop { return false }
        let box = UnsafeTransfer(body)
        eventLoop.execute { box.value() }
        return true
    }

    func setDelegate(_ delegate: AppStreamDelegate?) {
        if onLoop({ self.setDelegate(delegate) }) { return }
        self.delegate = delegate
        if delegate != nil { drainInbound() }
    }

    func write(_ data: ByteBuffer) {
        if onLoop({ self.write(data) }) { return }
        guard !ended, !finishRequested, data.readableBytes > 0 else { return }
        // Nothing waiting: offer the bytes to the session at once, and queue only what it leaves
        // (a short request's writes never touch the queue).
        if accepted, pendingWrites.isEmpty, reportedWritable, connection.linkIsWritable,
           let taken = try? connection.session.write(id, data) {
            if taken == data.readableBytes {
                connection.scheduleFlush()
                return
            }
            var rest = data
            rest.moveReaderIndex(forwardBy: taken)
            pendingWrites.append(rest)
        } else {
            pendingWrites.append(data)
        }
        pump()
    }

    func finish() {
        if onLoop({ self.finish() }) { return }
        guard !ended, !finishRequested else { return }
        finishRequested = true
        // A FIN that only completes a stream the remote already finished is not waited for by anyone:
        // it may ride along with the connection's next frames (bounded, `MuxConnection.lazyFlushDelay`).
        pump(lazy: remoteFinishDelivered && pendingWrites.isEmpty)
    }

    func reset(_ code: AppStreamResetCode) {
        if onLoop({ self.reset(code) }) { return }
        guard !ended else { return }
        ended = true
        connection.session.reset(id, code: MuxErrorCode(rawValue: code.rawValue))
        connection.forget(id)
        connection.scheduleFlush()
        clear()
    }

    func deferAcceptance() {
        eventLoop.preconditionInEventLoop()
        if !accepted { acceptanceDeferred = true }
    }

    func setReadPaused(_ paused: Bool) {
        if onLoop({ self.setReadPaused(paused) }) { return }
        self.paused = paused
        if !paused { drainInbound() }
    }

    // MARK: From the connection

    func markAccepted() {
        accepted = true
        pump()
    }

    /// Offers waiting bytes to the session; reports writability changes to the delegate.
    func pump(lazy: Bool = false) {
        guard accepted, !ended else { return }
        // Over the link's high watermark nothing more is offered: `linkWritabilityChanged` pumps again.
        while connection.linkIsWritable, let first = pendingWrites.first {
            let taken: Int
            do {
                taken = try connection.session.write(id, first)
            } catch {
                break
            }
            if taken == first.readableBytes {
                _ = pendingWrites.popFirst()
            } else {
                pendingWrites.consumeFirst(taken)
                break
            }
        }
        if pendingWrites.isEmpty && finishRequested && !finishSent {
            finishSent = true
            try? connection.session.finish(id)
        }
        connection.scheduleFlush(lazy: lazy)
        let writable = isWritable
        if writable != reportedWritable {
            reportedWritable = writable
            delegate?.appStreamWritabilityChanged(self)
        } else if writable && !pendingWrites.isEmpty {
            // Still writable but the session is saturated: nothing to report yet.
        }
    }

    func deliver(_ data: ByteBuffer) {
        if paused || delegate == nil || !inbound.isEmpty {
            inbound.append(data)
            return
        }
        delegate?.appStream(self, didReceive: data)
        connection.session.consumed(id, data.readableBytes)
    }

    func deliverFinish() {
        if paused || delegate == nil || !inbound.isEmpty {
            remoteFinishPending = true
            return
        }
        remoteFinishDelivered = true
        delegate?.appStreamDidReceiveFinish(self)
    }

    func deliverReset(_ code: AppStreamResetCode) {
        guard !ended else { return }
        ended = true
        let d = delegate
        clear()
        d?.appStream(self, didResetWith: code)
    }

    /// Both directions finished; nothing more will happen on this stream.
    func released() {
        ended = true
        clear()
    }

    private func drainInbound() {
        while !paused, let d = delegate, let data = inbound.popFirst() {
            d.appStream(self, didReceive: data)
            connection.session.consumed(id, data.readableBytes)
        }
        if !paused, inbound.isEmpty, remoteFinishPending, let d = delegate {
            remoteFinishPending = false
            remoteFinishDelivered = true
            d.appStreamDidReceiveFinish(self)
        }
        connection.scheduleFlush()
    }

    private func clear() {
        acceptanceTimer?.cancel()
        acceptanceTimer = nil
        pendingWrites.removeAll()
        inbound.removeAll()
        delegate = nil
    }
}

/// Moves a non-Sendable value to the event loop that owns it.
struct UnsafeTransfer<T>: @unchecked Sendable {
    // @unchecked Sendable: the value is only used on the destination event loop.
    let value: T
    init(_ value: T) { self.value = value }
}
