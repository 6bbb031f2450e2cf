/// The few IPv4 header fields the datapath needs (RFC 791 §3.1), read in place.
public enum IPv4Packet {
    public static let minHeaderLength = 20
    static let sourceOffset = 12
    static let destinationOffset = 16
    static let totalLengthOffset = 2
    static let version4: UInt8 = 4
    static let addressLength = 4

    /// True for a well-formed IPv4 header: version 4, IHL ≥ 5, total length within `packet`.
    @inline(__always)
    public static func isValid(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard packet.count >= minHeaderLength else { return false }
        let first = packet[0]
        guard first >> 4 == version4, Int(first & 0x0f) * 4 >= minHeaderLength else { return false }
        let total = Int(packet[totalLengthOffset]) << 8 | Int(packet[totalLengthOffset + 1])
        return total >= Int(first & 0x0f) * 4 && total <= packet.count
    }

    /// The IP version nibble, or nil for an empty packet.
    @inline(__always)
    public static func version(_ packet: UnsafeRawBufferPointer) -> UInt8? {
        packet.isEmpty ? nil : packet[0] >> 4
    }

    /// The total-length field (bytes 2–3).
    @inline(__always)
    public static func totalLength(_ packet: UnsafeRawBufferPointer) -> Int {
        Int(packet[totalLengthOffset]) << 8 | Int(packet[totalLengthOffset + 1])
    }

    @inline(__always)
    public static func source(_ packet: UnsafeRawBufferPointer) -> UInt32 { read32(packet, sourceOffset) }

    @inline(__always)
    public static func destination(_ packet: UnsafeRawBufferPointer) -> UInt32 { read32(packet, destinationOffset) }

    @inline(__always)
    static func read32(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(p[at]) << 24 | UInt32(p[at + 1]) << 16 | UInt32(p[at + 2]) << 8 | UInt32(p[at + 3])
    }
}
