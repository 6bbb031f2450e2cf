/// Reads big-endian fields from an app frame's payload; running short, or a string that is not
/// UTF-8, is a protocol error naming the frame type (`"<type>: payload too short"`).
struct AppPayloadReader<FrameType, Failure: AppProtocolError> {
    let bytes: ArraySlice<UInt8>
    let type: FrameType
    private(set) var offset: Int

    init(bytes: ArraySlice<UInt8>, type: FrameType) {
        self.bytes = bytes
        self.type = type
        offset = bytes.startIndex
    }

    var isAtEnd: Bool { offset == bytes.endIndex }
    var remaining: Int { bytes.endIndex - offset }

    /// The error for `problem` in this frame.
    func failure(_ problem: String) -> Failure { Failure("\(type): \(problem)") }

    mutating func take(_ n: Int) throws(Failure) -> ArraySlice<UInt8> {
        guard remaining >= n else { throw failure("payload too short") }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(Failure) -> T {
        try take(MemoryLayout<T>.size).reduce(T(0)) { $0 << 8 | T($1) }
    }

    mutating func u8() throws(Failure) -> UInt8 { try integer(UInt8.self) }
    mutating func u16() throws(Failure) -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws(Failure) -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws(Failure) -> UInt64 { try integer(UInt64.self) }

    /// `n` bytes of UTF-8; invalid UTF-8 is refused.
    mutating func utf8(_ n: Int) throws(Failure) -> String {
        guard let s = String(validating: try take(n), as: UTF8.self) else { throw failure("a string is not UTF-8") }
        return s
    }
}
