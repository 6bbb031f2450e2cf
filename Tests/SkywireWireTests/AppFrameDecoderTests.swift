import XCTest
@testable import SkywireWire

/// The header, length and sticky-error rules of the three app frame decoders (Skychat, PTY,
/// update), checked byte by byte for each: what one generic decoder could get wrong for one of
/// the layouts (`version | type | length:u16`, `type | length:u32`, `version | type | length:u32`).
final class AppFrameDecoderTests: XCTestCase {
    /// The header lengths the docs give (docs/skychat.md, docs/pty.md, PROTOCOL.md §6), now derived
    /// from each `frameHeader`.
    func testHeaderLengthsAreTheDocumentedOnes() {
        XCTAssertEqual(ChatProtocol.headerLength, 4)
        XCTAssertEqual(PtyProtocol.headerLength, 5)
        XCTAssertEqual(UpdateProtocol.headerLength, 6)
    }

    /// The message `"\(error)"` of the first `next()` after `hex` was fed in one piece.
    private func firstError<D: ExampleFrameDecoder>(_: D.Type, _ hex: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        var decoder = D()
        decoder.feed([UInt8](hex: hex))
        do {
            let frame = try decoder.nextFrame()
            XCTFail("\(hex): no error, \(String(describing: frame))", file: file, line: line)
            return nil
        } catch {
            XCTAssertEqual(decoder.bufferedBytes, 0, "\(hex): bytes kept after the error", file: file, line: line)
            return "\(error)"
        }
    }

    /// A header's problem is found only once the whole header is there: each byte before its last
    /// is held (nil, nothing thrown), the last one throws exactly `expected`.
    private func assertRefusedWhenHeaderComplete<D: ExampleFrameDecoder>(
        _: D.Type, _ hex: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let bytes = [UInt8](hex: hex)
        var decoder = D()
        for (i, byte) in bytes.enumerated().dropLast() {
            decoder.feed([byte])
            XCTAssertNil(try decoder.nextFrame(), "\(hex): byte \(i)", file: file, line: line)
            XCTAssertEqual(decoder.bufferedBytes, i + 1, "\(hex): byte \(i)", file: file, line: line)
        }
        decoder.feed(bytes.suffix(1))
        XCTAssertThrowsError(try decoder.nextFrame(), hex, file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, hex, file: file, line: line)
        }
        XCTAssertEqual(decoder.bufferedBytes, 0, hex, file: file, line: line)
    }

    func testHeaderProblemsAreFoundOnlyFromTheWholeHeader() {
        assertRefusedWhenHeaderComplete(ChatFrameDecoder.self, "02 01 0000", "protocol version 2, expected 1")
        assertRefusedWhenHeaderComplete(ChatFrameDecoder.self, "01 09 0000", "unknown frame type 0x9")
        assertRefusedWhenHeaderComplete(ChatFrameDecoder.self, "01 01 105b", "frame of 4187 bytes, at most 4186")
        assertRefusedWhenHeaderComplete(UpdateFrameDecoder.self, "02 01 00000000", "protocol version 2, expected 1")
        assertRefusedWhenHeaderComplete(UpdateFrameDecoder.self, "01 03 00000000", "unknown frame type 0x3")
        assertRefusedWhenHeaderComplete(UpdateFrameDecoder.self, "01 12 00010001", "frame of 65537 bytes, at most 65536")
        assertRefusedWhenHeaderComplete(PtyFrameDecoder.self, "ff 00000000", "unknown frame type 0xff")
        assertRefusedWhenHeaderComplete(PtyFrameDecoder.self, "02 00010001", "frame of 65537 bytes, at most 65536")
    }

    /// Every way of cutting two frames into two feeds gives the two frames, and leaves nothing held.
    private func assertSplitAtEveryByte<D: ExampleFrameDecoder>(
        _: D.Type, _ frames: [D.Frame], _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        for cut in 0...bytes.count {
            var decoder = D()
            var out: [D.Frame] = []
            for piece in [bytes[..<cut], bytes[cut...]] {
                decoder.feed(piece)
                while let frame = try decoder.nextFrame() { out.append(frame) }
            }
            XCTAssertEqual(out, frames, "cut at \(cut)", file: file, line: line)
            XCTAssertEqual(decoder.bufferedBytes, 0, "cut at \(cut)", file: file, line: line)
        }
    }

    func testTwoFramesSplitAtEveryByte() throws {
        let chat = ChatFrameCodecTests.examples.prefix(2)
        try assertSplitAtEveryByte(ChatFrameDecoder.self, chat.map(\.0), chat.flatMap { [UInt8](hex: $0.1) })
        let update = UpdateFrameCodecTests.examples.suffix(3)
        try assertSplitAtEveryByte(UpdateFrameDecoder.self, update.map(\.0), update.flatMap { [UInt8](hex: $0.1) })
        let pty = PtyFrameCodecTests.examples.prefix(2)
        try assertSplitAtEveryByte(PtyFrameDecoder.self, pty.map(\.0), pty.flatMap { [UInt8](hex: $0.1) })
    }

    /// A length of exactly `maxPayload` (`longest`) passes the header check: the decoder waits for
    /// the whole payload (nil one byte short), then judges the payload (`payloadError`, not a
    /// length error). Each header of `tooLong` is refused at once with its error.
    private func assertLengthLimits<D: ExampleFrameDecoder>(
        _: D.Type, longest hex: String, maxPayload: Int, payloadError: String, tooLong: KeyValuePairs<String, String>,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let header = [UInt8](hex: hex)
        var decoder = D()
        decoder.feed(header)
        XCTAssertNil(try decoder.nextFrame(), hex, file: file, line: line)
        decoder.feed([UInt8](repeating: 0, count: maxPayload - 1))
        XCTAssertNil(try decoder.nextFrame(), "\(hex): one byte short", file: file, line: line)
        XCTAssertEqual(decoder.bufferedBytes, header.count + maxPayload - 1, file: file, line: line)
        decoder.feed([0])
        XCTAssertThrowsError(try decoder.nextFrame(), hex, file: file, line: line) { error in
            XCTAssertEqual("\(error)", payloadError, hex, file: file, line: line)
        }
        for (hex, expected) in tooLong {
            XCTAssertEqual(firstError(D.self, hex, file: file, line: line), expected, hex, file: file, line: line)
        }
    }

    func testLongestLengthAndOneMorePerFormat() {
        XCTAssertEqual(ChatProtocol.maxPayload, 0x105a)
        assertLengthLimits(ChatFrameDecoder.self, longest: "01 02 105a", maxPayload: ChatProtocol.maxPayload,
                           payloadError: "ack: 4186 bytes, expected 9",
                           tooLong: ["01 02 105b": "frame of 4187 bytes, at most 4186", "01 02 ffff": "frame of 65535 bytes, at most 4186"])
        XCTAssertEqual(UpdateProtocol.maxPayload, 0x1_0000)
        assertLengthLimits(UpdateFrameDecoder.self, longest: "01 01 00010000", maxPayload: UpdateProtocol.maxPayload,
                           payloadError: "list: 65536 bytes after the payload",
                           tooLong: ["01 01 00010001": "frame of 65537 bytes, at most 65536",
                                     "01 01 01000000": "frame of 16777216 bytes, at most 65536",
                                     "01 01 ffffffff": "frame of 4294967295 bytes, at most 65536"])
        XCTAssertEqual(PtyProtocol.maxPayload, 0x1_0000)
        assertLengthLimits(PtyFrameDecoder.self, longest: "08 00010000", maxPayload: PtyProtocol.maxPayload,
                           payloadError: "eof: 65536 trailing bytes",
                           tooLong: ["08 00010001": "frame of 65537 bytes, at most 65536",
                                     "08 01000000": "frame of 16777216 bytes, at most 65536",
                                     "08 ffffffff": "frame of 4294967295 bytes, at most 65536"])
    }

    /// Which header problem is named when there are several: version, then type, then length for
    /// Skychat and update; PTY (no version byte) names an oversized length before an unknown type.
    /// An unknown type is refused from the header, before its payload arrives.
    func testOrderOfTheHeaderChecks() {
        XCTAssertEqual(firstError(ChatFrameDecoder.self, "02 09 ffff"), "protocol version 2, expected 1")
        XCTAssertEqual(firstError(ChatFrameDecoder.self, "01 09 ffff"), "unknown frame type 0x9")
        XCTAssertEqual(firstError(ChatFrameDecoder.self, "01 00 0005"), "unknown frame type 0x0")
        XCTAssertEqual(firstError(UpdateFrameDecoder.self, "00 03 ffffffff"), "protocol version 0, expected 1")
        XCTAssertEqual(firstError(UpdateFrameDecoder.self, "01 03 ffffffff"), "unknown frame type 0x3")
        XCTAssertEqual(firstError(UpdateFrameDecoder.self, "01 20 00000005"), "unknown frame type 0x20")
        XCTAssertEqual(firstError(PtyFrameDecoder.self, "ff 00010001"), "frame of 65537 bytes, at most 65536")
        XCTAssertEqual(firstError(PtyFrameDecoder.self, "ff 00010000"), "unknown frame type 0xff")
        XCTAssertEqual(firstError(PtyFrameDecoder.self, "00 00000005"), "unknown frame type 0x0")
    }

    /// A good frame before a bad one is delivered; the bad one's error is then thrown by every
    /// call, the same each time, and nothing fed after it is held (the PTY decoder used to keep
    /// buffering what was fed after its error, without bound).
    private func assertErrorSticks<D: ExampleFrameDecoder>(
        _: D.Type, good: D.Frame, goodHex: String, badHex: String, _ expected: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let goodBytes = [UInt8](hex: goodHex)
        var decoder = D()
        decoder.feed(goodBytes + [UInt8](hex: badHex) + goodBytes)
        XCTAssertEqual(try decoder.nextFrame(), good, file: file, line: line)
        for round in 0..<3 {
            XCTAssertThrowsError(try decoder.nextFrame(), "round \(round)", file: file, line: line) { error in
                XCTAssertEqual("\(error)", expected, "round \(round)", file: file, line: line)
            }
            XCTAssertEqual(decoder.bufferedBytes, 0, "round \(round)", file: file, line: line)
            decoder.feed(goodBytes)
            XCTAssertEqual(decoder.bufferedBytes, 0, "round \(round): fed after the error", file: file, line: line)
        }
    }

    func testErrorSticksAfterTheFirstBadFrame() throws {
        let (chatGood, chatHex) = ChatFrameCodecTests.examples[2]
        try assertErrorSticks(ChatFrameDecoder.self, good: chatGood, goodHex: chatHex, badHex: "01 02 0009 0000000000000001 02",
                              "ack: unknown status 2")
        try assertErrorSticks(ChatFrameDecoder.self, good: chatGood, goodHex: chatHex, badHex: "03 02 0009", "protocol version 3, expected 1")
        let (updateGood, updateHex) = UpdateFrameCodecTests.examples[0]
        try assertErrorSticks(UpdateFrameDecoder.self, good: updateGood, goodHex: updateHex, badHex: "01 1f 00000001 09",
                              "error: unknown code 9")
        try assertErrorSticks(UpdateFrameDecoder.self, good: updateGood, goodHex: updateHex, badHex: "01 01 00010001",
                              "frame of 65537 bytes, at most 65536")
        try assertErrorSticks(PtyFrameDecoder.self, good: .eof, goodHex: "08 00000000", badHex: "07 00000002 02 00", "exit: unknown kind 2")
        try assertErrorSticks(PtyFrameDecoder.self, good: .eof, goodHex: "08 00000000", badHex: "0c 00000000", "unknown frame type 0xc")
    }
}
