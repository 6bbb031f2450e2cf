import NIOCore

/// Receives events of an `AppStream`. Every callback runs on the stream's event loop.
public protocol AppStreamDelegate: AnyObject {
    /// Bytes from the remote end, in order.
    func appStream(_ stream: AppStream, didReceive data: ByteBuffer)
    /// The remote end half-closed (sent FIN): no more data will arrive.
    func appStreamDidReceiveFinish(_ stream: AppStream)
    /// The stream was aborted (RESET, transport lost, or app closed); no more callbacks follow.
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode)
    /// `isWritable` changed; writers that paused should resume when it becomes true.
    func appStreamWritabilityChanged(_ stream: AppStream)
}

/// Why a stream ended abnormally (docs/PROTOCOL.md §5 codes).
public enum AppStreamResetCode: UInt8, Sendable, CustomStringConvertible {
    case noSuchPort = 1, forbidden = 2, protocolError = 3, tooManyStreams = 4
    case appClosed = 5, transportLost = 6, refused = 7

    public var description: String {
        switch self {
        case .noSuchPort: return "no such port"
        case .forbidden: return "forbidden"
        case .protocolError: return "protocol error"
        case .tooManyStreams: return "too many streams"
        case .appClosed: return "app closed"
        case .transportLost: return "transport lost"
        case .refused: return "refused by app"
        }
    }
}

/// A reliable, flow-controlled byte stream between two apps on two visors (a mux stream),
/// or a test double. All methods must be called on `eventLoop`.
///
/// Back-pressure: writers check `isWritable` and stop producing when it is false
/// (resuming on `appStreamWritabilityChanged`); readers call `setReadPaused(true)` to stop
/// granting the remote end more window, so a slow reader never buffers without bound.
public protocol AppStream: AnyObject {
    var eventLoop: EventLoop { get }
    /// The remote visor's public key as 64 lowercase hex characters.
    var remoteKeyHex: String { get }
    var localPort: UInt16 { get }
    var remotePort: UInt16 { get }
    var isWritable: Bool { get }

    func setDelegate(_ delegate: AppStreamDelegate?)
    /// Queues bytes; accepted even when not writable (bounded by the caller honouring `isWritable`).
    func write(_ data: ByteBuffer)
    /// Half-closes our direction (FIN).
    func finish()
    /// Aborts both directions (RESET).
    func reset(_ code: AppStreamResetCode)
    /// Stops (true) or resumes (false) delivering data and granting window to the remote end.
    func setReadPaused(_ paused: Bool)
    /// Called by an app while it takes an incoming stream: the stream's acceptance (mux OPEN_OK)
    /// leaves with the app's first reply instead of on its own (PROTOCOL.md §5, deferred OPEN_OK),
    /// for apps that always answer promptly. Default: no effect.
    func deferAcceptance()
}

extension AppStream {
    public func deferAcceptance() {}
}
