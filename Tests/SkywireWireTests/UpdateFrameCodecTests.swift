import XCTest
@testable import SkywireWire

final class UpdateFrameCodecTests: XCTestCase {
    static let digest = [UInt8](0..<32)
    static let digestHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    /// One example per frame type, bytes written by hand from the PROTOCOL.md §6 table.
    static let examples: [(UpdateFrame, String)] = [
        (.list, "01 01 00000000"),
        (.get(name: "a.raucb", offset: 0x0102_0304_0506_0708), "01 02 0000000f 0102030405060708 612e7261756362"),
        (.listOK([]), "01 11 00000002 0000"),
        (.listOK([UpdateBundleInfo(name: "v2.raucb", size: 0x1000, sha256: digest)]),
         "01 11 00000033 0001 0000000000001000 \(digestHex) 08 76322e7261756362"),
        (.getOK(UpdateGetHeader(size: 20_000_000, offset: 4_000_000, sha256: digest)),
         "01 12 00000030 0000000001312d00 00000000003d0900 \(digestHex)"),
        (.error(.noSuchBundle, "no"), "01 1f 00000003 01 6e6f"),
        (.error(.busy, ""), "01 1f 00000001 04"),
    ]

    /// Exact bytes, round trip, and the same frames fed one byte at a time.
    func testExactBytesRoundTripAndByteByByteFeed() throws {
        try assertFrameExamples(Self.examples, decoder: UpdateFrameDecoder.self) { try $0.encoded() }
    }

    /// After `getOK` the stream is raw bytes: what came with the header is handed back whole.
    func testBytesAfterGetOKAreTheRemainder() throws {
        var bytes = try UpdateFrame.getOK(UpdateGetHeader(size: 10, offset: 7, sha256: Self.digest)).encoded()
        bytes += [0xAA, 0xBB, 0xCC]
        var decoder = UpdateFrameDecoder()
        decoder.feed(bytes)
        XCTAssertEqual(try decoder.next(), .getOK(UpdateGetHeader(size: 10, offset: 7, sha256: Self.digest)))
        XCTAssertEqual(decoder.takeRemainder(), [0xAA, 0xBB, 0xCC])
        XCTAssertEqual(decoder.bufferedBytes, 0)
    }

    func testBundleNames() {
        for good in ["x.raucb", "skywire-qemu-arm64-ab-v2.raucb", "é.raucb", String(repeating: "n", count: 249) + ".raucb"] {
            XCTAssertNil(UpdateProtocol.nameProblem(good), good)
        }
        for bad in ["", ".raucb", "x", "x.raucb.part", "../x.raucb", "a/b.raucb", "/etc/x.raucb", ".hidden.raucb",
                    "..raucb", "a\u{0}.raucb", "a\n.raucb", String(repeating: "n", count: 250) + ".raucb"] {
            XCTAssertNotNil(UpdateProtocol.nameProblem(bad), bad)
            XCTAssertThrowsError(try UpdateFrame.get(name: bad, offset: 0).encoded(), bad)
        }
    }

    func testLimitsOnEncoding() {
        let entry = UpdateBundleInfo(name: "a.raucb", size: 1, sha256: Self.digest)
        XCTAssertNoThrow(try UpdateFrame.listOK(Array(repeating: entry, count: UpdateProtocol.maxEntries)).encoded())
        XCTAssertThrowsError(try UpdateFrame.listOK(Array(repeating: entry, count: UpdateProtocol.maxEntries + 1)).encoded())
        XCTAssertThrowsError(try UpdateFrame.listOK([UpdateBundleInfo(name: "a.raucb", size: 1, sha256: [1])]).encoded())
        XCTAssertThrowsError(try UpdateFrame.getOK(UpdateGetHeader(size: 1, offset: 2, sha256: Self.digest)).encoded())
        // A long error message is cut at a character boundary.
        let long = String(repeating: "é", count: UpdateProtocol.maxErrorMessage)
        XCTAssertEqual(try UpdateFrame.error(.readFailed, long).encoded().count, UpdateProtocol.headerLength + 1 + UpdateProtocol.maxErrorMessage)
    }

    /// Each malformed input is refused with a message naming the problem; nothing is kept after it.
    func testMalformedInputIsRefused() {
        let digestHex = Self.digestHex
        let cases: [(String, String)] = [
            ("02 01 00000000", "version 2"),
            ("01 03 00000000", "unknown frame type 0x3"),
            ("01 12 00010001", "at most \(UpdateProtocol.maxPayload)"),
            ("01 01 00000001 00", "1 bytes after the payload"),
            ("01 02 00000007 00000000000000", "payload too short"),
            ("01 02 0000000a 0000000000000000 2e2e", "a bundle name"),
            ("01 02 00000012 0000000000000000 2e2e2f782e7261756362", "does not start with '.'"),
            ("01 02 00000011 0000000000000000 612f782e7261756362", "no '/'"),
            ("01 02 0000000f 0000000000000000 ff2e7261756362", "not UTF-8"),
            ("01 11 00000002 0081", "at most \(UpdateProtocol.maxEntries)"),
            ("01 11 00000004 0001 0000", "payload too short"),
            ("01 11 00000033 0001 0000000000001000 \(digestHex) 09 76322e7261756362", "payload too short"),
            ("01 12 00000030 0000000000000001 0000000000000002 \(digestHex)", "past the size"),
            ("01 12 0000002f 0000000000000001 0000000000000000 \(String(digestHex.dropLast(2)))", "payload too short"),
            ("01 1f 00000001 09", "unknown code 9"),
            ("01 1f 00000000", "payload too short"),
            ("01 1f 00000002 01 ff", "not UTF-8"),
        ]
        for (hex, reason) in cases {
            var decoder = UpdateFrameDecoder()
            decoder.feed([UInt8](hex: hex))
            XCTAssertThrowsError(try decoder.next(), hex) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(hex): \(error) lacks '\(reason)'")
            }
            XCTAssertEqual(decoder.bufferedBytes, 0, hex)
            decoder.feed(try! UpdateFrame.list.encoded())
            XCTAssertThrowsError(try decoder.next(), "\(hex): the decoder goes on after an error")
        }
    }

    /// A header announcing more than `maxPayload` is refused before its payload arrives.
    func testOversizedLengthIsRefusedFromTheHeader() {
        var decoder = UpdateFrameDecoder()
        decoder.feed([UInt8](hex: "01 02 ffffffff"))
        XCTAssertThrowsError(try decoder.next())
    }
}
