import XCTest
@testable import SkywireWire

final class ChatFrameCodecTests: XCTestCase {
    /// One example per frame shape, bytes written by hand from the docs/skychat.md table.
    static let examples: [(ChatFrame, String)] = [
        (.message(ChatWireMessage(id: 0x0102030405060708, timeMillis: 0x0000_018C_0000_0001, text: "hi")),
         "01 01 0013 0102030405060708 0000018c00000001 00 6869"),
        (.message(ChatWireMessage(id: 1, timeMillis: 2, group: ChatGroupRef(id: 0xAABB, name: "ab"), text: "é")),
         "01 01 001e 0000000000000001 0000000000000002 01 000000000000aabb 02 6162 c3a9"),
        (.ack(id: 0xFFFF_FFFF_FFFF_FFFF, status: .delivered), "01 02 0009 ffffffffffffffff 00"),
        (.ack(id: 7, status: .retryLater), "01 02 0009 0000000000000007 01"),
    ]

    /// Exact bytes, round trip, and the same frames fed one byte at a time.
    func testExactBytesRoundTripAndByteByByteFeed() throws {
        try assertFrameExamples(Self.examples, decoder: ChatFrameDecoder.self) { try $0.encoded() }
    }

    func testLargestMessageFitsAndOneByteMoreIsRefused() throws {
        let name = String(repeating: "n", count: ChatProtocol.maxGroupNameBytes)
        let text = String(repeating: "t", count: ChatProtocol.maxTextBytes)
        let frame = ChatFrame.message(ChatWireMessage(id: 1, timeMillis: 1, group: ChatGroupRef(id: 1, name: name), text: text))
        let bytes = try frame.encoded()
        XCTAssertEqual(bytes.count, ChatProtocol.headerLength + ChatProtocol.maxPayload)
        var decoder = ChatFrameDecoder()
        decoder.feed(bytes)
        XCTAssertEqual(try decoder.next(), frame)
        XCTAssertThrowsError(try ChatFrame.message(ChatWireMessage(id: 1, timeMillis: 1, text: text + "t")).encoded())
        XCTAssertThrowsError(try ChatFrame.message(ChatWireMessage(id: 1, timeMillis: 1, text: "")).encoded())
        XCTAssertThrowsError(try ChatFrame.message(ChatWireMessage(id: 1, timeMillis: 1, group: ChatGroupRef(id: 1, name: name + "n"), text: "x")).encoded())
    }

    /// Each malformed input is refused with a message naming the problem; nothing is kept after it.
    func testMalformedInputIsRefused() {
        let cases: [(String, String)] = [
            ("02 01 0000", "version 2"),
            ("01 09 0000", "unknown frame type 0x9"),
            ("01 01 105b", "at most \(ChatProtocol.maxPayload)"),  // 4187 = maxPayload + 1
            ("01 01 0011 0000000000000001 0000000000000001 00", "empty"),
            ("01 01 0012 0000000000000001 0000000000000001 02 41", "unknown flags"),
            ("01 01 0013 0000000000000001 0000000000000001 00 ff41", "not UTF-8"),
            ("01 01 0013 0000000000000001 0000000000000001 00 0041", "NUL"),
            ("01 01 001b 0000000000000001 0000000000000001 01 0000000000000001 00 41", "group name is empty"),
            ("01 01 001c 0000000000000001 0000000000000001 01 0000000000000001 01 0a 41", "control characters"),
            ("01 01 001b 0000000000000001 0000000000000001 01 0000000000000001 05 41", "too short"),
            ("01 02 0008 0000000000000001", "8 bytes, expected 9"),
            ("01 02 000a 0000000000000001 0000", "10 bytes, expected 9"),
            ("01 02 0009 0000000000000001 02", "unknown status 2"),
        ]
        for (hex, want) in cases {
            var decoder = ChatFrameDecoder()
            decoder.feed([UInt8](hex: hex))
            XCTAssertThrowsError(try decoder.next(), hex) { error in
                XCTAssertTrue("\(error)".contains(want), "\(hex): \(error)")
            }
            XCTAssertEqual(decoder.bufferedBytes, 0, hex)
            // The error sticks: later bytes are not buffered or parsed.
            decoder.feed([UInt8](hex: "01 02 0009 0000000000000001 00"))
            XCTAssertThrowsError(try decoder.next())
            XCTAssertEqual(decoder.bufferedBytes, 0)
        }
    }

    func testLimitsAreTheDocumentedOnes() {
        XCTAssertEqual(ChatProtocol.maxPayload, 4186)  // docs/skychat.md; the 105b case above is 4187
    }

    /// An oversized length is refused from the header alone, before its payload arrives.
    func testOversizedHeaderRefusedBeforePayload() {
        var decoder = ChatFrameDecoder()
        decoder.feed([ChatProtocol.version, ChatFrameType.message.rawValue, 0xFF, 0xFF])
        XCTAssertThrowsError(try decoder.next())
    }

    /// Random bytes never crash the decoder, and it never holds more than one frame's worth.
    func testRandomInputIsBounded() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var decoder = ChatFrameDecoder()
            let n = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 1, Bool.random(using: &rng) { bytes[0] = ChatProtocol.version; bytes[1] = UInt8.random(in: 1...2, using: &rng) }
            decoder.feed(bytes)
            while (try? decoder.next()) != nil {}
            XCTAssertLessThanOrEqual(decoder.bufferedBytes, ChatProtocol.headerLength + ChatProtocol.maxPayload)
        }
    }
}
