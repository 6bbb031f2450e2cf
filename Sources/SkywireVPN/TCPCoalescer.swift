/// Userspace GRO for a TUN with IFF_VNET_HDR (what the kernel's tcp_gro_receive does; cf.
/// wireguard-go tun/offload_linux.go): consecutive in-order TCP/IPv4 or TCP/IPv6 segments of
/// one flow with equal ACK number and options are merged into one GSO super-packet
/// (virtio_net_hdr GSO_TCPV4 or GSO_TCPV6, NEEDS_CSUM with the pseudo-header sum in the
/// checksum field; RFC 8200 §8.1 for IPv6), so the kernel
/// walks its stack once per super-packet. Other packets pass through unchanged. Pure: output
/// goes to `emit`. Not thread-safe: one owner (the event loop delivering the datagrams).
public final class TCPCoalescer {
    public typealias Emit = (VirtioNetHeader, UnsafeRawBufferPointer) -> Void

    /// Flows merged at once; more evict the oldest.
    public static let maxFlows = 8
    static let maxLength = 65535
    static let flagACK: UInt8 = 0x10
    static let flagPSH: UInt8 = 0x08
    static let ipFlagsMoreFragments: UInt16 = 0x2000
    static let ipFragmentOffsetMask: UInt16 = 0x1fff
    static let ipFlagsOffset = 6

    struct Flow {
        var length = 0
        var ipHeader = 0
        var tcpHeader = 0
        var segmentSize = 0
        var count = 0
        var nextSequence: UInt32 = 0
        /// A shorter or PSH segment ended it: the next one starts a new super-packet.
        var closed = false
        var lastUse: UInt64 = 0
    }

    private let buffers: UnsafeMutableRawBufferPointer
    private var flows = [Flow](repeating: Flow(), count: TCPCoalescer.maxFlows)
    private var clock: UInt64 = 0
    public private(set) var merged: UInt64 = 0

    public init() {
        buffers = .allocate(byteCount: Self.maxFlows * Self.maxLength, alignment: 16)
    }

    deinit { buffers.deallocate() }

    private func buffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffers[(i * Self.maxLength)..<((i + 1) * Self.maxLength)])
    }

    /// Takes one IP packet (anything but TCP/IPv4 and TCP/IPv6 passes through unchanged).
    public func add(_ p: UnsafeRawBufferPointer, emit: Emit) {
        clock &+= 1
        guard let (ip, tcp) = TCPSegmenter.headerLengths(p) else {
            emit(VirtioNetHeader(), p)
            return
        }
        let match = flows.indices.first { flows[$0].count > 0 && sameFlow(p, ip: ip, buffer($0)) }
        let payload = TCPSegmenter.ipLength(p) - ip - tcp
        let flags = p[ip + TCPSegmenter.tcpFlagsOffset]
        // IPv4 without options and not a fragment; IPv6 with TCP right after the fixed header
        // (a fragment header would be another next header).
        let plainIP = TCPSegmenter.isIPv6(p) ? true : ip == IPv4Packet.minHeaderLength
            && UInt16(bigEndian: p.loadUnaligned(fromByteOffset: Self.ipFlagsOffset, as: UInt16.self))
                & (Self.ipFlagsMoreFragments | Self.ipFragmentOffsetMask) == 0
        let candidate = plainIP && payload > 0 && (flags == Self.flagACK || flags == Self.flagACK | Self.flagPSH)
        guard candidate else {
            // Keep the flow's order: what it holds goes first.
            if let m = match { flush(m, emit: emit) }
            emit(VirtioNetHeader(), p)
            return
        }
        let sequence = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: ip + TCPSegmenter.tcpSequenceOffset, as: UInt32.self))
        if let m = match {
            if canAppend(p, ip: ip, tcp: tcp, payload: payload, sequence: sequence, to: m) {
                append(p, header: ip + tcp, payload: payload, flags: flags, to: m)
                return
            }
            flush(m, emit: emit)
            start(p, ip: ip, tcp: tcp, payload: payload, sequence: sequence, flags: flags, in: m)
            return
        }
        let slot = flows.indices.first { flows[$0].count == 0 }
            ?? flows.indices.min { flows[$0].lastUse < flows[$1].lastUse }!
        if flows[slot].count > 0 { flush(slot, emit: emit) }
        start(p, ip: ip, tcp: tcp, payload: payload, sequence: sequence, flags: flags, in: slot)
    }

    /// Emits every pending super-packet (end of a receive batch).
    public func flush(emit: Emit) {
        for i in flows.indices where flows[i].count > 0 { flush(i, emit: emit) }
    }

    /// Same version, addresses and ports (IPv4: bytes 12–19 of the IP header; IPv6: 8–39; TCP 0–3).
    private func sameFlow(_ p: UnsafeRawBufferPointer, ip: Int, _ b: UnsafeMutableRawBufferPointer) -> Bool {
        guard p[0] >> 4 == b[0] >> 4, TCPSegmenter.isIPv6(p) || Int(b[0] & 0x0f) * 4 == ip else { return false }
        guard p.loadUnaligned(fromByteOffset: ip, as: UInt32.self) == b.loadUnaligned(fromByteOffset: ip, as: UInt32.self) else { return false }
        if TCPSegmenter.isIPv6(p) {
            var k = IPv6Packet.sourceOffset
            while k < IPv6Packet.headerLength {
                guard p.loadUnaligned(fromByteOffset: k, as: UInt64.self) == b.loadUnaligned(fromByteOffset: k, as: UInt64.self) else { return false }
                k += 8
            }
            return true
        }
        return p.loadUnaligned(fromByteOffset: IPv4Packet.sourceOffset, as: UInt64.self)
            == b.loadUnaligned(fromByteOffset: IPv4Packet.sourceOffset, as: UInt64.self)
    }

    private func canAppend(_ p: UnsafeRawBufferPointer, ip: Int, tcp: Int, payload: Int, sequence: UInt32, to i: Int) -> Bool {
        let f = flows[i]
        guard !f.closed, f.tcpHeader == tcp, sequence == f.nextSequence, payload <= f.segmentSize,
              f.length + payload <= Self.maxLength else { return false }
        let b = buffer(i)
        // Same TOS, DF, TTL and protocol (IPv6: traffic class, flow label, next header, hop
        // limit); same ACK number, data offset and options.
        if TCPSegmenter.isIPv6(p) {
            guard p.loadUnaligned(as: UInt32.self) == b.loadUnaligned(as: UInt32.self), p[6] == b[6], p[7] == b[7] else { return false }
        } else {
            guard p[1] == b[1], p[6] == b[6], p[8] == b[8], p[9] == b[9] else { return false }
        }
        guard p.loadUnaligned(fromByteOffset: ip + 8, as: UInt32.self) == b.loadUnaligned(fromByteOffset: ip + 8, as: UInt32.self),
              p[ip + 12] == b[ip + 12] else { return false }
        var k = 20
        while k < tcp {
            guard p[ip + k] == b[ip + k] else { return false }
            k += 1
        }
        return true
    }

    private func start(_ p: UnsafeRawBufferPointer, ip: Int, tcp: Int, payload: Int, sequence: UInt32, flags: UInt8, in i: Int) {
        let total = ip + tcp + payload
        buffer(i).baseAddress!.copyMemory(from: p.baseAddress!, byteCount: total)
        flows[i] = Flow(length: total, ipHeader: ip, tcpHeader: tcp, segmentSize: payload, count: 1,
                        nextSequence: sequence &+ UInt32(payload), closed: flags & Self.flagPSH != 0, lastUse: clock)
    }

    private func append(_ p: UnsafeRawBufferPointer, header: Int, payload: Int, flags: UInt8, to i: Int) {
        let b = buffer(i)
        (b.baseAddress! + flows[i].length).copyMemory(from: p.baseAddress! + header, byteCount: payload)
        flows[i].length += payload
        flows[i].count += 1
        flows[i].nextSequence &+= UInt32(payload)
        flows[i].lastUse = clock
        if payload < flows[i].segmentSize || flags & Self.flagPSH != 0 {
            flows[i].closed = true
            b[flows[i].ipHeader + TCPSegmenter.tcpFlagsOffset] |= flags & Self.flagPSH
        }
        merged += 1
    }

    private func flush(_ i: Int, emit: Emit) {
        let f = flows[i]
        flows[i].count = 0
        let b = buffer(i)
        let packet = UnsafeRawBufferPointer(rebasing: b[0..<f.length])
        guard f.count > 1 else {
            emit(VirtioNetHeader(), packet)
            return
        }
        // New IP length (and IPv4 checksum); the TCP checksum field gets the pseudo-header sum
        // for the kernel (or the segmenting NIC) to complete.
        let v6 = TCPSegmenter.isIPv6(UnsafeRawBufferPointer(b))
        TCPSegmenter.storeIPLength(f.length, into: b)
        if !v6 {
            b.storeBytes(of: UInt16(0), toByteOffset: TCPSegmenter.ipChecksumOffset, as: UInt16.self)
            let ipSum = InternetChecksum.add(UnsafeRawBufferPointer(rebasing: b[0..<f.ipHeader]))
            b.storeBytes(of: InternetChecksum.finish(ipSum), toByteOffset: TCPSegmenter.ipChecksumOffset, as: UInt16.self)
        }
        let pseudo = TCPSegmenter.pseudoHeaderSum(b, ipHeaderLength: f.ipHeader, length: f.length - f.ipHeader)
        b.storeBytes(of: ~InternetChecksum.finish(pseudo), toByteOffset: f.ipHeader + TCPSegmenter.tcpChecksumOffset,
                     as: UInt16.self)
        let header = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: v6 ? VirtioNetHeader.gsoTCPv6 : VirtioNetHeader.gsoTCPv4,
                                     headerLength: UInt16(f.ipHeader + f.tcpHeader), gsoSize: UInt16(f.segmentSize),
                                     checksumStart: UInt16(f.ipHeader), checksumOffset: UInt16(TCPSegmenter.tcpChecksumOffset))
        emit(header, packet)
    }
}
