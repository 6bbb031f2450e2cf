import NIOCore
import SkywireIO

/// Presents an `AppStream` that lives on one event loop (the inner stream's) on another one
/// (`eventLoop`): every call hops to the inner stream's loop, every delegate event hops back.
/// For code confined to one loop (e.g. a raw datapath on an `EpollEventLoop`) that gets a stream
/// on another (e.g. one carried by sudph on a NIO loop). Not for hot paths: two hops per write.
///
/// Back-pressure holds across the hop: `isWritable` is false while the inner stream reported
/// "not writable" or `maxBytesInFlight` or more written bytes have not reached it yet; while reads
/// are paused, events that already crossed wait here (bounded by the inner stream's window).
public final class HoppingAppStream: AppStream, @unchecked Sendable {
    // @unchecked Sendable: the properties under "Presented loop" are touched only on `eventLoop`,
    // `inner` and `proxy` only on the inner stream's loop; closures carry the object between them.

    /// Written bytes on their way to the inner stream above which `isWritable` is false.
    public static let maxBytesInFlight = 64 * 1024

    private enum Event {
        case data(ByteBuffer)
        case finish
        case reset(AppStreamResetCode)
    }

    public let eventLoop: EventLoop
    public let remoteKeyHex: String
    public let localPort: UInt16
    public let remotePort: UInt16

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
    public init(wrapping inner: AppStream, on loop: EventLoop) {
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

    public var isWritable: Bool { !closed && innerWritable && bytesInFlight < Self.maxBytesInFlight }

    public func setDelegate(_ delegate: AppStreamDelegate?) {
        eventLoop.preconditionInEventLoop()
        self.delegate = delegate
        deliver()
    }

    public func write(_ data: ByteBuffer) {
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

    public func finish() {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        innerLoop.execute { [self] in inner.finish() }
    }

    public func reset(_ code: AppStreamResetCode) {
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

    public func setReadPaused(_ paused: Bool) {
        eventLoop.preconditionInEventLoop()
        guard !closed, paused != readPaused else { return }
        readPaused = paused
        innerLoop.execute { [self] in inner.setReadPaused(paused) }
        if !paused { deliver() }
    }

    public func deferAcceptance() {
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
