// sudph packet headers, PROTOCOL.md §4.1 and the drop rules of §4.2.

/// The first byte of every sudph packet.
public enum SudphPacketType: UInt8, Sendable, CustomStringConvertible {
    case initiation = 0x01
    case response = 0x02
    case cookieReply = 0x03
    case data = 0x04

    public var description: String {
        switch self {
        case .initiation: "initiation"
        case .response: "response"
        case .cookieReply: "cookie reply"
        case .data: "data"
        }
    }
}

/// Sizes fixed by §4.1 and §3.
public enum SudphLayout {
    /// Type byte plus three zero bytes.
    public static let prefixSize = 4
    public static let indexSize = 4
    public static let counterSize = 8
    /// Byte 1 of a Data packet: bit 0 is the key phase (§4.3).
    public static let keyPhaseMask: UInt8 = 0x01
    /// ChaChaPoly tag.
    public static let tagSize = 16
    /// Noise IK message 1 and 2 sizes with the §2 payloads.
    public static let initiationMessageSize = 141
    public static let responseMessageSize = 48
    /// mac1 and mac2 of an Initiation (§2.1, §4.1), and the cookie reply's nonce and sealed cookie.
    public static let macSize = 16
    public static let cookieNonceSize = 24
    public static let sealedCookieSize = 32

    public static let initiationHeaderSize = prefixSize + indexSize                    // 8
    public static let responseHeaderSize = prefixSize + 2 * indexSize                  // 12
    public static let dataHeaderSize = prefixSize + indexSize + counterSize            // 16
    /// mac1 covers the Initiation's bytes before it, mac2 the bytes before mac2.
    public static let mac1Offset = initiationHeaderSize + initiationMessageSize           // 149
    public static let mac2Offset = mac1Offset + macSize                                   // 165
    public static let initiationPacketSize = mac2Offset + macSize                         // 181
    public static let responsePacketSize = responseHeaderSize + responseMessageSize       // 60
    public static let cookieReplyHeaderSize = prefixSize + indexSize                      // 8
    public static let cookieReplyPacketSize = cookieReplyHeaderSize + cookieNonceSize + sealedCookieSize // 64
    /// An empty plaintext (keepalive) still carries a tag.
    public static let minimumDataPacketSize = dataHeaderSize + tagSize                  // 32
}

/// Why a datagram is not a well-formed sudph packet (§4.2: such packets are dropped silently).
public enum SudphPacketError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case unknownType(UInt8)
    case nonZeroReserved(SudphPacketType)
    case truncated(SudphPacketType, length: Int, minimum: Int)
    case wrongLength(SudphPacketType, length: Int, expected: Int)
    /// Building only: the output buffer or the message has the wrong size.
    case bufferTooSmall(needed: Int, available: Int)

    public var description: String {
        switch self {
        case .empty: "empty sudph packet"
        case .unknownType(let t): "unknown sudph packet type 0x\(String(t, radix: 16))"
        case .nonZeroReserved(let t): "sudph \(t) packet: reserved bytes 1..3 are not zero"
        case .truncated(let t, let n, let min): "sudph \(t) packet truncated: \(n) bytes, at least \(min) needed"
        case .wrongLength(let t, let n, let exp): "sudph \(t) packet has \(n) bytes, expected exactly \(exp)"
        case .bufferTooSmall(let need, let have): "buffer too small: \(need) bytes needed, \(have) available"
        }
    }
}

/// A parsed sudph packet header. The ranges point into the parsed bytes (no copy).
public enum SudphPacket: Equatable, Sendable {
    /// Type 1: the initiator's index and Noise message 1 (mac1 and mac2 follow at
    /// `SudphLayout.mac1Offset` and `mac2Offset`).
    case initiation(senderIndex: UInt32, message: Range<Int>)
    /// Type 2: the responder's index, the initiator's index, and Noise message 2.
    case response(senderIndex: UInt32, receiverIndex: UInt32, message: Range<Int>)
    /// Type 3: the initiator's index (from the Initiation answered), the nonce and the sealed cookie.
    case cookieReply(receiverIndex: UInt32, nonce: Range<Int>, sealedCookie: Range<Int>)
    /// Type 4: the receiver's index, the explicit Noise nonce, and ciphertext || tag.
    /// `keyPhase` (0 or 1) tells which generation of the sender's key sealed it (§4.3).
    case data(receiverIndex: UInt32, counter: UInt64, keyPhase: UInt8, ciphertext: Range<Int>)

    /// Parses and validates a packet's header: type, zero bytes, and length (§4.1, §4.2).
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(SudphPacketError) -> SudphPacket {
        typealias L = SudphLayout
        let n = bytes.count
        guard n >= 1 else { throw .empty }
        guard let type = SudphPacketType(rawValue: bytes[0]) else { throw .unknownType(bytes[0]) }
        guard n >= L.prefixSize else { throw .truncated(type, length: n, minimum: L.prefixSize) }
        // Byte 1 of a Data packet is its key phase (§4.3); every other reserved bit is zero.
        let allowedFlags: UInt8 = type == .data ? L.keyPhaseMask : 0
        guard bytes[1] & ~allowedFlags == 0, bytes[2] == 0, bytes[3] == 0 else { throw .nonZeroReserved(type) }
        switch type {
        case .initiation:
            guard n >= L.initiationPacketSize else {
                throw .truncated(type, length: n, minimum: L.initiationPacketSize)
            }
            guard n == L.initiationPacketSize else {
                throw .wrongLength(type, length: n, expected: L.initiationPacketSize)
            }
            return .initiation(senderIndex: bytes.readBigEndian(at: L.prefixSize),
                               message: L.initiationHeaderSize..<L.mac1Offset)
        case .response:
            guard n >= L.responsePacketSize else {
                throw .truncated(type, length: n, minimum: L.responsePacketSize)
            }
            guard n == L.responsePacketSize else {
                throw .wrongLength(type, length: n, expected: L.responsePacketSize)
            }
            return .response(senderIndex: bytes.readBigEndian(at: L.prefixSize),
                             receiverIndex: bytes.readBigEndian(at: L.prefixSize + L.indexSize),
                             message: L.responseHeaderSize..<n)
        case .cookieReply:
            guard n == L.cookieReplyPacketSize else {
                throw n < L.cookieReplyPacketSize
                    ? .truncated(type, length: n, minimum: L.cookieReplyPacketSize)
                    : .wrongLength(type, length: n, expected: L.cookieReplyPacketSize)
            }
            let nonceStart = L.cookieReplyHeaderSize
            return .cookieReply(receiverIndex: bytes.readBigEndian(at: L.prefixSize),
                                nonce: nonceStart..<nonceStart + L.cookieNonceSize,
                                sealedCookie: nonceStart + L.cookieNonceSize..<n)
        case .data:
            guard n >= L.minimumDataPacketSize else {
                throw .truncated(type, length: n, minimum: L.minimumDataPacketSize)
            }
            return .data(receiverIndex: bytes.readBigEndian(at: L.prefixSize),
                         counter: bytes.readBigEndian(at: L.prefixSize + L.indexSize),
                         keyPhase: bytes[1] & L.keyPhaseMask,
                         ciphertext: L.dataHeaderSize..<n)
        }
    }

    /// Builds an Initiation packet around Noise message 1 (exactly 141 bytes), with mac1 and mac2
    /// zero (the transport fills them in, §2.1).
    public static func initiation(senderIndex: UInt32, message: UnsafeRawBufferPointer) throws(SudphPacketError) -> [UInt8] {
        guard message.count == SudphLayout.initiationMessageSize else {
            throw .wrongLength(.initiation, length: SudphLayout.initiationHeaderSize + message.count,
                               expected: SudphLayout.initiationPacketSize)
        }
        var out: [UInt8] = []
        out.reserveCapacity(SudphLayout.initiationPacketSize)
        appendPrefix(.initiation, to: &out)
        out.appendBigEndian(senderIndex)
        out.appendBytes(message)
        out.append(contentsOf: repeatElement(0, count: 2 * SudphLayout.macSize))
        return out
    }

    /// Builds a Cookie Reply to the Initiation whose sender index was `receiverIndex`.
    public static func cookieReply(receiverIndex: UInt32, nonce: [UInt8], sealedCookie: [UInt8]) throws(SudphPacketError) -> [UInt8] {
        guard nonce.count == SudphLayout.cookieNonceSize, sealedCookie.count == SudphLayout.sealedCookieSize else {
            throw .wrongLength(.cookieReply, length: SudphLayout.cookieReplyHeaderSize + nonce.count + sealedCookie.count,
                               expected: SudphLayout.cookieReplyPacketSize)
        }
        var out: [UInt8] = []
        out.reserveCapacity(SudphLayout.cookieReplyPacketSize)
        appendPrefix(.cookieReply, to: &out)
        out.appendBigEndian(receiverIndex)
        out.append(contentsOf: nonce)
        out.append(contentsOf: sealedCookie)
        return out
    }

    /// Builds a Response packet around Noise message 2 (exactly 48 bytes).
    public static func response(senderIndex: UInt32, receiverIndex: UInt32,
                                message: UnsafeRawBufferPointer) throws(SudphPacketError) -> [UInt8] {
        guard message.count == SudphLayout.responseMessageSize else {
            throw .wrongLength(.response, length: SudphLayout.responseHeaderSize + message.count,
                               expected: SudphLayout.responsePacketSize)
        }
        var out: [UInt8] = []
        out.reserveCapacity(SudphLayout.responsePacketSize)
        appendPrefix(.response, to: &out)
        out.appendBigEndian(senderIndex)
        out.appendBigEndian(receiverIndex)
        out.appendBytes(message)
        return out
    }

    /// Writes the 16-byte Data header (also the ChaChaPoly associated data) at the start of `buffer`;
    /// the ciphertext goes at offset 16. Returns 16.
    @discardableResult
    public static func writeDataHeader(receiverIndex: UInt32, counter: UInt64, keyPhase: UInt8 = 0,
                                       into buffer: UnsafeMutableRawBufferPointer) throws(SudphPacketError) -> Int {
        guard buffer.count >= SudphLayout.dataHeaderSize else {
            throw .bufferTooSmall(needed: SudphLayout.dataHeaderSize, available: buffer.count)
        }
        var sink = RawBufferSink(buffer)
        appendPrefix(.data, flags: keyPhase & SudphLayout.keyPhaseMask, to: &sink)
        sink.appendBigEndian(receiverIndex)
        sink.appendBigEndian(counter)
        return sink.position
    }

    /// Appends the 16-byte Data header to `buffer`.
    public static func appendDataHeader(receiverIndex: UInt32, counter: UInt64, keyPhase: UInt8 = 0,
                                        to buffer: inout [UInt8]) {
        appendPrefix(.data, flags: keyPhase & SudphLayout.keyPhaseMask, to: &buffer)
        buffer.appendBigEndian(receiverIndex)
        buffer.appendBigEndian(counter)
    }

    static func appendPrefix<S: ByteSink>(_ type: SudphPacketType, flags: UInt8 = 0, to sink: inout S) {
        sink.appendByte(type.rawValue)
        sink.appendByte(flags)
        sink.appendByte(0)
        sink.appendByte(0)
    }
}
