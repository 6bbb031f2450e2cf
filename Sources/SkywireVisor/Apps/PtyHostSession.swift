import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem
import SkywireIO
import SkywireTransport
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// One session of the `pty` app, the stream's side (docs/pty.md): waits for the client's `open`,
/// then hands the session to a `PtySessionWorker` on its own thread and carries frames between
/// the two with back-pressure both ways. Confined to the stream's event loop.
final class PtyHostSession: AppStreamDelegate {
    private let stream: AppStream
    private let user: String
    private let logger: Logger
    /// Tracks the session's link while it runs (hung up when the app stops).
    private weak var app: PtyApp?
    private var onDone: (() -> Void)?
    private var decoder = PtyFrameDecoder()
    private var link: PtySessionLink?
    /// Bytes the worker sent that the stream took while not writable: released when it is again.
    private var heldOutbound = 0
    private var opened = false
    private let openTimeout: TimeAmount

    /// How long a client has to send `open` before the session is refused (a slot is held meanwhile).
    static let defaultOpenTimeout: TimeAmount = .seconds(10)

    init(stream: AppStream, user: String, logger: Logger, app: PtyApp?, openTimeout: TimeAmount = defaultOpenTimeout,
         onDone: @escaping () -> Void) {
        self.stream = stream
        self.user = user
        self.logger = logger
        self.app = app
        self.openTimeout = openTimeout
        self.onDone = onDone
    }

    func start() {
        stream.setDelegate(self)
        let transfer = LoopTransfer(value: self)
        stream.eventLoop.scheduleTask(in: openTimeout) {
            let session = transfer.value
            guard !session.opened, session.onDone != nil else { return }
            session.fail("no open frame within \(session.openTimeout.nanoseconds / 1_000_000_000) s")
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        // After the session ended, what the client still sends is read and dropped, so its FIN arrives.
        guard onDone != nil else { return }
        decoder.feed(data.readableBytesView)
        do {
            while let frame = try decoder.next() {
                if let link {
                    link.deliver(frame)
                } else {
                    try begin(with: frame)
                }
            }
        } catch {
            fail("\(error)")
            return
        }
        if let link, link.inputBacklogExceeded { stream.setReadPaused(true) }
        // Before `open` only one frame is needed: a client sending more is held to the decoder's bound.
    }

    /// The first frame must be `open`; it starts the worker.
    private func begin(with frame: PtyFrame) throws {
        guard case .open(let request) = frame else { throw PtyProtocolError("the first frame must be open, not \(frame.type)") }
        opened = true
        do {
            let link = try PtySessionLink(stream: stream, session: self)
            self.link = link
            app?.register(link)
            try PtySessionWorker(request: request, userName: user, peer: stream.remoteKeyHex, link: link, logger: logger).start()
        } catch {
            if let link { app?.unregister(link) }
            self.link = nil
            throw PtyProtocolError("cannot start the session: \(error)")
        }
    }

    /// Ends the stream with an `error` frame (never started, or a malformed frame).
    private func fail(_ message: String) {
        opened = true
        logger.warning("pty: session refused", metadata: ["pk": "\(stream.remoteKeyHex)", "error": "\(message)"])
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeBytes(PtyFrame.error(message).encoded)
        stream.write(buffer)
        stream.finish()
        link?.peerClosed()
        finishIfIdle()
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        link?.deliver(.eof)
        link?.peerClosed()
        finishIfIdle()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        link?.peerClosed()
        finishIfIdle()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        guard stream.isWritable, heldOutbound > 0 else { return }
        link?.releaseOutbound(heldOutbound)
        heldOutbound = 0
    }

    // MARK: called by the link, on the loop

    func write(_ bytes: [UInt8]) {
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        stream.write(buffer)
        if stream.isWritable { link?.releaseOutbound(bytes.count) } else { heldOutbound += bytes.count }
    }

    func resumeReads() { stream.setReadPaused(false) }

    /// The worker is done: the stream half-closes after the last frame.
    func workerFinished() {
        stream.finish()
        if let link { app?.unregister(link) }
        link = nil
        finishIfIdle()
    }

    /// Calls `onDone` once: the worker ended (or never started).
    private func finishIfIdle() {
        guard link == nil, let done = onDone else { return }
        onDone = nil
        // Our direction ends too (a client that closed before `open` gets its FIN answered), and
        // reads resume (paused by a stdin backlog, they would hold the client's FIN back for ever):
        // the stream ends, and drops its delegate, once both sides finished.
        stream.finish()
        stream.setReadPaused(false)
        done()
    }
}

/// What the stream's side and the worker thread share (docs/pty.md, "Back-pressure"): frames
/// from the client, bytes on their way to the stream, and whether the client is gone.
final class PtySessionLink: @unchecked Sendable {
    // @unchecked Sendable: `inbox`, `inputBacklog`, `outboundInFlight`, `gone` and `readsPaused`
    // are guarded by `lock`; `session` is touched only on `loop` (every use hops there).
    /// Client bytes (queued frames and stdin not yet written to the command) above which the stream stops reading.
    static let maxInputBacklog = 256 * 1024
    /// Bytes sent towards the stream and not yet taken by it above which the worker stops reading its command.
    static let maxOutboundInFlight = 256 * 1024

    private let lock = NIOLock()
    private var inbox: [PtyFrame] = []
    private var inputBacklog = 0
    private var outboundInFlight = 0
    private var gone = false
    private var readsPaused = false
    let wake: OwnedDescriptor
    private let loop: EventLoop
    private let session: PtyHostSession

    init(stream: AppStream, session: PtyHostSession) throws {
        loop = stream.eventLoop
        self.session = session
        wake = try SessionProcess.makeWakeDescriptor()
    }

    private func signalWorker() {
        var one: UInt64 = 1
        _ = write(wake.raw, &one, MemoryLayout<UInt64>.size)
    }

    /// Loop side: a frame from the client.
    func deliver(_ frame: PtyFrame) {
        let size: Int
        if case .stdin(let bytes) = frame { size = bytes.count } else { size = 0 }
        lock.withLock {
            inbox.append(frame)
            inputBacklog += size
        }
        signalWorker()
    }

    /// Loop side: whether the stream should stop reading (and it is now marked paused).
    var inputBacklogExceeded: Bool {
        lock.withLock {
            guard inputBacklog > Self.maxInputBacklog || inbox.count > Self.maxInputBacklog / PtyProtocol.headerLength else { return false }
            readsPaused = true
            return true
        }
    }

    func peerClosed() {
        lock.withLock { gone = true }
        signalWorker()
    }

    /// Loop side: `count` bytes reached the stream.
    func releaseOutbound(_ count: Int) {
        let wasBlocked: Bool = lock.withLock {
            let before = outboundInFlight >= Self.maxOutboundInFlight
            outboundInFlight -= count
            return before && outboundInFlight < Self.maxOutboundInFlight
        }
        if wasBlocked { signalWorker() }
    }

    // MARK: worker side

    /// The frames that arrived, and whether the client is gone.
    func take() -> (frames: [PtyFrame], gone: Bool) {
        lock.withLock {
            defer { inbox.removeAll(keepingCapacity: true) }
            return (inbox, gone)
        }
    }

    /// `count` stdin bytes were written to the command (or file): resumes the stream's reads
    /// once the backlog fell to half the bound.
    func consumedInput(_ count: Int) {
        let resume: Bool = lock.withLock {
            inputBacklog -= count
            guard readsPaused, inputBacklog < Self.maxInputBacklog / 2 else { return false }
            readsPaused = false
            return true
        }
        if resume { loop.execute { [session] in session.resumeReads() } }
    }

    var canSend: Bool { lock.withLock { outboundInFlight < Self.maxOutboundInFlight && !gone } }
    var isGone: Bool { lock.withLock { gone } }

    /// Sends encoded frames towards the client (hops to the loop).
    func send(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        lock.withLock { outboundInFlight += bytes.count }
        loop.execute { [session] in session.write(bytes) }
    }

    func finished() {
        loop.execute { [session] in session.workerFinished() }
    }
}
