// Records inside sudph data packets, PROTOCOL.md §4.4.

/// The record kind byte.
public enum SudphRecordKind: UInt8, Sendable, CustomStringConvertible {
    case unreliable = 0x01
    case segment = 0x02
    case ack = 0x03

    public var description: String {
        switch self {
        case .unreliable: "UNRELIABLE"
        case .segment: "SEGMENT"
        case .ack: "ACK"
        }
    }
}

/// A run of segments received out of order: `start` inclusive, `end` exclusive (serial arithmetic).
public struct SackBlock: Equatable, Hashable, Sendable {
    public var start: UInt32
    public var end: UInt32
    public init(start: UInt32, end: UInt32) {
        self.start = start
        self.end = end
    }
}

/// The body of an ACK record.
public struct SudphAck: Equatable, Sendable {
    /// The next sequence number expected in order.
    public var cumulative: UInt32
    /// Segments the receiver accepts: those `s` with `0 <= s - cumulative < window`.
    public var window: UInt32
    /// At most `SudphRecordLayout.maxSackBlocks`, each non-empty and above `cumulative`.
    public var sackBlocks: [SackBlock]

    public init(cumulative: UInt32, window: UInt32, sackBlocks: [SackBlock] = []) {
        self.cumulative = cumulative
        self.window = window
        self.sackBlocks = sackBlocks
    }
}

/// Sizes fixed by §4.4.
public enum SudphRecordLayout {
    public static let kindSize = 1
    public static let seqSize = 4
    public static let maxSackBlocks = 16
    public static let sackBlockSize = 8
    /// Kind, seq; the frame follows (at least one byte).
    public static let segmentHeaderSize = kindSize + seqSize                      // 5
    public static let unreliableHeaderSize = kindSize                             // 1
    /// Kind, cum, wnd, k.
    public static let ackHeaderSize = kindSize + 4 + 4 + 1                        // 10
    public static let maxAckSize = ackHeaderSize + maxSackBlocks * sackBlockSize  // 138
    /// Largest mux frame in a SEGMENT (a DATA frame with 1200 payload bytes is 1205).
    public static let maxSegmentFrameSize = 1400
}

/// Why a decrypted plaintext is not a valid record.
public enum SudphRecordError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An empty plaintext is a keepalive, not a record: callers test for it first.
    case empty
    case unknownKind(UInt8)
    case truncated(SudphRecordKind, length: Int, minimum: Int)
    /// UNRELIABLE or SEGMENT with no frame bytes.
    case emptyFrame(SudphRecordKind)
    case tooManySackBlocks(Int)
    /// An ACK whose length does not match its block count.
    case wrongAckLength(length: Int, expected: Int)
    /// A SACK block that is empty or not above `cum` (serial arithmetic).
    case invalidSackBlock(SackBlock, cumulative: UInt32)

    public var description: String {
        switch self {
        case .empty: "empty record"
        case .unknownKind(let k): "unknown record kind 0x\(String(k, radix: 16))"
        case .truncated(let k, let n, let min): "\(k) record truncated: \(n) bytes, at least \(min) needed"
        case .emptyFrame(let k): "\(k) record carries no frame"
        case .tooManySackBlocks(let k): "ACK record has \(k) SACK blocks, at most \(SudphRecordLayout.maxSackBlocks) allowed"
        case .wrongAckLength(let n, let exp): "ACK record has \(n) bytes, expected \(exp)"
        case .invalidSackBlock(let b, let cum): "SACK block [\(b.start), \(b.end)) is empty or not above cum \(cum)"
        }
    }
}

/// A decoded record. Frame ranges point into the decoded bytes.
public enum SudphRecord: Equatable, Sendable {
    case unreliable(frame: Range<Int>)
    case segment(seq: UInt32, frame: Range<Int>)
    case ack(SudphAck)

    /// Decodes one record (a data packet's whole plaintext). ACKs without SACK blocks do not allocate.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(SudphRecordError) -> SudphRecord {
        typealias L = SudphRecordLayout
        let n = bytes.count
        guard n >= 1 else { throw .empty }
        guard let kind = SudphRecordKind(rawValue: bytes[0]) else { throw .unknownKind(bytes[0]) }
        switch kind {
        case .unreliable:
            guard n > L.unreliableHeaderSize else { throw .emptyFrame(kind) }
            return .unreliable(frame: L.unreliableHeaderSize..<n)
        case .segment:
            guard n >= L.segmentHeaderSize else { throw .truncated(kind, length: n, minimum: L.segmentHeaderSize) }
            guard n > L.segmentHeaderSize else { throw .emptyFrame(kind) }
            return .segment(seq: bytes.readBigEndian(at: L.kindSize), frame: L.segmentHeaderSize..<n)
        case .ack:
            guard n >= L.ackHeaderSize else { throw .truncated(kind, length: n, minimum: L.ackHeaderSize) }
            let cum: UInt32 = bytes.readBigEndian(at: 1)
            let wnd: UInt32 = bytes.readBigEndian(at: 5)
            let k = Int(bytes[9])
            guard k <= L.maxSackBlocks else { throw .tooManySackBlocks(k) }
            let expected = L.ackHeaderSize + k * L.sackBlockSize
            guard n == expected else { throw .wrongAckLength(length: n, expected: expected) }
            var blocks: [SackBlock] = []
            if k > 0 {
                blocks.reserveCapacity(k)
                for i in 0..<k {
                    let at = L.ackHeaderSize + i * L.sackBlockSize
                    let block = SackBlock(start: bytes.readBigEndian(at: at), end: bytes.readBigEndian(at: at + 4))
                    // Non-empty and strictly above cum: 0 < start - cum < end - cum < 2^31.
                    let s = block.start &- cum, e = block.end &- cum
                    guard s > 0, s < e, e < SerialNumber.half else {
                        throw .invalidSackBlock(block, cumulative: cum)
                    }
                    blocks.append(block)
                }
            }
            return .ack(SudphAck(cumulative: cum, window: wnd, sackBlocks: blocks))
        }
    }

    /// Appends an UNRELIABLE record header (the frame follows).
    public static func appendUnreliableHeader(to buffer: inout [UInt8]) {
        buffer.append(SudphRecordKind.unreliable.rawValue)
    }

    /// Appends a SEGMENT record header (the frame follows).
    public static func appendSegmentHeader(seq: UInt32, to buffer: inout [UInt8]) {
        buffer.append(SudphRecordKind.segment.rawValue)
        buffer.appendBigEndian(seq)
    }
}

extension SudphAck {
    /// Encoded length: 10 + 8 per block.
    public var encodedLength: Int {
        SudphRecordLayout.ackHeaderSize + sackBlocks.count * SudphRecordLayout.sackBlockSize
    }

    /// Appends the whole ACK record. Only the first 16 blocks are written.
    public func encode(into buffer: inout [UInt8]) {
        let k = min(sackBlocks.count, SudphRecordLayout.maxSackBlocks)
        buffer.append(SudphRecordKind.ack.rawValue)
        buffer.appendBigEndian(cumulative)
        buffer.appendBigEndian(window)
        buffer.append(UInt8(k))
        for block in sackBlocks.prefix(k) {
            buffer.appendBigEndian(block.start)
            buffer.appendBigEndian(block.end)
        }
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }
}

/// RFC 1982 serial-number arithmetic on 32-bit sequence numbers.
public enum SerialNumber {
    /// 2^31: distances at or beyond it are ambiguous and treated as "behind".
    public static let half: UInt32 = 1 << 31

    /// a < b in serial arithmetic.
    @inline(__always)
    public static func lessThan(_ a: UInt32, _ b: UInt32) -> Bool {
        a != b && (b &- a) < half
    }

    /// a <= b in serial arithmetic.
    @inline(__always)
    public static func lessThanOrEqual(_ a: UInt32, _ b: UInt32) -> Bool {
        (b &- a) < half
    }
}
