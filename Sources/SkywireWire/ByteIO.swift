// Big-endian reads and writes over raw buffers (PROTOCOL.md: all integers are network order).

extension UnsafeRawBufferPointer {
    /// Reads a big-endian integer at `offset`. The caller has checked `offset + size <= count`.
    @inline(__always)
    func readBigEndian<T: FixedWidthInteger>(at offset: Int, as _: T.Type = T.self) -> T {
        T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// A destination for encoded bytes: a growable `[UInt8]` or a fixed raw buffer.
protocol ByteSink {
    mutating func appendByte(_ byte: UInt8)
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer)
}

extension ByteSink {
    @inline(__always)
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.bigEndian
        withUnsafeBytes(of: &v) { appendBytes($0) }
    }

    @inline(__always)
    mutating func appendUTF8(_ string: String) {
        var s = string
        s.withUTF8 { appendBytes(UnsafeRawBufferPointer($0)) }
    }
}

extension Array: ByteSink where Element == UInt8 {
    @inline(__always)
    mutating func appendByte(_ byte: UInt8) { append(byte) }
    @inline(__always)
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
}

/// Writes into a caller-provided buffer; the caller has checked the capacity first.
struct RawBufferSink: ByteSink {
    let base: UnsafeMutableRawBufferPointer
    var position = 0

    init(_ base: UnsafeMutableRawBufferPointer) { self.base = base }

    @inline(__always)
    mutating func appendByte(_ byte: UInt8) {
        base[position] = byte
        position += 1
    }

    @inline(__always)
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let src = bytes.baseAddress, let dst = base.baseAddress else { return }
        (dst + position).copyMemory(from: src, byteCount: bytes.count)
        position += bytes.count
    }
}

/// A byte payload the mux layer can carry without copying: it knows its length, can be sliced and can
/// lend its bytes. `ArraySlice<UInt8>` conforms here; the transport adds a conformance for NIO buffers.
public protocol WirePayload {
    /// Number of bytes.
    var count: Int { get }
    /// The bytes in `range`, where `0` is this payload's first byte. `range` lies inside `0..<count`.
    func slice(_ range: Range<Int>) -> Self
    /// Lends the bytes for the duration of `body`.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension ArraySlice: WirePayload where Element == UInt8 {
    @inlinable
    public func slice(_ range: Range<Int>) -> ArraySlice<UInt8> {
        self[(startIndex + range.lowerBound)..<(startIndex + range.upperBound)]
    }
}
