import XCTest
@testable import SkywireWire

final class SudphPacketTests: XCTestCase {
    func testInitiationBuildAndParse() throws {
        let message = (0..<141).map { UInt8($0) }
        let packet = try message.withUnsafeBytes { try SudphPacket.initiation(senderIndex: 0xDEAD_BEEF, message: $0) }
        XCTAssertEqual(packet.count, 181)
        XCTAssertEqual(Array(packet[0..<8]), [UInt8](hex: "01000000 deadbeef"))
        XCTAssertEqual(Array(packet[8..<149]), message)
        XCTAssertEqual(Array(packet[149...]), [UInt8](repeating: 0, count: 32), "mac1 and mac2 are filled in later")
        XCTAssertEqual(try parsePacket(packet).get(), .initiation(senderIndex: 0xDEAD_BEEF, message: 8..<149))
    }

    func testCookieReplyBuildAndParse() throws {
        let nonce = [UInt8](repeating: 0x11, count: 24), sealed = [UInt8](repeating: 0x22, count: 32)
        let packet = try SudphPacket.cookieReply(receiverIndex: 0x0A0B_0C0D, nonce: nonce, sealedCookie: sealed)
        XCTAssertEqual(packet, [UInt8](hex: "03000000 0a0b0c0d") + nonce + sealed)
        XCTAssertEqual(packet.count, 64)
        XCTAssertEqual(try parsePacket(packet).get(), .cookieReply(receiverIndex: 0x0A0B_0C0D, nonce: 8..<32, sealedCookie: 32..<64))
        XCTAssertEqual(parsePacket(Array(packet.dropLast())).failure, .truncated(.cookieReply, length: 63, minimum: 64))
        XCTAssertEqual(parsePacket(packet + [0]).failure, .wrongLength(.cookieReply, length: 65, expected: 64))
        XCTAssertThrowsError(try SudphPacket.cookieReply(receiverIndex: 1, nonce: [0], sealedCookie: sealed))
    }

    func testResponseBuildAndParse() throws {
        let message = [UInt8](repeating: 0x5A, count: 48)
        let packet = try message.withUnsafeBytes {
            try SudphPacket.response(senderIndex: 0x0102_0304, receiverIndex: 0xA0B0_C0D0, message: $0)
        }
        XCTAssertEqual(Array(packet[0..<12]), [UInt8](hex: "02000000 01020304 a0b0c0d0"))
        XCTAssertEqual(packet.count, 60)
        XCTAssertEqual(try parsePacket(packet).get(),
                       .response(senderIndex: 0x0102_0304, receiverIndex: 0xA0B0_C0D0, message: 12..<60))
    }

    func testDataHeaderBuildAndParse() throws {
        var buffer = [UInt8](repeating: 0xFF, count: 40)
        let n = try buffer.withUnsafeMutableBytes {
            try SudphPacket.writeDataHeader(receiverIndex: 7, counter: 0x0102_0304_0506_0708, into: $0)
        }
        XCTAssertEqual(n, 16)
        XCTAssertEqual(Array(buffer[0..<16]), [UInt8](hex: "04000000 00000007 0102030405060708"))
        var appended: [UInt8] = []
        SudphPacket.appendDataHeader(receiverIndex: 7, counter: 0x0102_0304_0506_0708, to: &appended)
        XCTAssertEqual(appended, Array(buffer[0..<16]))
        XCTAssertEqual(try parsePacket(buffer).get(),
                       .data(receiverIndex: 7, counter: 0x0102_0304_0506_0708, keyPhase: 0, ciphertext: 16..<40))
        // A keepalive: header and tag only.
        let keepalive = Array(buffer[0..<32])
        XCTAssertEqual(try parsePacket(keepalive).get(),
                       .data(receiverIndex: 7, counter: 0x0102_0304_0506_0708, keyPhase: 0, ciphertext: 16..<32))

        var tiny = [UInt8](repeating: 0, count: 15)
        XCTAssertThrowsError(try tiny.withUnsafeMutableBytes {
            try SudphPacket.writeDataHeader(receiverIndex: 1, counter: 1, into: $0)
        }) { XCTAssertEqual($0 as? SudphPacketError, .bufferTooSmall(needed: 16, available: 15)) }
    }

    func testDataKeyPhaseByte() throws {
        var buffer = [UInt8](repeating: 0, count: 32)
        try buffer.withUnsafeMutableBytes {
            _ = try SudphPacket.writeDataHeader(receiverIndex: 9, counter: 5, keyPhase: 1, into: $0)
        }
        XCTAssertEqual(Array(buffer[0..<4]), [0x04, 0x01, 0x00, 0x00])
        XCTAssertEqual(try parsePacket(buffer).get(), .data(receiverIndex: 9, counter: 5, keyPhase: 1, ciphertext: 16..<32))
        var appended: [UInt8] = []
        SudphPacket.appendDataHeader(receiverIndex: 9, counter: 5, keyPhase: 1, to: &appended)
        XCTAssertEqual(appended, Array(buffer[0..<16]))
        // Only bit 0 of byte 1 is defined, and only for Data packets.
        buffer[1] = 0x02
        XCTAssertEqual(parsePacket(buffer).failure, .nonZeroReserved(.data))
        let initiation: [UInt8] = [UInt8](hex: "01010000 00000001") + [UInt8](repeating: 0, count: 173)
        XCTAssertEqual(parsePacket(initiation).failure, .nonZeroReserved(.initiation))
    }

    func testMalformedPacketsAreRejected() {
        func zeros(_ n: Int) -> [UInt8] { [UInt8](repeating: 0, count: n) }
        let init181: [UInt8] = [UInt8](hex: "01000000 00000001") + zeros(173)
        var cases: [([UInt8], SudphPacketError)] = []
        cases.append(([], .empty))
        cases.append(([0x05, 0, 0, 0], .unknownType(5)))
        cases.append(([0x00], .unknownType(0)))
        cases.append(([0x01, 0, 0], .truncated(.initiation, length: 3, minimum: 4)))
        cases.append(([0x04, 0, 1, 0] + zeros(40), .nonZeroReserved(.data)))
        cases.append(([0x02, 0x80, 0, 0] + zeros(56), .nonZeroReserved(.response)))
        cases.append((Array(init181[0..<137]), .truncated(.initiation, length: 137, minimum: 181)))
        cases.append((init181 + [0], .wrongLength(.initiation, length: 182, expected: 181)))
        cases.append(([0x02, 0, 0, 0] + zeros(55), .truncated(.response, length: 59, minimum: 60)))
        cases.append(([0x02, 0, 0, 0] + zeros(57), .wrongLength(.response, length: 61, expected: 60)))
        cases.append(([0x04, 0, 0, 0] + zeros(27), .truncated(.data, length: 31, minimum: 32)))
        for (bytes, expected) in cases {
            XCTAssertEqual(parsePacket(bytes).failure, expected, "\(bytes.prefix(8))")
        }
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 129).withUnsafeBytes {
            try SudphPacket.initiation(senderIndex: 1, message: $0)
        })
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 49).withUnsafeBytes {
            try SudphPacket.response(senderIndex: 1, receiverIndex: 2, message: $0)
        })
    }
}

final class SudphRecordTests: XCTestCase {
    func testSegmentAndUnreliableRecords() throws {
        var segment: [UInt8] = []
        SudphRecord.appendSegmentHeader(seq: 0xFFFF_FFFE, to: &segment)
        segment += [0x06, 0, 0, 0, 1]
        XCTAssertEqual(segment, [UInt8](hex: "02 fffffffe 0600000001"))
        XCTAssertEqual(try decodeRecord(segment).get(), .segment(seq: 0xFFFF_FFFE, frame: 5..<10))

        var unreliable: [UInt8] = []
        SudphRecord.appendUnreliableHeader(to: &unreliable)
        unreliable += [0x08, 0, 1, 0, 2, 0xAB]
        XCTAssertEqual(unreliable, [UInt8](hex: "01 08 0001 0002 ab"))
        XCTAssertEqual(try decodeRecord(unreliable).get(), .unreliable(frame: 1..<7))
    }

    func testAckRecordExactBytes() throws {
        let ack = SudphAck(cumulative: 100, window: 1024, sackBlocks: [
            SackBlock(start: 102, end: 105), SackBlock(start: 110, end: 111),
        ])
        let expected = [UInt8](hex: "03 00000064 00000400 02 00000066 00000069 0000006e 0000006f")
        XCTAssertEqual(ack.encoded, expected)
        XCTAssertEqual(ack.encodedLength, 26)
        XCTAssertEqual(try decodeRecord(expected).get(), .ack(ack))

        let plain = SudphAck(cumulative: 0xFFFF_FFFF, window: 0)
        XCTAssertEqual(plain.encoded, [UInt8](hex: "03 ffffffff 00000000 00"))
        XCTAssertEqual(try decodeRecord(plain.encoded).get(), .ack(plain))

        // Blocks across the 2^32 wrap are fine in serial arithmetic.
        let wrapped = SudphAck(cumulative: 0xFFFF_FFF0, window: 64, sackBlocks: [SackBlock(start: 0xFFFF_FFF2, end: 3)])
        XCTAssertEqual(try decodeRecord(wrapped.encoded).get(), .ack(wrapped))

        var blocks: [SackBlock] = []
        for i: UInt32 in 0..<16 { blocks.append(SackBlock(start: 2 * i + 1, end: 2 * i + 2)) }
        let sixteen = SudphAck(cumulative: 0, window: 8, sackBlocks: blocks)
        XCTAssertEqual(sixteen.encoded.count, 138)
        XCTAssertEqual(try decodeRecord(sixteen.encoded).get(), .ack(sixteen))
    }

    func testMalformedRecordsAreRejected() {
        let seventeen = [UInt8](hex: "03 00000000 00000008 11") + [UInt8](repeating: 0, count: 17 * 8)
        let cases: [([UInt8], SudphRecordError)] = [
            ([], .empty),
            ([0x04, 1], .unknownKind(4)),
            ([0x00], .unknownKind(0)),
            ([0x01], .emptyFrame(.unreliable)),
            ([UInt8](hex: "02 000000"), .truncated(.segment, length: 4, minimum: 5)),
            ([UInt8](hex: "02 00000001"), .emptyFrame(.segment)),
            ([UInt8](hex: "03 00000000 00000008"), .truncated(.ack, length: 9, minimum: 10)),
            (seventeen, .tooManySackBlocks(17)),
            ([UInt8](hex: "03 00000000 00000008 01 00000001"), .wrongAckLength(length: 14, expected: 18)),
            ([UInt8](hex: "03 00000000 00000008 00 00"), .wrongAckLength(length: 11, expected: 10)),
            ([UInt8](hex: "03 0000000a 00000008 01 0000000c 0000000c"),
             .invalidSackBlock(SackBlock(start: 12, end: 12), cumulative: 10)),
            ([UInt8](hex: "03 0000000a 00000008 01 0000000a 0000000c"),
             .invalidSackBlock(SackBlock(start: 10, end: 12), cumulative: 10)),
            ([UInt8](hex: "03 0000000a 00000008 01 00000005 0000000c"),
             .invalidSackBlock(SackBlock(start: 5, end: 12), cumulative: 10)),
            ([UInt8](hex: "03 0000000a 00000008 01 0000000e 0000000c"),
             .invalidSackBlock(SackBlock(start: 14, end: 12), cumulative: 10)),
        ]
        for (bytes, expected) in cases {
            XCTAssertEqual(decodeRecord(bytes).failure, expected, "\(bytes.prefix(12))")
        }
    }

    func testSerialNumberArithmetic() {
        XCTAssertTrue(SerialNumber.lessThan(1, 2))
        XCTAssertTrue(SerialNumber.lessThan(0xFFFF_FFFF, 0))
        XCTAssertFalse(SerialNumber.lessThan(0, 0xFFFF_FFFF))
        XCTAssertFalse(SerialNumber.lessThan(5, 5))
        XCTAssertTrue(SerialNumber.lessThanOrEqual(5, 5))
        XCTAssertTrue(SerialNumber.lessThan(0, 0x7FFF_FFFF))
        XCTAssertFalse(SerialNumber.lessThan(0, 0x8000_0000))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
