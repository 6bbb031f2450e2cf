#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// A connected, non-blocking stream socket (TCP or unix) on an `EpollEventLoop`: reads go to
/// `socketRead` (read(2), `readChunk` at a time, none while paused), writes are sent at once
/// (send(2) with MSG_NOSIGNAL) and only what the kernel does not take is queued; writes smaller
/// than `gatherBelow` are gathered until the loop's turn ends and sent with one send(2) (a burst
/// of sudph segments carries ~1.2 KB per mux frame). Behaves like a NIO
/// channel with half-closure allowed: EOF is reported as input closed, the descriptor closes once
/// both directions are done; writability follows NIO's default watermarks. Subclasses take the
/// events (`socketRead`, `socketInputClosed`, `socketWritabilityChanged`, `socketErrorCaught`,
/// `socketClosed`): the SOCKS apps' `RawStreamSocket`, the pty app's `SocketAppStream`. Owns the
/// descriptor; the loop's watch keeps the socket alive until it closes. Loop thread only.
open class RawStreamSocket {
    /// Largest read(2) per call.
    public static let readChunk = 16 * 1024
    /// Queued bytes at which the socket reports "not writable", and below which it is writable again
    /// (NIO's default `WriteBufferWaterMark`).
    public static let writeHighWater = 64 * 1024
    public static let writeLowWater = 32 * 1024
    /// Writes below this size wait for the end of the loop's turn (`gathered`); larger ones go at
    /// once. Gathering stops at `writeHighWater` bytes: those are sent right away.
    public static let gatherBelow = 4 * 1024

    /// The loop the socket is confined to; changes only through `move(to:then:)`.
    public private(set) var loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    /// Bytes the kernel has not taken yet.
    private var queue = CircularBuffer<ByteBuffer>()
    private var queuedBytes = 0
    /// Small writes of this loop turn, not yet offered to the kernel (counted in `queuedBytes`);
    /// empty, without storage of its own, whenever `queue` is not (the queue is written behind it).
    private var gathered = ByteBuffer()
    private var gatherFlushScheduled = false
    private var writable = true
    private var readsPaused = false
    private var inputClosed = false
    private var outputShut = false
    private var shutdownPending = false
    private var closePending = false
    /// A hang-up came while reads were paused: the descriptor is out of epoll (a level-triggered
    /// EPOLLHUP cannot be masked) until reads resume.
    private var parked = false
    private var interest: EpollEventLoop.Interest = .read
    private var closed: Bool { !descriptor.isOpen }

    /// Takes `socket` (connected, non-blocking) and starts reading. Call on `loop`.
    public init(loop: EpollEventLoop, socket: OwnedDescriptor) throws {
        self.loop = loop
        descriptor = socket
        try loop.watch(socket.raw, interest: .read) { readiness in self.ready(readiness) }
    }

    // MARK: Events, for subclasses (nothing by default)

    /// Bytes read.
    open func socketRead(_ buffer: ByteBuffer) {}
    /// EOF: the peer finished sending.
    open func socketInputClosed() {}
    /// Crossed the high-water mark (false) or back under the low one (true).
    open func socketWritabilityChanged(_ writable: Bool) {}
    /// An I/O error (reset, broken pipe), like NIO's errorCaught; the socket closes next.
    open func socketErrorCaught() {}
    /// The descriptor closed (after both directions ended, `close`, or an error).
    open func socketClosed() {}

    // MARK: Connection

    /// Not closed and under the high-water mark (or back under the low one).
    public var isSocketWritable: Bool { writable && !closed }

    public var localAddress: SocketAddress? { closed ? nil : RawTCPSocket.localAddress(descriptor.raw) }
    public var remoteAddress: SocketAddress? { closed ? nil : RawTCPSocket.peerAddress(descriptor.raw) }

    /// Hands the socket (and what its subclass holds) to `target`, the loop of the stream it will be
    /// piped to, so socket and pipe share one thread: on `loop`, the descriptor leaves its epoll set;
    /// on `target`, it joins target's with the same interest, then `then` runs there. Call on `loop`
    /// before a pipe is attached (a subclass then holds no timer). Level-triggered epoll reports
    /// on `target` whatever arrived in between.
    public func move(to target: EpollEventLoop, then: @escaping (RawStreamSocket) -> Void) {
        loop.preconditionInEventLoop()
        guard target !== loop else {
            then(self)
            return
        }
        sendGathered()
        gatherFlushScheduled = false
        let watched = !closed && !parked
        if watched { loop.unwatch(descriptor.raw) }
        loop = target
        let socket = LoopTransfer(value: self)
        let next = LoopTransfer(value: then)
        target.execute {
            if watched { socket.value.rewatch() }
            next.value(socket.value)
        }
    }

    /// On `loop` after a move: back in the epoll set with the interest the socket had.
    private func rewatch() {
        guard !closed else { return }
        do {
            try loop.watch(descriptor.raw, interest: interest) { readiness in self.ready(readiness) }
        } catch {
            fail()
        }
    }

    public func write(_ data: ByteBuffer) {
        guard !closed, !outputShut, !shutdownPending, !closePending, data.readableBytes > 0 else { return }
        if queue.isEmpty, gathered.readableBytes > 0 || data.readableBytes < Self.gatherBelow {
            gather(data)
            return
        }
        if queue.isEmpty {
            var data = data
            guard send(&data) else { return }
            if data.readableBytes == 0 { return }
            enqueue(data)
        } else {
            enqueue(data)
        }
        updateInterest()
    }

    public func writeAndClose(_ data: ByteBuffer) {
        write(data)
        sendGathered()
        guard !closed else { return }
        if queue.isEmpty { close() } else { closePending = true }
    }

    public func shutdownOutputWhenFlushed() {
        sendGathered()
        guard !closed, !outputShut else { return }
        if queue.isEmpty { shutDownOutput() } else { shutdownPending = true }
    }

    public func close() {
        guard !closed else { return }
        loop.unwatch(descriptor.raw)
        descriptor.close()
        queue.removeAll(keepingCapacity: true)  // no new storage for a socket that is going away
        gathered = ByteBuffer()
        queuedBytes = 0
        socketClosed()
    }

    public func setReadsPaused(_ paused: Bool) {
        guard paused != readsPaused, !closed else { return }
        readsPaused = paused
        if !paused && parked {
            parked = false
            do {
                try loop.watch(descriptor.raw, interest: .read) { readiness in self.ready(readiness) }
            } catch {
                fail()
                return
            }
            interest = .read
            updateInterest()
            readFromSocket()
            return
        }
        updateInterest()
    }

    // MARK: Readiness

    private func ready(_ readiness: EpollEventLoop.Readiness) {
        if readiness.writable || (readiness.hangup && !queue.isEmpty) { drain() }
        guard !closed else { return }
        if readiness.readable || readiness.hangup {
            if !readsPaused && !inputClosed {
                readFromSocket()
            } else if readiness.hangup {
                // Nothing will be read now and EPOLLHUP would be reported on every wait.
                if socketError() != 0 { fail(); return }
                parked = true
                loop.unwatch(descriptor.raw)
            }
        }
    }

    /// Reads what is there without waiting for epoll to report it (EAGAIN when nothing is).
    public func readNow() {
        readFromSocket()
    }

    private func readFromSocket() {
        while !closed && !inputClosed && !readsPaused {
            // Into the loop's shared read buffer: no allocation per read unless a consumer still
            // holds the previous read's bytes (then `clear` gives it fresh storage, uncopied).
            loop.readScratch.clear(minimumCapacity: Self.readChunk)
            let outcome: DescriptorRead
            do {
                outcome = try loop.readScratch.appendRead(from: descriptor.raw, count: Self.readChunk, call: "read")
            } catch {
                fail()
                return
            }
            switch outcome {
            case .wouldBlock:
                return
            case .endOfFile:
                inputClosed = true
                updateInterest()
                socketInputClosed()
                if outputShut { close() }
                return
            case .bytes(let count):
                socketRead(loop.readScratch)
                // A short read emptied the socket (level-triggered epoll reports anything later).
                if count < Self.readChunk { return }
            }
        }
    }

    private func drain() {
        while !closed, var head = queue.first {
            queue.removeFirst()
            queuedBytes -= head.readableBytes
            guard send(&head) else { return }
            if head.readableBytes > 0 {
                queue.prepend(head)
                queuedBytes += head.readableBytes
                break
            }
        }
        guard !closed else { return }
        if !writable && queuedBytes < Self.writeLowWater {
            writable = true
            socketWritabilityChanged(true)
            guard !closed else { return }
        }
        if queue.isEmpty {
            if closePending { close(); return }
            if shutdownPending { shutDownOutput(); return }
        }
        updateInterest()
    }

    /// send(2) of `data` (advancing it by what was taken); false when the socket failed (and closed).
    private func send(_ data: inout ByteBuffer) -> Bool {
        do {
            _ = try data.sendReadable(to: descriptor.raw, call: "send")
            return true
        } catch {
            fail()
            return false
        }
    }

    /// Appends a small write to `gathered` and sends it when the loop's turn ends (or at once
    /// when it reached `writeHighWater`).
    private func gather(_ data: ByteBuffer) {
        var data = data
        let count = data.readableBytes
        gathered.writeBuffer(&data)
        queuedBytes += count
        if gathered.readableBytes >= Self.writeHighWater {
            sendGathered()
            return
        }
        guard !gatherFlushScheduled else { return }
        gatherFlushScheduled = true
        let socket = LoopTransfer(value: self)      // on `loop`, queued for this same loop
        let owner = loop
        owner.execute {
            // Moved meanwhile (`move` sent what was gathered; `loop` changed on this thread).
            guard socket.value.loop === owner else { return }
            socket.value.gatherFlushScheduled = false
            socket.value.sendGathered()
        }
    }

    /// One send(2) of the gathered writes; what the kernel does not take joins the queue.
    private func sendGathered() {
        guard !closed, gathered.readableBytes > 0 else { return }
        // Taken out first: a failed send closes the socket, and `close` resets `gathered`,
        // which must not happen while `send` holds it inout (an exclusivity violation). The
        // fresh, empty buffer left behind also means an idle connection keeps no gathered
        // storage (10,000 open streams would otherwise hold up to `writeHighWater` each).
        var pending = gathered
        gathered = ByteBuffer()
        queuedBytes -= pending.readableBytes
        guard send(&pending) else { return }
        if pending.readableBytes > 0 { enqueue(pending) }
        if !writable && queuedBytes < Self.writeLowWater {
            writable = true
            socketWritabilityChanged(true)
            guard !closed else { return }
        }
        updateInterest()
    }

    private func enqueue(_ data: ByteBuffer) {
        queue.append(data)
        queuedBytes += data.readableBytes
        if writable && queuedBytes >= Self.writeHighWater {
            writable = false
            socketWritabilityChanged(false)
        }
    }

    private func shutDownOutput() {
        shutdownPending = false
        outputShut = true
        _ = Glibc.shutdown(descriptor.raw, Int32(SHUT_WR))
        if inputClosed { close() } else { updateInterest() }
    }

    private func updateInterest() {
        guard !closed, !parked else { return }
        var wanted: EpollEventLoop.Interest = []
        if !readsPaused && !inputClosed { wanted.insert(.read) }
        if !queue.isEmpty { wanted.insert(.write) }
        guard wanted != interest else { return }
        interest = wanted
        do { try loop.setInterest(descriptor.raw, wanted) } catch { fail() }
    }

    private func socketError() -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(descriptor.raw, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }

    /// An I/O error (reset, broken pipe): reported like NIO's errorCaught, then the socket closes.
    private func fail() {
        guard !closed else { return }
        socketErrorCaught()
        close()
    }
}
