/// The few IPv6 header fields the datapath needs (RFC 8200 §3), read in place.
public enum IPv6Packet {
    public static let headerLength = 40
    static let payloadLengthOffset = 4
    static let nextHeaderOffset = 6
    static let sourceOffset = 8
    static let destinationOffset = 24
    static let version6: UInt8 = 6
    static let addressLength = 16

    /// True for a well-formed fixed header: version 6, payload length within `packet` (a
    /// jumbogram's zero payload length, RFC 2675, is refused: the tunnel MTU is far smaller).
    @inline(__always)
    public static func isValid(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard packet.count >= headerLength, packet[0] >> 4 == version6 else { return false }
        return headerLength + payloadLength(packet) <= packet.count
    }

    /// The payload-length field (bytes 4–5).
    @inline(__always)
    public static func payloadLength(_ packet: UnsafeRawBufferPointer) -> Int {
        Int(packet[payloadLengthOffset]) << 8 | Int(packet[payloadLengthOffset + 1])
    }

    /// The source address as (high, low) 64-bit halves, host order.
    @inline(__always)
    public static func source(_ packet: UnsafeRawBufferPointer) -> (UInt64, UInt64) { read128(packet, sourceOffset) }

    /// The destination address as (high, low) 64-bit halves, host order.
    @inline(__always)
    public static func destination(_ packet: UnsafeRawBufferPointer) -> (UInt64, UInt64) { read128(packet, destinationOffset) }

    @inline(__always)
    static func read128(_ p: UnsafeRawBufferPointer, _ at: Int) -> (UInt64, UInt64) {
        (UInt64(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt64.self)),
         UInt64(bigEndian: p.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
    }
}
