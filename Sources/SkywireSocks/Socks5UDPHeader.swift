import NIOCore

/// The header in front of every UDP datagram relayed by SOCKS5 (RFC 1928 §7):
/// `RSV(2) FRAG(1) ATYP DST.ADDR DST.PORT DATA`.
public struct Socks5UDPHeader: Equatable, Sendable {
    /// Fixed bytes before ATYP: RSV (2) and FRAG (1).
    public static let fixedLength = 3
    /// The smallest valid header: fixed part, ATYP, IPv4 address and port.
    public static let minimumLength = fixedLength + 1 + Socks5AddressType.ipv4Length + 2

    public var fragment: UInt8
    public var address: Socks5Address
    public var port: UInt16

    public init(fragment: UInt8 = 0, address: Socks5Address, port: UInt16) {
        self.fragment = fragment
        self.address = address
        self.port = port
    }

    /// Header length on the wire.
    public var encodedLength: Int { Self.fixedLength + address.encodedLength + 2 }

    public enum ParseError: Error, Equatable, Sendable {
        /// Shorter than its header.
        case truncated
        /// RSV is not zero.
        case reservedNotZero
        /// FRAG ≠ 0: fragmentation is not implemented, such datagrams are dropped (RFC 1928 §7 allows it).
        case fragmented
        /// Unknown ATYP or malformed address.
        case badAddress(String)
    }

    /// Parses the header at the front of `datagram`; returns it and the header's length (data follows).
    public static func parse(_ datagram: ByteBuffer) -> Result<(Socks5UDPHeader, Int), ParseError> {
        let base = datagram.readerIndex
        guard let rsv = datagram.getInteger(at: base, as: UInt16.self),
              let frag = datagram.getInteger(at: base + 2, as: UInt8.self) else { return .failure(.truncated) }
        guard rsv == 0 else { return .failure(.reservedNotZero) }
        guard frag == 0 else { return .failure(.fragmented) }
        switch Socks5Parser.parseAddressAndPort(datagram, at: base + fixedLength) {
        case .incomplete:
            return .failure(.truncated)
        case .invalid(_, let reason):
            return .failure(.badAddress(reason))
        case .complete(let target, let length):
            return .success((Socks5UDPHeader(fragment: frag, address: target.address, port: target.port),
                             fixedLength + length))
        }
    }

    /// Writes the header (the caller appends DATA).
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(fragment)
        address.write(to: &buffer)
        buffer.writeInteger(port)
    }
}

/// The framing of UDP datagrams over a skysocks stream after a successful UDP ASSOCIATE (docs/socks.md):
/// each datagram (RFC 1928 §7 header included) is sent as `LEN(2, big-endian) || datagram`.
public enum SkysocksUDPFraming {
    /// Bytes of the length prefix.
    public static let lengthPrefixSize = 2
    /// Largest datagram a frame can carry.
    public static let maxDatagramSize = Int(UInt16.max)
}

/// Splits the stream's bytes into datagrams; bytes in, whole frames out.
public struct SkysocksUDPFrameDecoder {
    private var buffer = ByteBuffer()

    public init() {}

    /// Appends stream bytes.
    public mutating func append(_ data: ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = data
        } else {
            if buffer.readerIndex >= Self.compactThreshold { buffer.discardReadBytes() }
            var data = data
            buffer.writeBuffer(&data)
        }
    }

    /// Consumed bytes kept before the buffer is compacted.
    private static let compactThreshold = 64 * 1024

    /// The next complete datagram (a slice, no copy), or nil when more bytes are needed.
    /// Zero-length frames are skipped.
    public mutating func next() -> ByteBuffer? {
        while let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) {
            guard buffer.readableBytes >= SkysocksUDPFraming.lengthPrefixSize + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: SkysocksUDPFraming.lengthPrefixSize)
            if length == 0 { continue }
            return buffer.readSlice(length: Int(length))
        }
        return nil
    }

    /// Bytes held waiting for the rest of a frame.
    public var bufferedBytes: Int { buffer.readableBytes }
}
