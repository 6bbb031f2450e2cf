import NIOCore
import SkywireIO
import SkywireTransport

/// Presents an `AppStream` that lives on one event loop (the inner stream's, a datapath
/// `EpollEventLoop`) on another one (`eventLoop`): every call hops to the inner stream's loop,
/// every delegate event hops back. Its one user is the control socket's `stream.open` bridge
/// (`ControlStreamBridge`: a NIO channel of the control server, on a NIO loop, piped to a mux
/// stream). Not for hot paths: two hops per write; the datapath apps move their sockets to the
/// stream's loop instead (`RawSocksSocket.move`).
///
/// Back-pressure holds across the hop: `isWritable` is false while the inner stream reported
/// "not writable" or `maxBytesInFlight` or more written bytes have not reached it yet; while reads
/// are paused, events that already crossed wait here (bounded by the inner stream's window).
final class HoppingAppStream: AppStream, @unchecked Sendable {
    // @unchecked Sendable: the properties under "Presented loop" are touched only on `eventLoop`,
    // `inner` and `proxy` only on the inner stream's loop; closures carry the object between them.

    /// Written bytes on their way to the inner stream above which `isWritable` is false.
    static let maxBytesInFlight = 64 * 1024

    private enum Event {
        case data(ByteBuffer)
        case finish
        case reset(AppStreamResetCode)
    }

    let eventLoop: EventLoop
    let remoteKeyHex: String
    let localPort: UInt16
    let remotePort: UInt16

    private let inner: AppStream
    private let innerLoop: EventLoop
    private var proxy: Proxy?

    // Presented loop.
    private var delegate: AppStreamDelegate?
    private var inbox = CircularBuffer<Event>()
    private var readPaused = false
    private var innerWritable: Bool
    private var bytesInFlight = 0
    private var lastReportedWritable: Bool
    private var closed = false
    private var delivering = false

    /// Wraps `inner` and takes over its delegate at once (so nothing it reports is lost). Call on
    /// `inner.eventLoop`; afterwards use the wrapper only on `loop`.
    init(wrapping inner: AppStream, on loop: EventLoop) {
        inner.eventLoop.preconditionInEventLoop()
        self.inner = inner
        innerLoop = inner.eventLoop
        eventLoop = loop
        remoteKeyHex = inner.remoteKeyHex
        localPort = inner.localPort
        remotePort = inner.remotePort
        innerWritable = inner.isWritable
        lastReportedWritable = innerWritable
        let proxy = Proxy(outer: self)
        self.proxy = proxy
        inner.setDelegate(proxy)
    }

    var isWritable: Bool { !closed && innerWritable && bytesInFlight < Self.maxBytesInFlight }

    func setDelegate(_ delegate: AppStreamDelegate?) {
        eventLoop.preconditionInEventLoop()
        self.delegate = delegate
        deliver()
    }

    func write(_ data: ByteBuffer) {
        eventLoop.preconditionInEventLoop()
        let count = data.readableBytes
        guard !closed, count > 0 else { return }
        bytesInFlight += count
        reportWritability()
        innerLoop.execute { [self] in
            inner.write(data)
            let writable = inner.isWritable
            eventLoop.execute { [self] in
                bytesInFlight -= count
                innerWritable = writable
                reportWritability()
            }
        }
    }

    func finish() {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        innerLoop.execute { [self] in inner.finish() }
    }

    func reset(_ code: AppStreamResetCode) {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        closed = true
        inbox.removeAll()
        delegate = nil
        innerLoop.execute { [self] in
            inner.setDelegate(nil)
            proxy = nil
            inner.reset(code)
        }
    }

    func setReadPaused(_ paused: Bool) {
        eventLoop.preconditionInEventLoop()
        guard !closed, paused != readPaused else { return }
        readPaused = paused
        innerLoop.execute { [self] in inner.setReadPaused(paused) }
        if !paused { deliver() }
    }

    func deferAcceptance() {
        innerLoop.execute { [self] in inner.deferAcceptance() }
    }

    // MARK: Presented loop

    private func arrived(_ event: Event) {
        guard !closed else { return }
        inbox.append(event)
        deliver()
    }

    private func deliver() {
        guard !delivering else { return }
        delivering = true
        defer { delivering = false }
        while let delegate, !closed, let event = inbox.first {
            switch event {
            case .data(let data):
                guard !readPaused else { return }
                inbox.removeFirst()
                delegate.appStream(self, didReceive: data)
            case .finish:
                guard !readPaused else { return }
                inbox.removeFirst()
                delegate.appStreamDidReceiveFinish(self)
            case .reset(let code):
                closed = true
                inbox.removeAll()
                self.delegate = nil
                delegate.appStream(self, didResetWith: code)
            }
        }
    }

    private func innerWritabilityChanged(_ writable: Bool) {
        innerWritable = writable
        reportWritability()
    }

    private func reportWritability() {
        let writable = isWritable
        guard writable != lastReportedWritable else { return }
        lastReportedWritable = writable
        if !closed { delegate?.appStreamWritabilityChanged(self) }
    }

    /// The inner stream's delegate, on its loop: sends every event to the presented loop. Holds the
    /// wrapper weakly (its user keeps it; the wrapper keeps the proxy).
    private final class Proxy: AppStreamDelegate, @unchecked Sendable {
        // @unchecked Sendable: `outer` is a weak reference, used only through hops to its loop.
        private weak var outer: HoppingAppStream?

        init(outer: HoppingAppStream) { self.outer = outer }

        func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
            guard let outer else { return }
            outer.eventLoop.execute { outer.arrived(.data(data)) }
        }

        func appStreamDidReceiveFinish(_ stream: AppStream) {
            guard let outer else { return }
            outer.eventLoop.execute { outer.arrived(.finish) }
        }

        func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
            guard let outer else { return }
            outer.proxy = nil
            outer.eventLoop.execute { outer.arrived(.reset(code)) }
        }

        func appStreamWritabilityChanged(_ stream: AppStream) {
            guard let outer else { return }
            let writable = stream.isWritable
            outer.eventLoop.execute { outer.innerWritabilityChanged(writable) }
        }
    }
}
