// Mux frames, PROTOCOL.md §5.

/// The one-byte frame type (§5 table).
public enum MuxFrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case open = 0x01
    case openOK = 0x02
    case openReject = 0x03
    case data = 0x04
    case window = 0x05
    case fin = 0x06
    case reset = 0x07
    case datagram = 0x08
    case ping = 0x09
    case pong = 0x0A
    case close = 0x0B

    public var description: String {
        switch self {
        case .open: "OPEN"
        case .openOK: "OPEN_OK"
        case .openReject: "OPEN_REJECT"
        case .data: "DATA"
        case .window: "WINDOW"
        case .fin: "FIN"
        case .reset: "RESET"
        case .datagram: "DATAGRAM"
        case .ping: "PING"
        case .pong: "PONG"
        case .close: "CLOSE"
        }
    }
}

/// A stream id (§5): odd for streams opened by the transport initiator, even for the responder, never 0.
public struct MuxStreamID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// True when the transport initiator's side opened this stream.
    public var isInitiatorParity: Bool { rawValue & 1 == 1 }

    public var description: String { String(rawValue) }
    public static func < (a: MuxStreamID, b: MuxStreamID) -> Bool { a.rawValue < b.rawValue }
}

/// OPEN_REJECT, RESET and CLOSE codes (§5). Unknown codes from a peer are kept as they are.
public struct MuxErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// CLOSE only: orderly shutdown.
    public static let normal = MuxErrorCode(rawValue: 0)
    public static let noSuchPort = MuxErrorCode(rawValue: 1)
    public static let forbidden = MuxErrorCode(rawValue: 2)
    public static let protocolError = MuxErrorCode(rawValue: 3)
    public static let tooManyStreams = MuxErrorCode(rawValue: 4)
    public static let appClosed = MuxErrorCode(rawValue: 5)
    public static let transportLost = MuxErrorCode(rawValue: 6)
    public static let refusedByApp = MuxErrorCode(rawValue: 7)

    public var description: String {
        switch rawValue {
        case 0: "normal"
        case 1: "no such port"
        case 2: "forbidden"
        case 3: "protocol error"
        case 4: "too many streams"
        case 5: "app closed"
        case 6: "transport lost"
        case 7: "refused by app"
        default: "code \(rawValue)"
        }
    }
}

/// One mux frame (§5). `Payload` is how DATA and DATAGRAM bodies are held: a `WirePayload` such as
/// `ArraySlice<UInt8>` for frames to send, or `Range<Int>` (offsets into the input) for frames decoded
/// with `decode(_:)`, which never copies payloads.
public enum MuxFrame<Payload> {
    case open(streamID: MuxStreamID, destinationPort: UInt16, sourcePort: UInt16, initialWindow: UInt32)
    case openOK(streamID: MuxStreamID, initialWindow: UInt32)
    case openReject(streamID: MuxStreamID, code: MuxErrorCode, reason: String)
    case data(streamID: MuxStreamID, payload: Payload)
    case window(streamID: MuxStreamID, increment: UInt32)
    case fin(streamID: MuxStreamID)
    case reset(streamID: MuxStreamID, code: MuxErrorCode)
    case datagram(destinationPort: UInt16, sourcePort: UInt16, payload: Payload)
    case ping(opaque: UInt64)
    case pong(opaque: UInt64)
    case close(code: MuxErrorCode, reason: String)

    public var type: MuxFrameType {
        switch self {
        case .open: .open
        case .openOK: .openOK
        case .openReject: .openReject
        case .data: .data
        case .window: .window
        case .fin: .fin
        case .reset: .reset
        case .datagram: .datagram
        case .ping: .ping
        case .pong: .pong
        case .close: .close
        }
    }

    /// The stream the frame belongs to, if any.
    public var streamID: MuxStreamID? {
        switch self {
        case .open(let id, _, _, _), .openOK(let id, _), .openReject(let id, _, _), .data(let id, _),
             .window(let id, _), .fin(let id), .reset(let id, _):
            id
        case .datagram, .ping, .pong, .close:
            nil
        }
    }

    /// The same frame with its payload transformed (e.g. decoded offsets into slices of the input).
    @inlinable
    public func mapPayload<T, E: Error>(_ transform: (Payload) throws(E) -> T) throws(E) -> MuxFrame<T> {
        switch self {
        case .open(let id, let dst, let src, let w): .open(streamID: id, destinationPort: dst, sourcePort: src, initialWindow: w)
        case .openOK(let id, let w): .openOK(streamID: id, initialWindow: w)
        case .openReject(let id, let c, let r): .openReject(streamID: id, code: c, reason: r)
        case .data(let id, let p): .data(streamID: id, payload: try transform(p))
        case .window(let id, let i): .window(streamID: id, increment: i)
        case .fin(let id): .fin(streamID: id)
        case .reset(let id, let c): .reset(streamID: id, code: c)
        case .datagram(let dst, let src, let p): .datagram(destinationPort: dst, sourcePort: src, payload: try transform(p))
        case .ping(let o): .ping(opaque: o)
        case .pong(let o): .pong(opaque: o)
        case .close(let c, let r): .close(code: c, reason: r)
        }
    }
}

extension MuxFrame: Equatable where Payload: Equatable {}
extension MuxFrame: Sendable where Payload: Sendable {}

/// Sizes fixed by §5.
public enum MuxFrameLayout {
    /// Type byte.
    public static let typeSize = 1
    public static let streamIDSize = 4
    public static let portSize = 2
    public static let windowSize = 4
    public static let codeSize = 1
    public static let opaqueSize = 8

    /// Whole-frame lengths of the fixed-size frames, type byte included.
    public static let openLength = typeSize + streamIDSize + 2 * portSize + windowSize      // 13
    public static let openOKLength = typeSize + streamIDSize + windowSize                   // 9
    public static let windowLength = typeSize + streamIDSize + windowSize                   // 9
    public static let finLength = typeSize + streamIDSize                                   // 5
    public static let resetLength = typeSize + streamIDSize + codeSize                      // 6
    public static let pingLength = typeSize + opaqueSize                                    // 9
    /// Headers before the variable part.
    public static let openRejectHeader = typeSize + streamIDSize + codeSize                 // 6
    public static let dataHeader = typeSize + streamIDSize                                  // 5
    public static let datagramHeader = typeSize + 2 * portSize                              // 5
    public static let closeHeader = typeSize + codeSize                                     // 2

    /// Longest OPEN_REJECT / CLOSE reason a sender emits (longer ones are accepted on receive).
    public static let maxReasonBytes = 200
    /// Largest DATA payload over stcpr and over sudph.
    public static let maxDataPayloadStcpr = 16 * 1024
    public static let maxDataPayloadSudph = 1200
    /// DATA bytes an opener may send before OPEN_OK and every acceptor buffers (§5 early data);
    /// windows announced in OPEN / OPEN_OK are never smaller.
    public static let earlyDataLimit = 16 * 1024
}
