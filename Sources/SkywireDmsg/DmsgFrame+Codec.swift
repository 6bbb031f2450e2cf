import NIOCore
import SkywireCrypto

/// Why bytes are not a relay frame (PROTOCOL.md §7.2).
public enum DmsgFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case unknownType(UInt8)
    /// A fixed-size frame of another length, or a DATA frame outside 1...maxDataPayload bytes of payload.
    case wrongLength(DmsgFrameType, length: Int)
    case zeroStreamID(DmsgFrameType)
    case zeroWindowIncrement
    /// OPEN's key is not an Ed25519 point (`crypto_sign_ed25519_pk_to_curve25519` fails).
    case invalidKey

    public var description: String {
        switch self {
        case .empty: "empty relay frame"
        case .unknownType(let t): "unknown relay frame type 0x\(String(t, radix: 16))"
        case .wrongLength(let t, let n): "relay \(t) frame of \(n) bytes"
        case .zeroStreamID(let t): "relay \(t) frame names stream 0"
        case .zeroWindowIncrement: "relay WINDOW frame with a zero increment"
        case .invalidKey: "relay OPEN frame names an invalid key"
        }
    }
}

extension DmsgFrame {
    /// Decodes one whole frame (a record's plaintext). DATA's payload is a slice of `bytes`.
    /// Malformed input throws; nothing traps.
    public static func decode(_ bytes: ByteBuffer) throws(DmsgFrameError) -> DmsgFrame {
        typealias L = DmsgFrameLayout
        let n = bytes.readableBytes
        let at = bytes.readerIndex
        guard let raw = bytes.getInteger(at: at, as: UInt8.self) else { throw .empty }
        guard let type = DmsgFrameType(rawValue: raw) else { throw .unknownType(raw) }
        func exactly(_ length: Int) throws(DmsgFrameError) {
            guard n == length else { throw .wrongLength(type, length: n) }
        }
        func u32(_ offset: Int) -> UInt32 { bytes.getInteger(at: at + offset, as: UInt32.self) ?? 0 }
        func streamID() throws(DmsgFrameError) -> DmsgStreamID {
            let id = u32(L.typeSize)
            guard id != 0 else { throw .zeroStreamID(type) }
            return id
        }
        let body = L.typeSize + L.streamIDSize
        switch type {
        case .open:
            try exactly(L.openLength)
            let id = try streamID()
            guard let keyBytes = bytes.getBytes(at: at + body, length: PublicKey.byteCount),
                  let key = try? PublicKey(bytes: keyBytes) else { throw .invalidKey }
            return .open(stream: id, peer: key, window: u32(body + PublicKey.byteCount))
        case .openOK:
            try exactly(L.openOKLength)
            return .openOK(stream: try streamID(), window: u32(body))
        case .openReject:
            try exactly(L.openRejectLength)
            return .openReject(stream: try streamID(), code: DmsgRejectCode(rawValue: bytes.getInteger(at: at + body) ?? 0))
        case .data:
            guard n > L.dataHeader, n <= L.dataHeader + L.maxDataPayload else { throw .wrongLength(type, length: n) }
            let id = try streamID()
            guard let payload = bytes.getSlice(at: at + L.dataHeader, length: n - L.dataHeader) else {
                throw .wrongLength(type, length: n)
            }
            return .data(stream: id, payload: payload)
        case .window:
            try exactly(L.windowLength)
            let id = try streamID()
            let increment = u32(body)
            guard increment > 0 else { throw .zeroWindowIncrement }
            return .window(stream: id, increment: increment)
        case .close:
            try exactly(L.closeLength)
            return .close(stream: try streamID(), code: DmsgCloseCode(rawValue: bytes.getInteger(at: at + body) ?? 0))
        case .ping, .pong:
            try exactly(L.pingLength)
            let opaque = bytes.getInteger(at: at + L.typeSize, as: UInt64.self) ?? 0
            return type == .ping ? .ping(opaque) : .pong(opaque)
        case .refused:
            try exactly(L.refusedLength)
            return .refused(DmsgSessionRefusal(rawValue: bytes.getInteger(at: at + L.typeSize) ?? 0))
        }
    }

    /// Exact encoded length, type byte included.
    public var encodedLength: Int {
        typealias L = DmsgFrameLayout
        switch self {
        case .open: return L.openLength
        case .openOK: return L.openOKLength
        case .openReject: return L.openRejectLength
        case .data(_, let payload): return L.dataHeader + payload.readableBytes
        case .window: return L.windowLength
        case .close: return L.closeLength
        case .ping, .pong: return L.pingLength
        case .refused: return L.refusedLength
        }
    }

    /// Appends the encoded frame to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeInteger(type.rawValue)
        switch self {
        case .open(let id, let peer, let window):
            buffer.writeInteger(id)
            buffer.writeBytes(peer.bytes)
            buffer.writeInteger(window)
        case .openOK(let id, let window):
            buffer.writeInteger(id)
            buffer.writeInteger(window)
        case .openReject(let id, let code):
            buffer.writeInteger(id)
            buffer.writeInteger(code.rawValue)
        case .data(let id, let payload):
            buffer.writeInteger(id)
            buffer.writeImmutableBuffer(payload)
        case .window(let id, let increment):
            buffer.writeInteger(id)
            buffer.writeInteger(increment)
        case .close(let id, let code):
            buffer.writeInteger(id)
            buffer.writeInteger(code.rawValue)
        case .ping(let opaque), .pong(let opaque):
            buffer.writeInteger(opaque)
        case .refused(let code):
            buffer.writeInteger(code.rawValue)
        }
    }

    /// A freshly allocated encoding (tests and control paths).
    public var encoded: ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: encodedLength)
        encode(into: &out)
        return out
    }
}
