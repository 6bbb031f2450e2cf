import XCTest
@testable import SkywireWire

final class PtyFrameCodecTests: XCTestCase {
    /// One example per frame type, bytes written by hand from the docs/pty.md table.
    static let examples: [(PtyFrame, String)] = [
        (.open(PtyOpenRequest(mode: .exec, argv: ["ls", "-l"], term: "xt", size: .init(rows: 24, columns: 80))),
         "01 00000018 01 02 0018 0050 00000000 0002 7874 0002 0002 6c73 0002 2d6c"),
        (.open(PtyOpenRequest(mode: .copyPut, argv: ["/x"], fileMode: 0o755)),
         "01 00000012 01 03 0000 0000 000001ed 0000 0001 0002 2f78"),
        (.open(PtyOpenRequest(mode: .shell)), "01 0000000e 01 01 0000 0000 00000000 0000 0000"),
        (.stdin([0x61, 0x0d]), "02 00000002 610d"),
        (.stdout([0x41]), "03 00000001 41"),
        (.stderr([]), "04 00000000"),
        (.resize(.init(rows: 50, columns: 132)), "05 00000004 0032 0084"),
        (.signal(.interrupt), "06 00000001 02"),
        (.exit(.exited(3)), "07 00000002 00 03"),
        (.exit(.signalled(9)), "07 00000002 01 09"),
        (.eof, "08 00000000"),
        (.error("no"), "09 00000002 6e6f"),
        (.digest([UInt8](repeating: 0xAB, count: 32)), "0a 00000020" + String(repeating: "ab", count: 32)),
        (.fileInfo(PtyFileInfo(mode: 0o644, size: 0x1_0000_0001)), "0b 0000000c 000001a4 0000000100000001"),
    ]

    func testEveryTypeEncodesToExactBytesAndRoundTrips() throws {
        var seen = Set<UInt8>()
        for (frame, hex) in Self.examples {
            let expected = [UInt8](hex: hex)
            XCTAssertEqual(frame.encoded, expected, "\(frame.type)")
            var decoder = PtyFrameDecoder()
            decoder.feed(expected)
            XCTAssertEqual(try decoder.next(), frame)
            XCTAssertNil(try decoder.next())
            XCTAssertEqual(decoder.bufferedBytes, 0)
            seen.insert(frame.type.rawValue)
        }
        XCTAssertEqual(seen, Set(PtyFrameType.allCases.map(\.rawValue)))
    }

    func testFastDataEncoderMatchesTheEnum() {
        var out: [UInt8] = []
        [UInt8]([1, 2, 3]).withUnsafeBytes { PtyFrame.encodeData(.stdout, $0, into: &out) }
        XCTAssertEqual(out, PtyFrame.stdout([1, 2, 3]).encoded)
    }

    /// Frames split at every byte boundary, and several in one feed, decode the same.
    func testDecodesByteByByteAndBackToBack() throws {
        let all = Self.examples.flatMap { $0.0.encoded }
        var decoder = PtyFrameDecoder()
        var frames: [PtyFrame] = []
        for byte in all {
            decoder.feed([byte])
            while let f = try decoder.next() { frames.append(f) }
        }
        XCTAssertEqual(frames, Self.examples.map(\.0))
        var whole = PtyFrameDecoder()
        whole.feed(all)
        var again: [PtyFrame] = []
        while let f = try whole.next() { again.append(f) }
        XCTAssertEqual(again, frames)
    }

    /// An oversized length is refused from the header alone: nothing of the payload is waited for or held.
    func testOversizedFrameRefusedFromItsHeader() {
        var decoder = PtyFrameDecoder()
        decoder.feed([UInt8](hex: "02 00010001"))
        XCTAssertThrowsError(try decoder.next()) { XCTAssertTrue("\($0)".contains("at most 65536")) }
        XCTAssertEqual(decoder.bufferedBytes, 0)
        // The decoder stays failed.
        decoder.feed([UInt8](hex: "08 00000000"))
        XCTAssertThrowsError(try decoder.next())
        // The largest allowed frame is accepted.
        var ok = PtyFrameDecoder()
        ok.feed(PtyFrame.stdin([UInt8](repeating: 7, count: PtyProtocol.maxPayload)).encoded)
        XCTAssertEqual(try ok.next(), .stdin([UInt8](repeating: 7, count: PtyProtocol.maxPayload)))
    }

    func testMalformedFramesRefused() {
        let bad: [(String, String)] = [
            ("ff 00000000", "unknown frame type"),
            ("01 0000000e 02 01 0000 0000 00000000 0000 0000", "version"),
            ("01 0000000e 01 09 0000 0000 00000000 0000 0000", "unknown mode"),
            ("01 0000000e 01 03 0000 0000 00000800 0000 0000", "file mode"),
            ("01 0000000e 01 02 0000 0000 00000000 0000 0001", "too short"),
            ("01 00000011 01 02 0000 0000 00000000 0000 0001 0000 00", "trailing"),
            ("01 00000011 01 02 0000 0000 00000000 0000 0001 0001 ff", "not UTF-8"),
            ("01 00000011 01 02 0000 0000 00000000 0000 0001 0001 00", "NUL"),
            ("01 0000000e 01 02 0000 0000 00000000 0000 0401", "arguments"),
            ("05 00000003 0000 00", "too short"),
            ("06 00000001 13", "not one a client may send"),
            ("07 00000002 02 00", "unknown kind"),
            ("07 00000002 01 00", "no signal"),
            ("08 00000001 00", "trailing"),
            ("0a 00000001 00", "expected 32"),
            ("0b 0000000b 000001a4 00000000000000", "too short"),
            ("09 00000002 c328", "error: the message is not UTF-8"),
            ("0b 0000000c 00000de4 0000000000000000", "bits beyond 0o1777"),
        ]
        for (hex, expected) in bad {
            var decoder = PtyFrameDecoder()
            decoder.feed([UInt8](hex: hex))
            XCTAssertThrowsError(try decoder.next(), hex) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(hex): \(error)")
            }
        }
    }

    /// An `error` message reaches the client's terminal: control characters (an escape sequence,
    /// C1 controls) arrive as spaces, and our own long messages are cut at a character boundary
    /// so that they still decode (found by fuzz-pty-frame: invalid UTF-8 was repaired, not refused).
    func testErrorMessagesAreShownWithoutControlCharacters() throws {
        var decoder = PtyFrameDecoder()
        decoder.feed([UInt8](hex: "09 0000000a 1b5b324a6869 c29b 0a 21"))
        XCTAssertEqual(try decoder.next(), .error(" [2Jhi  !"))
        let long = String(repeating: "é", count: PtyProtocol.maxErrorMessage)  // 2 bytes each
        let encoded = PtyFrame.error(long).encoded
        XCTAssertEqual(encoded.count, PtyProtocol.headerLength + PtyProtocol.maxErrorMessage)
        var back = PtyFrameDecoder()
        back.feed(encoded)
        XCTAssertEqual(try back.next(), .error(String(repeating: "é", count: PtyProtocol.maxErrorMessage / 2)))
        XCTAssertEqual(PtyProtocol.displayableErrorMessage("a\u{7F}b\tc"), "a b c")
    }

    /// Random bytes never crash the decoder, and it never holds more than one frame's worth.
    func testRandomInputIsBounded() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var decoder = PtyFrameDecoder()
            let count = Int.random(in: 0..<64, using: &rng)
            decoder.feed((0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
            while true {
                guard let frame = try? decoder.next() else { break }
                _ = frame
            }
            XCTAssertLessThanOrEqual(decoder.bufferedBytes, PtyProtocol.headerLength + PtyProtocol.maxPayload)
        }
    }

    func testShellStatus() {
        XCTAssertEqual(PtyExitStatus.exited(3).shellStatus, 3)
        XCTAssertEqual(PtyExitStatus.signalled(9).shellStatus, 137)
    }
}
