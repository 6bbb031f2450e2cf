import CSkywireShim

/// The Internet checksum (RFC 1071), summed over native-order 16-bit words: by §2(B) the folded
/// one's-complement sum of a native load is the checksum in native order, so storing it with a
/// native store gives the right wire bytes on either endianness.
public enum InternetChecksum {
    /// Adds `bytes` to `initial` (a native-order running sum; an odd tail counts as padded with 0).
    /// 32-bit words are summed into 64-bit lanes, eight at a time (SIMD: SSE/AVX on x86-64, NEON
    /// on aarch64): a 32-bit word's value is ≡ the sum of its two 16-bit halves modulo 0xffff
    /// (2^16 ≡ 1), which is all the one's-complement sum needs (RFC 1071 §2(C), deferred
    /// carries). A lane gains < 2^32 per step: no overflow for any IP packet.
    @inline(__always)
    public static func add(_ bytes: UnsafeRawBufferPointer, to initial: UInt64 = 0) -> UInt64 {
        guard let base = bytes.baseAddress else { return initial }
        let n = bytes.count
        var lanes = SIMD8<UInt64>()
        var i = 0
        while i + MemoryLayout<SIMD8<UInt32>>.size <= n {
            lanes &+= SIMD8<UInt64>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt32>.self))
            i &+= MemoryLayout<SIMD8<UInt32>>.size
        }
        var acc = initial &+ lanes.wrappedSum()
        while i + 4 <= n {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i &+= 4
        }
        if i + 2 <= n {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i &+= 2
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
    public static let gsoTCPv6 = UInt8(skw_vnet_hdr_gso_tcpv6)
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

/// Userspace TCP segmentation of IPv4 and IPv6 GSO super-packets (what the kernel's
/// tcp4_gso_segment and tcp6_gso_segment do; cf. wireguard-go tun/offload_linux.go): each
/// segment gets the headers with its IP total length (IPv6: payload length), IPv4 id (+i) and
/// header checksum (RFC 791; IPv6 has none), TCP sequence number, flags (CWR only on the first,
/// FIN/PSH only on the last) and a full TCP checksum (RFC 793 pseudo-header; RFC 8200 §8.1 for
/// IPv6). IPv6 packets with extension headers are not segmented (the TUN hands over TCP right
/// after the fixed header).
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

    static let ipv4ProtocolOffset = 9
    static let minTCPHeader = 20

    /// The header sizes of a TCP/IPv4 or TCP/IPv6 packet (TCP right after the fixed IPv6
    /// header), or nil when it is not one.
    public static func headerLengths(_ p: UnsafeRawBufferPointer) -> (ip: Int, tcp: Int)? {
        let ip: Int
        if IPv4Packet.isValid(p), p[ipv4ProtocolOffset] == protocolTCP {
            ip = Int(p[0] & 0x0f) * 4
        } else if IPv6Packet.isValid(p), p[IPv6Packet.nextHeaderOffset] == protocolTCP {
            ip = IPv6Packet.headerLength
        } else {
            return nil
        }
        guard p.count >= ip + minTCPHeader else { return nil }
        let tcp = Int(p[ip + tcpDataOffsetByte] >> 4) * 4
        guard tcp >= minTCPHeader, ip + tcp <= ipLength(p) else { return nil }
        return (ip, tcp)
    }

    /// True for an IPv6 packet (version nibble 6), for a packet `headerLengths` accepted.
    @inline(__always)
    static func isIPv6(_ p: UnsafeRawBufferPointer) -> Bool { p[0] >> 4 == IPv6Packet.version6 }

    /// The IP packet's length from its header: IPv4 total length, IPv6 40 + payload length.
    @inline(__always)
    static func ipLength(_ p: UnsafeRawBufferPointer) -> Int {
        isIPv6(p) ? IPv6Packet.headerLength + IPv6Packet.payloadLength(p) : IPv4Packet.totalLength(p)
    }

    /// Stores `total` as the IP length: IPv4 total length, or IPv6 payload length (total − 40).
    @inline(__always)
    static func storeIPLength(_ total: Int, into b: UnsafeMutableRawBufferPointer) {
        if isIPv6(UnsafeRawBufferPointer(b)) {
            b.storeBytes(of: UInt16(total - IPv6Packet.headerLength).bigEndian, toByteOffset: IPv6Packet.payloadLengthOffset, as: UInt16.self)
        } else {
            b.storeBytes(of: UInt16(total).bigEndian, toByteOffset: IPv4Packet.totalLengthOffset, as: UInt16.self)
        }
    }

    /// How many segments of at most `gsoSize` payload bytes `packet` makes (0: not TCP/IPv4).
    public static func segmentCount(_ packet: UnsafeRawBufferPointer, gsoSize: Int) -> Int {
        guard gsoSize > 0, let (ip, tcp) = headerLengths(packet) else { return 0 }
        let payload = ipLength(packet) - ip - tcp
        return payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize
    }

    /// Writes segment `index` of `packet` into `out`; returns its length, 0 when it does not fit.
    public static func writeSegment(_ index: Int, of packet: UnsafeRawBufferPointer, gsoSize: Int,
                                    into out: UnsafeMutableRawBufferPointer) -> Int {
        guard let (ip, tcp) = headerLengths(packet) else { return 0 }
        let header = ip + tcp
        let payload = ipLength(packet) - header
        let count = payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize
        guard index < count else { return 0 }
        let start = header + index * gsoSize
        let length = min(gsoSize, payload - index * gsoSize)
        let total = header + max(length, 0)
        guard total <= out.count, let dst = out.baseAddress, let src = packet.baseAddress else { return 0 }
        dst.copyMemory(from: src, byteCount: header)
        if length > 0 { (dst + header).copyMemory(from: src + start, byteCount: length) }

        // IPv4: total length, id + index, header checksum; IPv6: payload length only.
        storeIPLength(total, into: out)
        if !isIPv6(packet) {
            let id = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: ipIDOffset, as: UInt16.self))
            out.storeBytes(of: (id &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: ipIDOffset, as: UInt16.self)
            out.storeBytes(of: UInt16(0), toByteOffset: ipChecksumOffset, as: UInt16.self)
            let ipSum = InternetChecksum.add(UnsafeRawBufferPointer(rebasing: out[0..<ip]))
            out.storeBytes(of: InternetChecksum.finish(ipSum), toByteOffset: ipChecksumOffset, as: UInt16.self)
        }

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

    /// Source, destination, protocol and TCP length (RFC 793 §3.1), native summing order. For
    /// IPv6 (RFC 8200 §8.1): the 16-byte addresses, the 32-bit upper-layer length and the next
    /// header in a 32-bit word: the same sum, as the high halves are zero (length < 65536).
    @inline(__always)
    static func pseudoHeaderSum(_ p: UnsafeMutableRawBufferPointer, ipHeaderLength: Int, length: Int) -> UInt64 {
        let v6 = isIPv6(UnsafeRawBufferPointer(p))
        let addresses = v6
            ? UnsafeRawBufferPointer(rebasing: p[IPv6Packet.sourceOffset..<(IPv6Packet.destinationOffset + IPv6Packet.addressLength)])
            : UnsafeRawBufferPointer(rebasing: p[IPv4Packet.sourceOffset..<(IPv4Packet.destinationOffset + IPv4Packet.addressLength)])
        let proto = p[v6 ? IPv6Packet.nextHeaderOffset : ipv4ProtocolOffset]
        return InternetChecksum.add(addresses) &+ InternetChecksum.word(UInt16(proto)) &+ InternetChecksum.word(UInt16(length))
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
