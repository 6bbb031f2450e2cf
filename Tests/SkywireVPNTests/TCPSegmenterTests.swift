import XCTest
@testable import SkywireVPN

/// Byte-exact checks of the TSO/checksum code against packets built by hand (the expected
/// segments and checksums were computed independently, RFC 1071 over RFC 791/793 headers).
final class TCPSegmenterTests: XCTestCase {
    /// 10.0.0.1:40000 → 10.0.0.2:5201, IP id 0x1234, DF, seq 1000, ack 2000, flags
    /// CWR|PSH|ACK|FIN (0x99), window 512, a stale checksum 0xabcd, payload 00..09.
    let superPacket: [UInt8] = [
        0x45, 0x00, 0x00, 0x32, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x90, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
        0x50, 0x99, 0x02, 0x00, 0xab, 0xcd, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09,
    ]
    /// gso_size 4: segments of 4, 4 and 2 bytes. Only the first keeps CWR, only the last FIN/PSH.
    let expected: [[UInt8]] = [
        [0x45, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x96, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x90, 0x02, 0x00, 0xdb, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03],
        [0x45, 0x00, 0x00, 0x2c, 0x12, 0x35, 0x40, 0x00, 0x40, 0x06, 0x14, 0x95, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xec, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x10, 0x02, 0x00, 0xd3, 0x74, 0x00, 0x00, 0x04, 0x05, 0x06, 0x07],
        [0x45, 0x00, 0x00, 0x2a, 0x12, 0x36, 0x40, 0x00, 0x40, 0x06, 0x14, 0x96, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xf0, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x19, 0x02, 0x00, 0xd5, 0x6c, 0x00, 0x00, 0x08, 0x09],
    ]

    func testSegmentsAreByteExact() {
        superPacket.withUnsafeBytes { p in
            XCTAssertEqual(TCPSegmenter.segmentCount(p, gsoSize: 4), 3)
            var out = [UInt8](repeating: 0xee, count: 64)
            for i in 0..<3 {
                let n = out.withUnsafeMutableBytes { TCPSegmenter.writeSegment(i, of: p, gsoSize: 4, into: $0) }
                XCTAssertEqual(Array(out[0..<n]), expected[i], "segment \(i)")
            }
            // No fourth segment; a buffer too small for a segment gives 0.
            XCTAssertEqual(out.withUnsafeMutableBytes { TCPSegmenter.writeSegment(3, of: p, gsoSize: 4, into: $0) }, 0)
            var small = [UInt8](repeating: 0, count: 43)
            XCTAssertEqual(small.withUnsafeMutableBytes { TCPSegmenter.writeSegment(0, of: p, gsoSize: 4, into: $0) }, 0)
        }
    }

    func testOneSegmentWhenPayloadFits() {
        superPacket.withUnsafeBytes { p in
            XCTAssertEqual(TCPSegmenter.segmentCount(p, gsoSize: 1400), 1)
            var out = [UInt8](repeating: 0, count: 100)
            let n = out.withUnsafeMutableBytes { TCPSegmenter.writeSegment(0, of: p, gsoSize: 1400, into: $0) }
            XCTAssertEqual(n, superPacket.count)
            // Same headers, flags kept, checksums recomputed (IP 0x1490 was already right).
            XCTAssertEqual(Array(out[0..<20]), Array(superPacket[0..<20]))
            XCTAssertEqual(out[33], 0x99)
            XCTAssertEqual(Array(out[36..<38]), [0xc8, 0xdc])
        }
    }

    func testNotTCPIsRefused() {
        var udp = superPacket
        udp[9] = 17
        udp.withUnsafeBytes { XCTAssertEqual(TCPSegmenter.segmentCount($0, gsoSize: 4), 0) }
        var truncated = Array(superPacket[0..<30])
        truncated[3] = 30
        truncated.withUnsafeBytes { XCTAssertEqual(TCPSegmenter.segmentCount($0, gsoSize: 4), 0) }
    }

    /// RFC 1071 §3's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2, checksum 0x220d.
    func testInternetChecksumRFC1071Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        var stored = [UInt8](repeating: 0, count: 2)
        let sum = bytes.withUnsafeBytes { InternetChecksum.add($0) }
        stored.withUnsafeMutableBytes { $0.storeBytes(of: InternetChecksum.finish(sum), as: UInt16.self) }
        XCTAssertEqual(stored, [0x22, 0x0d])
        // An odd length pads with a zero byte: 00 01 f2 → 0x0001 + 0xf200 = 0xf201, checksum 0x0dfe.
        let odd = bytes[0..<3].withUnsafeBytes { InternetChecksum.add($0) }
        stored.withUnsafeMutableBytes { $0.storeBytes(of: InternetChecksum.finish(odd), as: UInt16.self) }
        XCTAssertEqual(stored, [0x0d, 0xfe])
    }

    /// The vectorised sum (32-byte SIMD steps, then 4-, 2- and 1-byte tails) gives the checksum
    /// RFC 1071 §4.1's byte-pair loop gives, for every length 0–300 and 1379–1381, 65535, at
    /// every alignment 0–3, with and without a carried-in sum, bytes from a fixed generator.
    func testInternetChecksumMatchesBytePairReference() {
        var state: UInt32 = 0x9e37_79b9
        let bytes = (0..<(65_535 + 3)).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        func reference(_ b: ArraySlice<UInt8>, initial: UInt32) -> [UInt8] {
            var sum = initial
            var k = b.startIndex
            while k < b.endIndex {
                let high = UInt32(b[k]) << 8
                let low = k + 1 < b.endIndex ? UInt32(b[k + 1]) : 0
                sum += high | low
                k += 2
            }
            while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
            let c = ~UInt16(sum)
            return [UInt8(c >> 8), UInt8(c & 0xff)]
        }
        let lengths = Array(0...300) + [1379, 1380, 1381, 65_535]
        for length in lengths {
            for offset in 0..<4 {
                let slice = bytes[offset..<(offset + length)]
                for initial: UInt16 in [0, 0xfffe] {
                    var stored = [UInt8](repeating: 0, count: 2)
                    let sum = slice.withUnsafeBytes { InternetChecksum.add($0, to: InternetChecksum.word(initial)) }
                    stored.withUnsafeMutableBytes { $0.storeBytes(of: InternetChecksum.finish(sum), as: UInt16.self) }
                    XCTAssertEqual(stored, reference(slice, initial: UInt32(initial)), "length \(length) offset \(offset) initial \(initial)")
                }
            }
        }
    }

    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: a UDP packet whose checksum field holds the pseudo-header
    /// sum (0x1421) gets the full checksum 0x92e1 at csum_start 20 + csum_offset 6.
    func testCompleteChecksumOfPartialUDP() {
        var packet: [UInt8] = [
            0x45, 0x00, 0x00, 0x21, 0x00, 0x07, 0x40, 0x00, 0x40, 0x11, 0x26, 0xc3, 0x0a, 0x00, 0x00, 0x01,
            0x0a, 0x00, 0x00, 0x02, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0x14, 0x21, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
        ]
        XCTAssertTrue(packet.withUnsafeMutableBytes { TCPSegmenter.completeChecksum($0, start: 20, offset: 6) })
        XCTAssertEqual(Array(packet[26..<28]), [0x92, 0xe1])
        XCTAssertFalse(packet.withUnsafeMutableBytes { TCPSegmenter.completeChecksum($0, start: 32, offset: 6) })
    }

    func testVirtioHeaderRoundTrip() {
        XCTAssertEqual(VirtioNetHeader.size, 10)
        let h = VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4, headerLength: 52,
                                gsoSize: 1348, checksumStart: 20, checksumOffset: 16)
        var bytes = [UInt8](repeating: 0xff, count: 10)
        bytes.withUnsafeMutableBytes { h.write(into: $0) }
        // Host order (little-endian here): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
        if UInt16(1).littleEndian == 1 {
            XCTAssertEqual(bytes, [0x01, 0x01, 52, 0, 0x44, 0x05, 20, 0, 16, 0])
        }
        XCTAssertEqual(bytes.withUnsafeBytes { VirtioNetHeader($0) }, h)
    }
}
