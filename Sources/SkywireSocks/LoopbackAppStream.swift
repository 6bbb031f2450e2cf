import NIOCore
import SkywireTransport

/// An in-memory `AppStream` pair on one event loop, with mux-like flow control (docs/PROTOCOL.md §5):
/// a sender transmits at most the receiver's window; the receiver returns credit as its delegate
/// consumes data, and withholds it while reads are paused. Used by tests, by integration runs that
/// do not need a transport, and by the resolver to splice a connection to this visor's own SkyNet
/// server or to its upstream SOCKS5 server on one loop. Every method must be called on `eventLoop`.
public final class LoopbackAppStream: AppStream {
    public let eventLoop: EventLoop
    public let remoteKeyHex: String
    public let localPort: UInt16
    public let remotePort: UInt16

    /// Receive window announced to the peer (bytes it may send before credit returns).
    public let window: Int
    /// `isWritable` is false while this many bytes or more wait in the send queue.
    public let writeBufferLimit: Int
    /// Largest chunk delivered per `didReceive` (the mux's DATA payload limit over stcpr).
    public static let maxChunk = 16 * 1024

    /// Highest number of bytes ever waiting in the send queue (back-pressure measurements).
    public private(set) var peakQueuedBytes = 0
    /// Bytes written by this end's app in total.
    public private(set) var bytesWritten = 0
    /// How this end was aborted, if it was (by either side).
    public private(set) var resetCode: AppStreamResetCode?
    /// True once this end called `finish()`.
    public private(set) var finishedSending = false
    /// True once the peer's FIN was delivered to this end's delegate.
    public private(set) var finishReceived = false

    private weak var peer: LoopbackAppStream?
    private var delegate: AppStreamDelegate?
    private var sendQueue = CircularBuffer<ByteBuffer>()
    private var queuedBytes = 0
    private var credit: Int
    private var inbox = CircularBuffer<ByteBuffer>()
    private var inboxFIN = false
    private var readPaused = false
    private var pumpScheduled = false
    private var deliverScheduled = false
    private var lastReportedWritable = true
    private var closed = false
    /// Keeps the pair alive while either end is open (ends reference each other weakly).
    private var keepPeerAlive: LoopbackAppStream?

    private init(eventLoop: EventLoop, remoteKeyHex: String, localPort: UInt16, remotePort: UInt16,
                 window: Int, peerWindow: Int, writeBufferLimit: Int) {
        self.eventLoop = eventLoop
        self.remoteKeyHex = remoteKeyHex
        self.localPort = localPort
        self.remotePort = remotePort
        self.window = window
        self.credit = peerWindow
        self.writeBufferLimit = writeBufferLimit
    }

    /// Two connected ends: `opener` (as seen by the app that opened, talking to `acceptorKeyHex` at
    /// `acceptorPort`) and `acceptor` (the incoming stream, whose remote is `openerKeyHex`).
    public static func makePair(on eventLoop: EventLoop,
                                openerKeyHex: String = String(repeating: "a", count: 64),
                                acceptorKeyHex: String = String(repeating: "b", count: 64),
                                openerPort: UInt16 = 49_152, acceptorPort: UInt16 = 3,
                                window: Int = 256 * 1024,
                                writeBufferLimit: Int = 64 * 1024) -> (opener: LoopbackAppStream, acceptor: LoopbackAppStream) {
        let opener = LoopbackAppStream(eventLoop: eventLoop, remoteKeyHex: acceptorKeyHex, localPort: openerPort,
                                       remotePort: acceptorPort, window: window, peerWindow: window,
                                       writeBufferLimit: writeBufferLimit)
        let acceptor = LoopbackAppStream(eventLoop: eventLoop, remoteKeyHex: openerKeyHex, localPort: acceptorPort,
                                         remotePort: openerPort, window: window, peerWindow: window,
                                         writeBufferLimit: writeBufferLimit)
        opener.peer = acceptor
        acceptor.peer = opener
        opener.keepPeerAlive = acceptor
        acceptor.keepPeerAlive = opener
        return (opener, acceptor)
    }

    public var isWritable: Bool { !closed && queuedBytes < writeBufferLimit }

    public func setDelegate(_ delegate: AppStreamDelegate?) {
        eventLoop.preconditionInEventLoop()
        self.delegate = delegate
        scheduleDeliver()
    }

    public func write(_ data: ByteBuffer) {
        eventLoop.preconditionInEventLoop()
        guard !closed, !finishedSending, data.readableBytes > 0 else { return }
        sendQueue.append(data)
        queuedBytes += data.readableBytes
        bytesWritten += data.readableBytes
        peakQueuedBytes = max(peakQueuedBytes, queuedBytes)
        checkWritability()
        schedulePump()
    }

    public func finish() {
        eventLoop.preconditionInEventLoop()
        guard !closed, !finishedSending else { return }
        finishedSending = true
        schedulePump()
    }

    public func reset(_ code: AppStreamResetCode) {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        let peer = self.peer
        close(code: code, notify: false)
        if let peer, !peer.closed {
            eventLoop.assumeIsolated().execute { peer.close(code: code, notify: true) }
        }
    }

    public func setReadPaused(_ paused: Bool) {
        eventLoop.preconditionInEventLoop()
        readPaused = paused
        if !paused { scheduleDeliver() }
    }

    // MARK: - Transfer

    private func schedulePump() {
        guard !pumpScheduled else { return }
        pumpScheduled = true
        eventLoop.assumeIsolated().execute { self.pump() }
    }

    /// Moves queued bytes into the peer's inbox, up to the peer's window.
    private func pump() {
        pumpScheduled = false
        guard !closed, let peer, !peer.closed else { return }
        var moved = false
        while credit > 0, var head = sendQueue.first {
            let count = min(head.readableBytes, credit, Self.maxChunk)
            guard let slice = head.readSlice(length: count) else { break }
            if head.readableBytes == 0 { sendQueue.removeFirst() } else { sendQueue[sendQueue.startIndex] = head }
            credit -= count
            queuedBytes -= count
            peer.inbox.append(slice)
            moved = true
        }
        if finishedSending, sendQueue.isEmpty, !peer.inboxFIN {
            peer.inboxFIN = true
            moved = true
        }
        if moved { peer.scheduleDeliver() }
        checkWritability()
    }

    private func scheduleDeliver() {
        guard !deliverScheduled, !closed else { return }
        deliverScheduled = true
        eventLoop.assumeIsolated().execute { self.deliver() }
    }

    /// Hands inbox data to the delegate unless paused, returning credit to the sender. The delegate
    /// is read before every event: one that a callback sets (an opening handing the stream to its
    /// pipe) gets everything after it, FIN included.
    private func deliver() {
        deliverScheduled = false
        var consumed = 0
        while !readPaused, !closed, let delegate, let chunk = inbox.popFirst() {
            consumed += chunk.readableBytes
            delegate.appStream(self, didReceive: chunk)
        }
        if consumed > 0, let peer, !peer.closed {
            peer.credit += consumed
            peer.schedulePump()
        }
        if !readPaused, !closed, inbox.isEmpty, inboxFIN, !finishReceived, let delegate {
            finishReceived = true
            delegate.appStreamDidReceiveFinish(self)
        }
        if finishReceived, finishedSending, sendQueue.isEmpty { close(code: nil, notify: false) }
    }

    private func checkWritability() {
        let writable = isWritable
        guard writable != lastReportedWritable else { return }
        lastReportedWritable = writable
        if let delegate, !closed { delegate.appStreamWritabilityChanged(self) }
    }

    /// Ends this side; `code` nil means a clean finish in both directions.
    private func close(code: AppStreamResetCode?, notify: Bool) {
        guard !closed else { return }
        closed = true
        resetCode = code
        sendQueue.removeAll()
        inbox.removeAll()
        queuedBytes = 0
        let delegate = self.delegate
        self.delegate = nil
        keepPeerAlive = nil
        if notify, let code { delegate?.appStream(self, didResetWith: code) }
    }

    /// True once this end is closed (finished both ways or reset).
    public var isClosed: Bool { closed }
}
