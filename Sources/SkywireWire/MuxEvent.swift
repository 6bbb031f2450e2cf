// What a MuxSession reports to its owner, and how the owner's calls can fail.

/// Events for the session's owner (the visor's app router), in the order they happened.
public enum MuxEvent<Payload> {
    /// The peer opened a stream: call `accept` or `reject`.
    case streamOpened(MuxStreamID, destinationPort: UInt16, sourcePort: UInt16)
    /// Our OPEN was accepted; buffered writes are flowing.
    case openAccepted(MuxStreamID)
    /// Our OPEN was refused; the stream is gone.
    case openRejected(MuxStreamID, code: MuxErrorCode, reason: String)
    /// In-order stream bytes. Call `consumed` once the app has taken them.
    case data(MuxStreamID, Payload)
    /// The peer sent FIN: no more data will arrive on this stream.
    case remoteFinished(MuxStreamID)
    /// Both sides sent FIN; the stream is released.
    case streamClosed(MuxStreamID)
    /// The stream was aborted: by the peer's RESET (`byPeer`), by a protocol violation we detected
    /// (code 3; we sent RESET), or by `closeAll`/CLOSE.
    case reset(MuxStreamID, code: MuxErrorCode, byPeer: Bool)
    /// A `write` that accepted less than offered can now accept more.
    case writable(MuxStreamID)
    case datagram(destinationPort: UInt16, sourcePort: UInt16, payload: Payload)
    case pong(opaque: UInt64)
    /// The connection is closing: the peer sent CLOSE (`byPeer`), or we did after too many protocol
    /// errors. Close the transport once outgoing frames are flushed.
    case closed(code: MuxErrorCode, reason: String, byPeer: Bool)
    /// A frame was dropped as invalid (§5: logged at `debug`).
    case protocolError(String)
}

extension MuxEvent: Equatable where Payload: Equatable {}
extension MuxEvent: Sendable where Payload: Sendable {}

/// Misuse of a MuxSession by its owner.
public enum MuxSessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case sessionClosed
    case unknownStream(MuxStreamID)
    case tooManyStreams(limit: Int)
    case streamIDsExhausted
    /// `accept`/`reject` on a stream that is not an incoming OPEN awaiting an answer.
    case notAwaitingAccept(MuxStreamID)
    /// `write` on an incoming stream not yet accepted.
    case notAccepted(MuxStreamID)
    /// `write` or `finish` after `finish`.
    case alreadyFinished(MuxStreamID)

    public var description: String {
        switch self {
        case .sessionClosed: "mux session is closed"
        case .unknownStream(let id): "no stream \(id)"
        case .tooManyStreams(let n): "stream limit \(n) reached"
        case .streamIDsExhausted: "stream ids exhausted on this connection"
        case .notAwaitingAccept(let id): "stream \(id) is not an incoming OPEN awaiting an answer"
        case .notAccepted(let id): "stream \(id) has not been accepted"
        case .alreadyFinished(let id): "stream \(id) already finished sending"
        }
    }
}

/// A snapshot of one stream's flow-control state.
public struct MuxStreamInfo: Equatable, Sendable {
    public enum Phase: Equatable, Sendable {
        /// We sent OPEN and await OPEN_OK.
        case opening
        /// The peer sent OPEN and awaits our answer.
        case awaitingAccept
        case open
    }

    public var phase: Phase
    /// Bytes the peer's window still lets us send.
    public var sendCredit: UInt64
    /// Bytes accepted by `write` and not yet sent as DATA.
    public var bufferedBytes: Int
    /// Bytes the peer may still send before exceeding the window we granted.
    public var receiveCredit: UInt64
    /// Bytes delivered as `.data` events and not yet reported by `consumed`.
    public var unconsumedBytes: UInt64
    public var localFinished: Bool
    public var remoteFinished: Bool
}
