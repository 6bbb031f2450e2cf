import NIOCore
import SkywireIO

/// A `LinkPipe` over a message-driven byte stream (a dmsg relay stream): the far end pushes
/// bytes in (`receive`), the link pulls them out (`read`), and writes go to `Sink`. Readiness is
/// level-triggered like epoll and reported on a later loop turn (never from inside `receive`, so
/// the link is not re-entered from its own writes). The inbox is bounded: above `inboxLimit`
/// unread bytes the sink is asked to stop delivering (`pauseReading`: a relay stream then
/// withholds its window credit) until the link has read it down to half. Loop-confined.
final class InboxPipe: LinkPipe {
    /// Where the link's bytes go.
    struct Sink {
        /// Takes what it can of the buffer's readable bytes; false when it took nothing.
        var write: (inout ByteBuffer) throws -> Bool
        /// Whether `write` would take bytes now (for `.write` readiness).
        var isWritable: () -> Bool
        var pauseReading: () -> Void
        var resumeReading: () -> Void
        /// The link closed the pipe.
        var close: () -> Void
    }

    /// Unread bytes above which the far end is paused: a few records of the largest size, so
    /// bulk data keeps flowing while the link reads in `RawStcprLink.maxReadBytesPerWake` bursts.
    static let defaultInboxLimit = 256 * 1024

    private let loop: EpollEventLoop
    private let sink: Sink
    private let inboxLimit: Int
    private var inbox = ByteBuffer()
    private var farEndClosed = false
    private var farEndPaused = false
    private var handler: ((LinkPipeReadiness) -> Void)?
    private var interest: EpollEventLoop.Interest = []
    private var wakeScheduled = false
    private(set) var isOpen = true
    /// A relay stream has no socket of its own (its relay session's socket is redialled instead).
    var localAddress: SocketAddress? { nil }

    init(loop: EpollEventLoop, sink: Sink, inboxLimit: Int = InboxPipe.defaultInboxLimit) {
        self.loop = loop
        self.sink = sink
        self.inboxLimit = inboxLimit
    }

    /// Unread bytes from the far end.
    var unreadBytes: Int { inbox.readableBytes }

    // MARK: From the far end

    /// Bytes from the far end, in order.
    func receive(_ bytes: ByteBuffer) {
        guard isOpen else { return }
        var bytes = bytes
        inbox.writeBuffer(&bytes)
        if !farEndPaused && inbox.readableBytes > inboxLimit {
            farEndPaused = true
            sink.pauseReading()
        }
        wake()
    }

    /// The far end closed (the link reads end of file once the inbox is drained).
    func receiveClose() {
        farEndClosed = true
        wake()
    }

    /// The sink takes bytes again.
    func sinkWritable() { wake() }

    // MARK: LinkPipe

    func start(interest: EpollEventLoop.Interest, _ handler: @escaping (LinkPipeReadiness) -> Void) throws {
        self.handler = handler
        self.interest = interest
        wake()
    }

    func setInterest(_ interest: EpollEventLoop.Interest) throws {
        self.interest = interest
        wake()
    }

    func read(into buffer: inout ByteBuffer, count: Int) throws -> DescriptorRead {
        guard inbox.readableBytes > 0 else { return farEndClosed ? .endOfFile : .wouldBlock }
        var slice = inbox.readSlice(length: min(count, inbox.readableBytes))!
        let n = slice.readableBytes
        buffer.writeBuffer(&slice)
        if inbox.readableBytes == 0 {
            inbox.clear()
        } else if inbox.readerIndex > inbox.capacity / 2 {
            inbox.discardReadBytes()
        }
        if farEndPaused && inbox.readableBytes <= inboxLimit / 2 {
            farEndPaused = false
            sink.resumeReading()
        }
        return .bytes(n)
    }

    func write(from buffer: inout ByteBuffer) throws -> Bool {
        guard isOpen, !farEndClosed else { throw TransportError(.closed, "relay stream closed") }
        return try sink.write(&buffer)
    }

    func close() {
        guard isOpen else { return }
        isOpen = false
        handler = nil
        inbox = ByteBuffer()
        sink.close()
    }

    // MARK: Readiness

    private var readable: Bool { interest.contains(.read) && (inbox.readableBytes > 0 || farEndClosed) }
    private var writable: Bool { interest.contains(.write) && sink.isWritable() }

    /// Reports readiness on a later loop turn while this end is ready for its interest.
    private func wake() {
        guard !wakeScheduled, isOpen, handler != nil else { return }
        wakeScheduled = true
        let me = LoopTransfer(value: self)
        loop.execute { me.value.deliver() }
    }

    private func deliver() {
        wakeScheduled = false
        guard isOpen, let handler else { return }
        let readiness = LinkPipeReadiness(readable: readable, writable: writable, hangup: farEndClosed)
        guard readiness.readable || readiness.writable || readiness.hangup else { return }
        handler(readiness)
        // Level-triggered: still ready after the handler (it reads a bounded amount per wake).
        if isOpen && (readable && inbox.readableBytes > 0 || writable) { wake() }
    }
}
