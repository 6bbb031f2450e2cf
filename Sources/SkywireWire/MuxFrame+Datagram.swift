/// The DATAGRAM frame header (PROTOCOL.md §5: type, destination port, source port, big-endian)
/// for the datapaths that build or read frames in place around a payload (the VPN's batches over
/// sudph and stcpr, and the sinks that take them on receive). `MuxFrame.encode` writes the same
/// bytes (a unit test compares them).
extension MuxFrameLayout {
    /// Writes the header into the first `datagramHeader` bytes of `out`.
    @inline(__always)
    public static func writeDatagramHeader(destinationPort: UInt16, sourcePort: UInt16,
                                           into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= datagramHeader)
        out[0] = MuxFrameType.datagram.rawValue
        out[1] = UInt8(destinationPort >> 8)
        out[2] = UInt8(destinationPort & 0xff)
        out[3] = UInt8(sourcePort >> 8)
        out[4] = UInt8(sourcePort & 0xff)
    }

    /// The ports of an encoded DATAGRAM frame; nil when `frame` is another frame or too short.
    @inline(__always)
    public static func datagramPorts(_ frame: UnsafeRawBufferPointer) -> (destination: UInt16, source: UInt16)? {
        guard frame.count >= datagramHeader, frame[0] == MuxFrameType.datagram.rawValue else { return nil }
        return (frame.readBigEndian(at: 1), frame.readBigEndian(at: 3))
    }
}
