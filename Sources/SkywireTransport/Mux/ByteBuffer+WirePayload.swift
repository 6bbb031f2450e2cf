import NIOCore
import SkywireWire

/// Lets `MuxSession` carry NIO buffers: slices share storage, so payloads are never copied.
extension ByteBuffer: WirePayload {
    public var count: Int { readableBytes }

    public func slice(_ range: Range<Int>) -> ByteBuffer {
        getSlice(at: readerIndex + range.lowerBound, length: range.count)!
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeReadableBytes(body)
    }
}
