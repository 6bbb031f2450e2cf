import XCTest
@testable import SkywireVPN

/// Byte-exact checks of the TUN-side TCP coalescing (expected bytes built by hand, checksums
/// per RFC 1071 over RFC 791/793 headers).
final class TCPCoalescerTests: XCTestCase {
    /// 10.0.0.1:40000 → 10.0.0.2:5201, ack 2000, window 512: payload 00 01 02 03 (seq 1000, ACK),
    /// 04 05 06 07 (seq 1004, ACK), 08 09 (seq 1008, PSH|ACK); IP ids 0x1234.. 0x1236.
    let segments: [[UInt8]] = [
        [0x45, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x96, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x10, 0x02, 0x00, 0xdb, 0x80, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03],
        [0x45, 0x00, 0x00, 0x2c, 0x12, 0x35, 0x40, 0x00, 0x40, 0x06, 0x14, 0x95, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xec, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x10, 0x02, 0x00, 0xd3, 0x74, 0x00, 0x00, 0x04, 0x05, 0x06, 0x07],
        [0x45, 0x00, 0x00, 0x2a, 0x12, 0x36, 0x40, 0x00, 0x40, 0x06, 0x14, 0x96, 0x0a, 0x00, 0x00, 0x01,
         0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xf0, 0x00, 0x00, 0x07, 0xd0,
         0x50, 0x18, 0x02, 0x00, 0xd5, 0x6d, 0x00, 0x00, 0x08, 0x09],
    ]
    /// The super-packet: first headers, total length 50, IP checksum 0x1490, PSH from the last
    /// segment, and the pseudo-header sum 0x1427 (TCP length 30) in the checksum field.
    let merged: [UInt8] = [
        0x45, 0x00, 0x00, 0x32, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x90, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0,
        0x50, 0x18, 0x02, 0x00, 0x14, 0x27, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09,
    ]

    private func run(_ packets: [[UInt8]], flushAtEnd: Bool = true) -> [(VirtioNetHeader, [UInt8])] {
        let c = TCPCoalescer()
        var out: [(VirtioNetHeader, [UInt8])] = []
        for p in packets {
            p.withUnsafeBytes { c.add($0) { h, b in out.append((h, Array(b))) } }
        }
        if flushAtEnd { c.flush { h, b in out.append((h, Array(b))) } }
        return out
    }

    func testInOrderSegmentsMergeByteExact() {
        let out = run(segments)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].1, merged)
        XCTAssertEqual(out[0].0, VirtioNetHeader(flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4,
                                                 headerLength: 40, gsoSize: 4, checksumStart: 20, checksumOffset: 16))
        // Completing the checksum as the kernel would gives the one of the whole segment (0xc95d).
        var done = out[0].1
        XCTAssertTrue(done.withUnsafeMutableBytes { TCPSegmenter.completeChecksum($0, start: 20, offset: 16) })
        XCTAssertEqual(Array(done[36..<38]), [0xc9, 0x5d])
    }

    func testNothingLeavesBeforeTheBurstEnds() {
        XCTAssertTrue(run(segments, flushAtEnd: false).isEmpty)
    }

    func testSingleSegmentPassesUnchanged() {
        let out = run([segments[0]])
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].0, VirtioNetHeader())
        XCTAssertEqual(out[0].1, segments[0])
    }

    func testGapStartsANewSuperPacket() {
        // seq 1000, then 1008: the second cannot follow the first.
        let out = run([segments[0], segments[2]])
        XCTAssertEqual(out.map(\.1), [segments[0], segments[2]])
        XCTAssertEqual(out.map(\.0), [VirtioNetHeader(), VirtioNetHeader()])
    }

    func testNonTCPAndNonACKPassThroughInOrder() {
        var udp = segments[1]
        udp[9] = 17
        var syn = segments[1]
        syn[33] = 0x02
        // UDP overtakes nothing of its own flow; the SYN on the TCP flow flushes it first.
        let out = run([segments[0], udp, syn])
        XCTAssertEqual(out.map(\.1), [udp, segments[0], syn])
    }

    func testTwoFlowsMergeSeparately() {
        // The same segments from another source port (40001): ports differ, checksums are not
        // checked by the coalescer, so the stale ones are fine here.
        let other = segments.map { s -> [UInt8] in var t = s; t[21] = 0x41; return t }
        let out = run([segments[0], other[0], segments[1], other[1], segments[2], other[2]])
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(out[0].1, merged)
        XCTAssertEqual(Array(out[1].1[0..<20]), Array(merged[0..<20]))
        XCTAssertEqual(Array(out[1].1[40...]), Array(merged[40...]))
        XCTAssertEqual(out[1].0.gsoType, VirtioNetHeader.gsoTCPv4)
    }

    /// Segment, then coalesce: the original stream comes back (payload and headers).
    func testSegmenterAndCoalescerRoundTrip() {
        var payload = [UInt8](repeating: 0, count: 5000)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 7) }
        var big = Array(merged[0..<40])
        big[2] = UInt8((40 + payload.count) >> 8)
        big[3] = UInt8((40 + payload.count) & 0xff)
        big[33] = 0x10
        big += payload
        var segs: [[UInt8]] = []
        big.withUnsafeBytes { p in
            let n = TCPSegmenter.segmentCount(p, gsoSize: 1348)
            XCTAssertEqual(n, 4)
            for i in 0..<n {
                var out = [UInt8](repeating: 0, count: 2048)
                let len = out.withUnsafeMutableBytes { TCPSegmenter.writeSegment(i, of: p, gsoSize: 1348, into: $0) }
                segs.append(Array(out[0..<len]))
            }
        }
        let out = run(segs)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(out[0].0.gsoSize, 1348)
        XCTAssertEqual(Array(out[0].1[40...]), payload)
        XCTAssertEqual(Array(out[0].1[0..<4]), Array(big[0..<4]))
    }
}
