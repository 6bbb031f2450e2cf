/// The buffering of `AppFrameDecoder` (Skychat, PTY and update frames):
/// bytes fed in, whole frames taken from the front. Compacts once half of it was consumed.
/// Inlinable with the decoder, so that callers get it specialized.
@usableFromInline
struct FrameBuffer: Sendable {
    @usableFromInline var buffer: [UInt8] = []
    @usableFromInline var start = 0

    @inlinable init() {}

    /// Bytes held and not consumed.
    @inlinable var available: Int { buffer.count - start }

    @inlinable mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if start > 0, start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The byte at `offset` from the front; the caller has checked `offset < available`.
    @inlinable subscript(offset: Int) -> UInt8 { buffer[start + offset] }

    /// `count` bytes from `offset`, left in place; the caller has checked the range.
    @inlinable func bytes(at offset: Int, count: Int) -> ArraySlice<UInt8> { buffer[(start + offset)..<(start + offset + count)] }

    /// Drops `count` bytes from the front.
    @inlinable mutating func consume(_ count: Int) {
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
    }

    /// Drops everything (after an error).
    @inlinable mutating func clear() {
        buffer = []
        start = 0
    }
}
