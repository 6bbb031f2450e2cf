import CSkywireShim

/// The Internet checksum (RFC 1071), summed over native-order 16-bit words: by §2(B) the folded
/// one's-complement sum of a native load is the checksum in native order, so storing it with a
/// native store gives the right wire bytes on either endianness.
public enum InternetChecksum {
    /// Adds `bytes` to `initial` (a native-order running sum; an odd tail counts as padded with 0).
    @inline(__always)
    public static func add(_ bytes: UnsafeRawBufferPointer, to initial: UInt64 = 0) -> UInt64 {
        guard let base = bytes.baseAddress else { return initial }
        let n = bytes.count
        var acc = initial
        var i = 0
        // Each step adds < 2^33: no overflow for any IP packet.
        while i + 8 <= n {
            let w = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            acc = acc &+ (w & 0xffff_ffff) &+ (w >> 32)
            i += 8
        }
        while i + 2 <= n {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i += 2
        }
        if i < n { acc &+= UInt64(UInt16(bigEndian: UInt16(bytes[i]) << 8)) }
        return acc
    }

    /// A big-endian 16-bit value (as on the wire) in the native summing order.
    @inline(__always)
    public static func word(_ value: UInt16) -> UInt64 { UInt64(value.bigEndian) }

    /// The one's complement of the folded sum: the value to store (native order).
    @inline(__always)
    public static func finish(_ sum: UInt64) -> UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xffff) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }
}

/// struct virtio_net_hdr (linux/virtio_net.h; layout from `CSkywireShim`): the header a TUN
/// opened with IFF_VNET_HDR puts before each packet, host byte order.
public struct VirtioNetHeader: Equatable, Sendable {
    public static let size = Int(skw_vnet_hdr_size)
    public static let needsChecksum = UInt8(skw_vnet_hdr_f_needs_csum)
    public static let dataValid = UInt8(skw_vnet_hdr_f_data_valid)
    public static let gsoNone = UInt8(skw_vnet_hdr_gso_none)
    public static let gsoTCPv4 = UInt8(skw_vnet_hdr_gso_tcpv4)
    public static let gsoECN = UInt8(skw_vnet_hdr_gso_ecn)

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// Reads the header at the start of `bytes` (at least `size` bytes).
    public init(_ bytes: UnsafeRawBufferPointer) {
        flags = bytes[Int(skw_vnet_hdr_flags_offset)]
        gsoType = bytes[Int(skw_vnet_hdr_gso_type_offset)]
        headerLength = bytes.loadUnaligned(fromByteOffset: Int(skw_vnet_hdr_hdr_len_offset), as: UInt16.self)
        gsoSize = bytes.loadUnaligned(fromByteOffset: Int(skw_vnet_hdr_gso_size_offset), as: UInt16.self)
        checksumStart = bytes.loadUnaligned(fromByteOffset: Int(skw_vnet_hdr_csum_start_offset), as: UInt16.self)
        checksumOffset = bytes.loadUnaligned(fromByteOffset: Int(skw_vnet_hdr_csum_offset_offset), as: UInt16.self)
    }

    /// Writes the header at the start of `bytes` (at least `size` bytes).
    public func write(into bytes: UnsafeMutableRawBufferPointer) {
        bytes[Int(skw_vnet_hdr_flags_offset)] = flags
        bytes[Int(skw_vnet_hdr_gso_type_offset)] = gsoType
        bytes.storeBytes(of: headerLength, toByteOffset: Int(skw_vnet_hdr_hdr_len_offset), as: UInt16.self)
        bytes.storeBytes(of: gsoSize, toByteOffset: Int(skw_vnet_hdr_gso_size_offset), as: UInt16.self)
        bytes.storeBytes(of: checksumStart, toByteOffset: Int(skw_vnet_hdr_csum_start_offset), as: UInt16.self)
        bytes.storeBytes(of: checksumOffset, toByteOffset: Int(skw_vnet_hdr_csum_offset_offset), as: UInt16.self)
    }
}

/// Userspace TCP segmentation of IPv4 GSO super-packets (what the kernel's tcp4_gso_segment
/// does; cf. wireguard-go tun/offload_linux.go): each segment gets the headers with its IP total
/// length, IP id (+i), IP header checksum (RFC 791), TCP sequence number, flags (CWR only on the
/// first, FIN/PSH only on the last) and a full TCP checksum (RFC 793 pseudo-header).
public enum TCPSegmenter {
    static let protocolTCP: UInt8 = 6
    static let ipChecksumOffset = 10
    static let ipIDOffset = 4
    static let tcpSequenceOffset = 4
    static let tcpDataOffsetByte = 12
    static let tcpFlagsOffset = 13
    static let tcpChecksumOffset = 16
    static let flagFIN: UInt8 = 0x01
    static let flagPSH: UInt8 = 0x08
    static let flagCWR: UInt8 = 0x80

    /// The header sizes of a TCP/IPv4 packet, or nil when it is not one.
    public static func headerLengths(_ p: UnsafeRawBufferPointer) -> (ip: Int, tcp: Int)? {
        guard IPv4Packet.isValid(p), p[9] == protocolTCP else { return nil }
        let ip = Int(p[0] & 0x0f) * 4
        guard p.count >= ip + 20 else { return nil }
        let tcp = Int(p[ip + tcpDataOffsetByte] >> 4) * 4
        guard tcp >= 20, ip + tcp <= IPv4Packet.totalLength(p) else { return nil }
        return (ip, tcp)
    }

    /// How many segments of at most `gsoSize` payload bytes `packet` makes (0: not TCP/IPv4).
    public static func segmentCount(_ packet: UnsafeRawBufferPointer, gsoSize: Int) -> Int {
        guard gsoSize > 0, let (ip, tcp) = headerLengths(packet) else { return 0 }
        let payload = IPv4Packet.totalLength(packet) - ip - tcp
        return payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize
    }

    /// Writes segment `index` of `packet` into `out`; returns its length, 0 when it does not fit.
    public static func writeSegment(_ index: Int, of packet: UnsafeRawBufferPointer, gsoSize: Int,
                                    into out: UnsafeMutableRawBufferPointer) -> Int {
        guard let (ip, tcp) = headerLengths(packet) else { return 0 }
        let header = ip + tcp
        let payload = IPv4Packet.totalLength(packet) - header
        let count = payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize
        guard index < count else { return 0 }
        let start = header + index * gsoSize
        let length = min(gsoSize, payload - index * gsoSize)
        let total = header + max(length, 0)
        guard total <= out.count, let dst = out.baseAddress, let src = packet.baseAddress else { return 0 }
        dst.copyMemory(from: src, byteCount: header)
        if length > 0 { (dst + header).copyMemory(from: src + start, byteCount: length) }

        // IPv4: total length, id + index, header checksum.
        out.storeBytes(of: UInt16(total).bigEndian, toByteOffset: IPv4Packet.totalLengthOffset, as: UInt16.self)
        let id = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: ipIDOffset, as: UInt16.self))
        out.storeBytes(of: (id &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: ipIDOffset, as: UInt16.self)
        out.storeBytes(of: UInt16(0), toByteOffset: ipChecksumOffset, as: UInt16.self)
        let ipSum = InternetChecksum.add(UnsafeRawBufferPointer(rebasing: out[0..<ip]))
        out.storeBytes(of: InternetChecksum.finish(ipSum), toByteOffset: ipChecksumOffset, as: UInt16.self)

        // TCP: sequence, flags, checksum over the pseudo-header, header and payload.
        let seq = UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: ip + tcpSequenceOffset, as: UInt32.self))
        out.storeBytes(of: (seq &+ UInt32(truncatingIfNeeded: index * gsoSize)).bigEndian,
                       toByteOffset: ip + tcpSequenceOffset, as: UInt32.self)
        var flags = packet[ip + tcpFlagsOffset]
        if index != count - 1 { flags &= ~(flagFIN | flagPSH) }
        if index != 0 { flags &= ~flagCWR }
        out[ip + tcpFlagsOffset] = flags
        out.storeBytes(of: UInt16(0), toByteOffset: ip + tcpChecksumOffset, as: UInt16.self)
        let segment = UnsafeRawBufferPointer(rebasing: out[ip..<total])
        let sum = InternetChecksum.add(segment, to: pseudoHeaderSum(out, ipHeaderLength: ip, length: total - ip))
        out.storeBytes(of: InternetChecksum.finish(sum), toByteOffset: ip + tcpChecksumOffset, as: UInt16.self)
        return total
    }

    /// Source, destination, protocol and TCP length (RFC 793 §3.1), native summing order.
    @inline(__always)
    static func pseudoHeaderSum(_ p: UnsafeMutableRawBufferPointer, ipHeaderLength: Int, length: Int) -> UInt64 {
        let addresses = UnsafeRawBufferPointer(rebasing: p[IPv4Packet.sourceOffset..<(IPv4Packet.destinationOffset + 4)])
        return InternetChecksum.add(addresses) &+ InternetChecksum.word(UInt16(p[9])) &+ InternetChecksum.word(UInt16(length))
    }

    /// Completes a VIRTIO_NET_HDR_F_NEEDS_CSUM packet: the one's-complement sum from
    /// `checksumStart` to the end (its checksum field holds the pseudo-header sum) is stored at
    /// `checksumStart + checksumOffset` (the kernel's skb_checksum_help). False when out of range.
    public static func completeChecksum(_ packet: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
        guard start + offset + 2 <= packet.count else { return false }
        let sum = InternetChecksum.add(UnsafeRawBufferPointer(rebasing: packet[start...]))
        packet.storeBytes(of: InternetChecksum.finish(sum), toByteOffset: start + offset, as: UInt16.self)
        return true
    }
}
