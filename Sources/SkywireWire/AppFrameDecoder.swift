// Incremental decoding of the length-prefixed app frames (Skychat, PTY, update; PROTOCOL.md §6):
// `[version:u8] | type:u8 | length:uN big-endian | payload[length]`, one generic decoder for the
// three layouts.

/// The error type of an app frame codec (Skychat, PTY, update): one message naming the problem.
public protocol AppProtocolError: Error {
    init(_ message: String)
}

extension ChatProtocolError: AppProtocolError {}
extension PtyProtocolError: AppProtocolError {}
extension UpdateProtocolError: AppProtocolError {}

/// The header of one app frame format: an optional version byte, the type byte, then a
/// big-endian length of `lengthBytes`, checked against `maxPayload` from the header alone.
public struct AppFrameHeader: Sendable {
    /// Which of an unknown type and an oversized length is named when a header has both.
    public enum CheckOrder: Sendable {
        /// Version, type, then length (Skychat, update).
        case typeThenLength
        /// Length, then type (PTY).
        case lengthThenType
    }

    /// The first byte of every frame; nil: the header starts with the type (PTY).
    public let version: UInt8?
    /// Width of the length field after the type byte.
    public let lengthBytes: Int
    /// The largest payload; a header announcing more is refused before its payload arrives.
    public let maxPayload: Int
    /// The version, when there is one, is always checked first.
    public let order: CheckOrder

    @inlinable var typeOffset: Int { version == nil ? 0 : 1 }
    @inlinable var lengthOffset: Int { typeOffset + 1 }
    /// Bytes before the payload.
    @inlinable public var length: Int { lengthOffset + lengthBytes }
}

/// A frame type `AppFrameDecoder` reads: its header layout, and the decoding of one payload whose
/// type the header already showed to be known.
public protocol AppFrame: Sendable {
    associatedtype FrameType: RawRepresentable<UInt8>
    associatedtype Failure: AppProtocolError
    static var frameHeader: AppFrameHeader { get }
    /// One payload of type `type`; refuses a malformed payload.
    static func decode(type: FrameType, payload: ArraySlice<UInt8>) throws(Failure) -> Self
}

/// Splits a byte stream into frames (`ChatFrameDecoder`, `PtyFrameDecoder`, `UpdateFrameDecoder`).
/// Holds at most one partial frame (header + `maxPayload`) plus what one `feed` brought. A wrong
/// version, an unknown type or a length over `maxPayload` is refused once the header is whole,
/// before the payload arrives. After an error every call throws it again, and nothing is buffered.
/// Inlinable, so that each caller gets it specialized for its frame type (unspecialized, a small
/// frame took 3-5 times as long).
public struct AppFrameDecoder<Frame: AppFrame>: Sendable {
    @usableFromInline var buffer = FrameBuffer()
    @usableFromInline var failed: Frame.Failure?

    @inlinable public init() {}

    /// Bytes held that do not make a whole frame yet.
    @inlinable public var bufferedBytes: Int { buffer.available }

    @inlinable public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard failed == nil else { return }
        buffer.feed(bytes)
    }

    /// The next whole frame, nil when more bytes are needed.
    @inlinable public mutating func next() throws(Frame.Failure) -> Frame? {
        if let failed { throw failed }
        do throws(Frame.Failure) {
            let header = Frame.frameHeader
            let available = buffer.available
            guard available >= header.length else { return nil }
            if let version = header.version, buffer[0] != version {
                throw Frame.Failure("protocol version \(buffer[0]), expected \(version)")
            }
            let rawType = buffer[header.typeOffset]
            let length = (header.lengthOffset..<header.length).reduce(0) { $0 << 8 | Int(buffer[$1]) }
            if header.order == .lengthThenType { try Self.check(length, header) }
            guard let type = Frame.FrameType(rawValue: rawType) else {
                throw Frame.Failure("unknown frame type 0x\(String(rawType, radix: 16))")
            }
            if header.order == .typeThenLength { try Self.check(length, header) }
            guard available >= header.length + length else { return nil }
            let frame = try Frame.decode(type: type, payload: buffer.bytes(at: header.length, count: length))
            buffer.consume(header.length + length)
            return frame
        } catch {
            failed = error
            buffer.clear()
            throw error
        }
    }

    /// The bytes after the last frame returned; empties the decoder. For a stream that turns to
    /// raw bytes after a frame (update's `getOK`), which the caller then no longer feeds here.
    @inlinable public mutating func takeRemainder() -> [UInt8] {
        let out = Array(buffer.bytes(at: 0, count: buffer.available))
        buffer.clear()
        return out
    }

    @inlinable static func check(_ length: Int, _ header: AppFrameHeader) throws(Frame.Failure) {
        guard length <= header.maxPayload else { throw Frame.Failure("frame of \(length) bytes, at most \(header.maxPayload)") }
    }
}
