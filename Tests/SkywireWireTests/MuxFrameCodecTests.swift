import SkywireTestSupport
import XCTest
@testable import SkywireWire

final class MuxFrameCodecTests: XCTestCase {
    typealias Frame = MuxFrame<ArraySlice<UInt8>>

    /// One example per frame type, bytes written by hand from the PROTOCOL.md §5 table.
    static let examples: [(Frame, String)] = [
        (.open(streamID: MuxStreamID(1), destinationPort: 80, sourcePort: 49152, initialWindow: 262_144),
         "01 00000001 0050 c000 00040000"),
        (.openOK(streamID: MuxStreamID(2), initialWindow: 65536), "02 00000002 00010000"),
        (.openReject(streamID: MuxStreamID(3), code: .noSuchPort, reason: "no"), "03 00000003 01 6e6f"),
        (.openReject(streamID: MuxStreamID(3), code: .refusedByApp, reason: ""), "03 00000003 07"),
        (.data(streamID: MuxStreamID(5), payload: [0xAA, 0xBB, 0xCC]), "04 00000005 aabbcc"),
        (.window(streamID: MuxStreamID(7), increment: 4096), "05 00000007 00001000"),
        (.fin(streamID: MuxStreamID(0x0102_0304)), "06 01020304"),
        (.reset(streamID: MuxStreamID(9), code: .protocolError), "07 00000009 03"),
        (.datagram(destinationPort: 1, sourcePort: 2, payload: [0x45, 0x00]), "08 0001 0002 4500"),
        (.datagram(destinationPort: 0xFFFF, sourcePort: 0, payload: []), "08 ffff 0000"),
        (.ping(opaque: 0x0102_0304_0506_0708), "09 0102030405060708"),
        (.pong(opaque: 0xFFFF_FFFF_FFFF_FFFE), "0a fffffffffffffffe"),
        (.close(code: .normal, reason: "bye"), "0b 00 627965"),
        (.close(code: .protocolError, reason: "é"), "0b 03 c3a9"),
    ]

    func testEveryTypeEncodesToExactBytesAndRoundTrips() throws {
        var seenTypes = Set<UInt8>()
        for (frame, hex) in Self.examples {
            let expected = [UInt8](hex: hex)
            XCTAssertEqual(frame.encoded, expected, "\(frame.type)")
            XCTAssertEqual(frame.encodedLength, expected.count)
            XCTAssertEqual(try decodeFrame(expected).get(), frame, "\(frame.type)")
            seenTypes.insert(frame.type.rawValue)
        }
        XCTAssertEqual(seenTypes, Set(MuxFrameType.allCases.map(\.rawValue)))
    }

    func testEncodeIntoRawBufferAndAppend() throws {
        let frame = Frame.data(streamID: MuxStreamID(5), payload: [1, 2, 3, 4])
        var raw = [UInt8](repeating: 0xEE, count: 16)
        let n = try raw.withUnsafeMutableBytes { try frame.encode(into: $0) }
        XCTAssertEqual(n, 9)
        XCTAssertEqual(Array(raw[0..<9]), [0x04, 0, 0, 0, 5, 1, 2, 3, 4])
        XCTAssertEqual(raw[9], 0xEE, "nothing written past the frame")

        var small = [UInt8](repeating: 0, count: 8)
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { try frame.encode(into: $0) }) {
            XCTAssertEqual($0 as? MuxFrameError, .bufferTooSmall(needed: 9, available: 8))
        }

        var out: [UInt8] = [0x99]
        frame.encode(into: &out)
        Frame.fin(streamID: MuxStreamID(1)).encode(into: &out)
        XCTAssertEqual(out, [0x99, 0x04, 0, 0, 0, 5, 1, 2, 3, 4, 0x06, 0, 0, 0, 1])
    }

    func testDecodeReturnsPayloadOffsetsWithoutCopying() throws {
        let bytes = [UInt8](hex: "04 00000011 0102030405")
        let frame = try bytes.withUnsafeBytes { raw in try MuxFrame<Range<Int>>.decode(raw) }
        XCTAssertEqual(frame, .data(streamID: MuxStreamID(17), payload: 5..<10))
        let peeked = bytes.withUnsafeBytes { MuxFrame<Range<Int>>.peekData($0) }
        XCTAssertEqual(peeked?.streamID, MuxStreamID(17))
        XCTAssertEqual(peeked?.payload, 5..<10)
        XCTAssertNil([UInt8](hex: "04 00000011").withUnsafeBytes { MuxFrame<Range<Int>>.peekData($0) })
        XCTAssertNil([UInt8](hex: "08 0001 0002 ff").withUnsafeBytes { MuxFrame<Range<Int>>.peekData($0) })

        let datagram = try [UInt8](hex: "08 0035 1234 deadbeef").withUnsafeBytes { try MuxFrame<Range<Int>>.decode($0) }
        XCTAssertEqual(datagram, .datagram(destinationPort: 0x35, sourcePort: 0x1234, payload: 5..<9))

        // The ArraySlice path shares the input's storage.
        let decoded = try decodeFrame(bytes).get()
        guard case .data(_, let slice) = decoded else { return XCTFail("not DATA") }
        XCTAssertEqual(slice.startIndex, 5)
        XCTAssertEqual(Array(slice), [1, 2, 3, 4, 5])
    }

    func testMalformedFramesGiveTypedErrors() {
        let cases: [(String, MuxFrameError)] = [
            ("", .empty),
            ("00", .unknownType(0x00)),
            ("0c 00000001", .unknownType(0x0C)),
            ("ff", .unknownType(0xFF)),
            ("01 00000001 0050 c000 000400", .truncated(.open, length: 12, minimum: 13)),
            ("01 00000001 0050 c000 00040000 00", .wrongLength(.open, length: 14, expected: 13)),
            ("01 00000000 0050 c000 00040000", .zeroStreamID(.open)),
            ("02 00000002 000100", .truncated(.openOK, length: 8, minimum: 9)),
            ("02 00000002 0001000000", .wrongLength(.openOK, length: 10, expected: 9)),
            ("03 00000003", .truncated(.openReject, length: 5, minimum: 6)),
            ("03 00000003 01 ff", .invalidUTF8Reason(.openReject)),
            ("03 00000000 01", .zeroStreamID(.openReject)),
            ("04 000000", .truncated(.data, length: 4, minimum: 5)),
            ("04 00000005", .emptyData(streamID: MuxStreamID(5))),
            ("04 00000000 01", .zeroStreamID(.data)),
            ("05 00000007 00000000", .zeroWindowIncrement(streamID: MuxStreamID(7))),
            ("05 00000007 000010", .truncated(.window, length: 8, minimum: 9)),
            ("06 000001", .truncated(.fin, length: 4, minimum: 5)),
            ("06 00000001 00", .wrongLength(.fin, length: 6, expected: 5)),
            ("06 00000000", .zeroStreamID(.fin)),
            ("07 00000009", .truncated(.reset, length: 5, minimum: 6)),
            ("07 00000009 0300", .wrongLength(.reset, length: 7, expected: 6)),
            ("08 0001 00", .truncated(.datagram, length: 4, minimum: 5)),
            ("09 01020304050607", .truncated(.ping, length: 8, minimum: 9)),
            ("0a 0102030405060708 09", .wrongLength(.pong, length: 10, expected: 9)),
            ("0b", .truncated(.close, length: 1, minimum: 2)),
            ("0b 00 c3", .invalidUTF8Reason(.close)),
        ]
        for (hex, expected) in cases {
            switch decodeFrame([UInt8](hex: hex)) {
            case .success(let frame): XCTFail("\(hex) decoded as \(frame)")
            case .failure(let error):
                XCTAssertEqual(error, expected, hex)
                XCTAssertFalse(error.description.isEmpty)
            }
        }
    }

    func testEveryPrefixAndRandomBytesNeverCrash() {
        for (frame, _) in Self.examples {
            let bytes = frame.encoded
            for cut in 0..<bytes.count {
                _ = decodeFrame(Array(bytes[0..<cut]))
            }
        }
        var rng = SeededGenerator(seed: 1)
        var decodedSome = false
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...24, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 0 { bytes[0] = UInt8.random(in: 0...0x0D, using: &rng) }
            if case .success(let frame) = decodeFrame(bytes) {
                decodedSome = true
                if case .data = frame { XCTAssertEqual(frame.encoded, bytes) }
                if case .datagram = frame { XCTAssertEqual(frame.encoded, bytes) }
            }
        }
        XCTAssertTrue(decodedSome)
    }

    func testReasonTruncationKeepsCharacterBoundaries() {
        let long = String(repeating: "é", count: 150)   // 300 UTF-8 bytes
        let cut = MuxFrameLayout.truncatedReason(long)
        XCTAssertEqual(cut.utf8.count, 200)
        XCTAssertEqual(cut, String(repeating: "é", count: 100))
        XCTAssertEqual(MuxFrameLayout.truncatedReason("short"), "short")
    }
}
