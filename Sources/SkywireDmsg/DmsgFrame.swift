import NIOCore
import SkywireCrypto

/// A dmsg relay stream id (PROTOCOL.md §7): per client session, never 0; odd when the client
/// opens the stream, even when the relay does.
public typealias DmsgStreamID = UInt32

/// One relay frame (PROTOCOL.md §7.2), the plaintext of one Noise transport record between a
/// client and a relay server. DATA payloads are slices of the received record (no copy).
public enum DmsgFrame: Equatable, Sendable {
    /// Client → relay: open a stream to `peer`. Relay → client: `peer` (authenticated by the
    /// relay's handshake with it) opens a stream to this client. `window`: the DATA bytes the
    /// sender accepts before its first WINDOW.
    case open(stream: DmsgStreamID, peer: PublicKey, window: UInt32)
    case openOK(stream: DmsgStreamID, window: UInt32)
    case openReject(stream: DmsgStreamID, code: DmsgRejectCode)
    case data(stream: DmsgStreamID, payload: ByteBuffer)
    case window(stream: DmsgStreamID, increment: UInt32)
    /// Ends the stream both ways after the DATA sent before it.
    case close(stream: DmsgStreamID, code: DmsgCloseCode)
    case ping(UInt64)
    case pong(UInt64)
    /// Relay → client, right after the handshake: the relay does not serve this key; it closes
    /// the session after this frame (PROTOCOL.md §7.1).
    case refused(DmsgSessionRefusal)

    /// The type byte.
    public var type: DmsgFrameType {
        switch self {
        case .open: .open
        case .openOK: .openOK
        case .openReject: .openReject
        case .data: .data
        case .window: .window
        case .close: .close
        case .ping: .ping
        case .pong: .pong
        case .refused: .refused
        }
    }

    /// The stream the frame names; nil for PING, PONG and REFUSED.
    public var stream: DmsgStreamID? {
        switch self {
        case .open(let id, _, _), .openOK(let id, _), .openReject(let id, _), .data(let id, _),
             .window(let id, _), .close(let id, _): id
        case .ping, .pong, .refused: nil
        }
    }
}

/// Byte 0 of a relay frame (PROTOCOL.md §7.2).
public enum DmsgFrameType: UInt8, Sendable, CaseIterable {
    case open = 0x01
    case openOK = 0x02
    case openReject = 0x03
    case data = 0x04
    case window = 0x05
    case close = 0x06
    case ping = 0x07
    case pong = 0x08
    case refused = 0x09
}

/// Why a relay does not serve a client (REFUSED, PROTOCOL.md §7.1). Unknown codes are kept as `.other`.
public enum DmsgSessionRefusal: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The client's key is not on the relay's client list (`skywire-dmsg --clients`).
    case notListed
    /// The relay already serves its `--max-clients`.
    case full
    case other(UInt8)

    public init(rawValue: UInt8) {
        switch rawValue {
        case 1: self = .notListed
        case 2: self = .full
        default: self = .other(rawValue)
        }
    }

    public var rawValue: UInt8 {
        switch self {
        case .notListed: 1
        case .full: 2
        case .other(let raw): raw
        }
    }

    public var description: String {
        switch self {
        case .notListed: "the relay refused this key: it is not on the relay's client list"
        case .full: "the relay refused this key: it serves its maximum number of clients"
        case .other(let raw): "the relay refused this key (code \(raw))"
        }
    }
}

/// Why the relay (or the destination) did not open a stream (OPEN_REJECT, PROTOCOL.md §7.3).
/// Unknown codes from a peer are kept as `.other`.
public enum DmsgRejectCode: Equatable, Hashable, Sendable {
    /// The destination key has no session with this relay.
    case noSession
    /// The destination refused the stream.
    case refused
    /// A stream cap (the source's or the destination's) is reached.
    case limit
    /// The OPEN broke a rule (id parity or order).
    case protocolError
    /// The relay is shutting down.
    case shuttingDown
    case other(UInt8)

    public init(rawValue: UInt8) {
        switch rawValue {
        case 1: self = .noSession
        case 2: self = .refused
        case 3: self = .limit
        case 4: self = .protocolError
        case 5: self = .shuttingDown
        default: self = .other(rawValue)
        }
    }

    public var rawValue: UInt8 {
        switch self {
        case .noSession: 1
        case .refused: 2
        case .limit: 3
        case .protocolError: 4
        case .shuttingDown: 5
        case .other(let raw): raw
        }
    }

    /// The name in counters and logs.
    public var name: String {
        switch self {
        case .noSession: "no-session"
        case .refused: "refused"
        case .limit: "limit"
        case .protocolError: "protocol"
        case .shuttingDown: "shutting-down"
        case .other(let raw): "code-\(raw)"
        }
    }
}

/// Why a stream ended (CLOSE, PROTOCOL.md §7.3). Unknown codes are kept as `.other`.
public enum DmsgCloseCode: Equatable, Sendable {
    case normal
    /// The other side's session with the relay ended.
    case peerGone
    /// The relay's caps (idle, buffered bytes) ended it.
    case limit
    /// A side broke the flow-control or ordering rules.
    case protocolError
    case other(UInt8)

    public init(rawValue: UInt8) {
        switch rawValue {
        case 0: self = .normal
        case 1: self = .peerGone
        case 3: self = .limit
        case 4: self = .protocolError
        default: self = .other(rawValue)
        }
    }

    public var rawValue: UInt8 {
        switch self {
        case .normal: 0
        case .peerGone: 1
        case .limit: 3
        case .protocolError: 4
        case .other(let raw): raw
        }
    }
}

/// Sizes of the relay frames (PROTOCOL.md §7.2).
public enum DmsgFrameLayout {
    public static let typeSize = 1
    public static let streamIDSize = 4
    public static let openLength = typeSize + streamIDSize + PublicKey.byteCount + 4
    public static let openOKLength = typeSize + streamIDSize + 4
    public static let openRejectLength = typeSize + streamIDSize + 1
    public static let dataHeader = typeSize + streamIDSize
    public static let windowLength = typeSize + streamIDSize + 4
    public static let closeLength = typeSize + streamIDSize + 1
    public static let pingLength = typeSize + 8
    public static let refusedLength = typeSize + 1
    /// Largest DATA payload: a record of `dataHeader` + this + the 16-byte tag fits a 2-byte length.
    public static let maxDataPayload = 32 * 1024
}
