#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport

/// An `AppStream` over a connected, non-blocking stream socket watched by an `EpollEventLoop`:
/// the pty app's unix socket to the session host (docs/pty.md "Session host"), on the loop of the
/// client's stream, so `AppStreamSplice` joins the two on one thread. Reads go to the delegate
/// (read(2), `readChunk` at a time, none while paused), writes are sent at once (send(2) with
/// MSG_NOSIGNAL) and only what the kernel does not take is queued; writability follows NIO's
/// default watermarks, so both directions stay bounded as over a NIO channel. FIN is a half-close
/// (EOF in, shutdown(2) out); the descriptor closes once both directions ended, on `reset` or on
/// an I/O error (reported as a `transportLost` reset). Owns the descriptor; the loop's watch keeps
/// the stream alive until it closes. Loop thread only.
final class SocketAppStream: AppStream {
    /// Largest read(2) per call.
    static let readChunk = 16 * 1024
    /// Queued bytes at which the stream reports "not writable", and below which it is writable
    /// again (NIO's default `WriteBufferWaterMark`).
    static let writeHighWater = 64 * 1024
    static let writeLowWater = 32 * 1024

    let loop: EpollEventLoop
    let remoteKeyHex: String
    let localPort: UInt16 = 0
    let remotePort: UInt16 = 0
    var eventLoop: EventLoop { loop }
    var isWritable: Bool { writable && !closed }

    private let descriptor: OwnedDescriptor
    private var delegate: AppStreamDelegate?
    private var queue = CircularBuffer<ByteBuffer>()
    private var queuedBytes = 0
    private var writable = true
    private var readsPaused = false
    private var inputClosed = false
    private var outputShut = false
    private var shutdownPending = false
    /// A hang-up came while reads were paused: the descriptor is out of epoll (a level-triggered
    /// EPOLLHUP cannot be masked) until reads resume.
    private var parked = false
    private var interest: EpollEventLoop.Interest = .read
    private var closed: Bool { !descriptor.isOpen }

    /// Takes `socket` (connected, non-blocking) and watches it on `loop`. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, remoteKeyHex: String) throws {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.remoteKeyHex = remoteKeyHex
        descriptor = socket
        try loop.watch(socket.raw, interest: .read) { readiness in self.ready(readiness) }
    }

    func setDelegate(_ delegate: AppStreamDelegate?) {
        self.delegate = delegate
    }

    func write(_ data: ByteBuffer) {
        guard !closed, !outputShut, !shutdownPending, data.readableBytes > 0 else { return }
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

    func finish() {
        guard !closed, !outputShut else { return }
        if queue.isEmpty { shutDownOutput() } else { shutdownPending = true }
    }

    func reset(_ code: AppStreamResetCode) {
        delegate = nil
        close()
    }

    func setReadPaused(_ paused: Bool) {
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
        guard !closed, readiness.readable || readiness.hangup else { return }
        if !readsPaused && !inputClosed {
            readFromSocket()
        } else if readiness.hangup {
            // Nothing is read now and EPOLLHUP would be reported on every wait.
            parked = true
            loop.unwatch(descriptor.raw)
        }
    }

    private func readFromSocket() {
        while !closed && !inputClosed && !readsPaused {
            var buffer = ByteBuffer()
            let outcome: DescriptorRead
            do {
                outcome = try buffer.appendRead(from: descriptor.raw, count: Self.readChunk, call: "read")
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
                delegate?.appStreamDidReceiveFinish(self)
                if outputShut { close() }
                return
            case .bytes(let count):
                delegate?.appStream(self, didReceive: buffer)
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
            delegate?.appStreamWritabilityChanged(self)
            guard !closed else { return }
        }
        if queue.isEmpty && shutdownPending {
            shutDownOutput()
            return
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

    private func enqueue(_ data: ByteBuffer) {
        queue.append(data)
        queuedBytes += data.readableBytes
        if writable && queuedBytes >= Self.writeHighWater {
            writable = false
            delegate?.appStreamWritabilityChanged(self)
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

    private func close() {
        guard !closed else { return }
        if !parked { loop.unwatch(descriptor.raw) }
        descriptor.close()
        queue.removeAll()
        queuedBytes = 0
        delegate = nil
    }

    /// An I/O error (reset, broken pipe): the delegate sees a reset, then the descriptor closes.
    private func fail() {
        guard !closed else { return }
        let delegate = self.delegate
        close()
        delegate?.appStream(self, didResetWith: .transportLost)
    }
}
