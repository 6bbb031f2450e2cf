import XCTest
@testable import SkywireWire

final class SudphRendezvousTests: XCTestCase {
    let pk = [UInt8](0..<32)
    let sig = [UInt8](repeating: 0xEE, count: 64)
    let token = [UInt8](repeating: 0x7A, count: 16)

    func testBindBytesByHand() throws {
        let msg = SudphRendezvous.bind(publicKey: pk, timestampMs: 0x0102_0304_0506_0708, token: token, signature: sig)
        let expected = [UInt8](hex: "10" + pk.map { String(format2($0)) }.joined() + "0102030405060708" + String(repeating: "7a", count: 16)
                               + String(repeating: "ee", count: 64))
        XCTAssertEqual(expected.count, 121)
        XCTAssertEqual(msg.encoded(), expected)
        XCTAssertEqual(msg.encoded().count, SudphRendezvous.bindSize)
        XCTAssertEqual(try SudphRendezvous.parse(expected), msg)
    }

    func testBindSignedBytes() {
        let b = SudphRendezvous.bindSignedBytes(publicKey: pk, timestampMs: 1, token: token)
        XCTAssertEqual(b, Array("SKYWIRE-BIND-2".utf8) + pk + [0, 0, 0, 0, 0, 0, 0, 1] + token)
    }

    func testBindOKv4AndV6() throws {
        let v4 = RendezvousAddress(address: [198, 51, 100, 7], port: 40123)!
        let t = String(repeating: "7a", count: 16)
        XCTAssertEqual(SudphRendezvous.bindOK(token: token, observed: v4).encoded(), [UInt8](hex: "11" + t + "04 c6336407 9cbb"))
        XCTAssertEqual(try SudphRendezvous.parse([UInt8](hex: "11" + t + "04 c6336407 9cbb")), .bindOK(token: token, observed: v4))
        XCTAssertEqual(v4.description, "198.51.100.7:40123")
        let v6 = RendezvousAddress(address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1], port: 1)!
        let enc = SudphRendezvous.bindOK(token: token, observed: v6).encoded()
        XCTAssertEqual(enc, [UInt8](hex: "11" + t + "06 20010db8000000000000000000000001 0001"))
        XCTAssertEqual(try SudphRendezvous.parse(enc), .bindOK(token: token, observed: v6))
        XCTAssertEqual(v6.description, "[2001:db8:0:0:0:0:0:1]:1")
    }

    func testPunchBytes() throws {
        let a = RendezvousAddress(address: [203, 0, 113, 9], port: 7778)!
        let msg = SudphRendezvous.punch(token: token, peerKey: pk, peer: a)
        let enc = msg.encoded()
        XCTAssertEqual(enc.count, 1 + 16 + 32 + 1 + 4 + 2)
        XCTAssertEqual(enc[0], 0x12)
        XCTAssertEqual(Array(enc[1..<17]), token)
        XCTAssertEqual(Array(enc[17..<49]), pk)
        XCTAssertEqual(Array(enc[49...]), [UInt8](hex: "04 cb007109 1e62"))
        XCTAssertEqual(try SudphRendezvous.parse(enc), msg)
    }

    func testMalformed() {
        XCTAssertThrowsError(try SudphRendezvous.parse([])) { XCTAssertEqual($0 as? SudphRendezvousError, .empty) }
        XCTAssertThrowsError(try SudphRendezvous.parse([0x01, 0, 0, 0])) { XCTAssertEqual($0 as? SudphRendezvousError, .unknownType(1)) }
        // A BIND of the first version (no token, 105 bytes) is refused.
        XCTAssertThrowsError(try SudphRendezvous.parse([0x10] + [UInt8](repeating: 0, count: 104))) {
            XCTAssertEqual($0 as? SudphRendezvousError, .wrongLength(.bind, length: 105, expected: 121))
        }
        let t = String(repeating: "7a", count: 16)
        XCTAssertThrowsError(try SudphRendezvous.parse([UInt8](hex: "11" + t + "05 01020304 0001"))) {
            XCTAssertEqual($0 as? SudphRendezvousError, .badFamily(.bindOK, 5))
        }
        XCTAssertThrowsError(try SudphRendezvous.parse([UInt8](hex: "11" + t + "04 01020304 000102"))) {
            XCTAssertEqual($0 as? SudphRendezvousError, .wrongLength(.bindOK, length: 8, expected: 7))
        }
        // A BIND_OK of the first version (no token) is too short.
        XCTAssertThrowsError(try SudphRendezvous.parse([UInt8](hex: "11 04 c6336407 9cbb"))) {
            XCTAssertEqual($0 as? SudphRendezvousError, .truncated(.bindOK, length: 8, minimum: 24))
        }
        XCTAssertThrowsError(try SudphRendezvous.parse([0x12] + token + pk)) {
            XCTAssertEqual($0 as? SudphRendezvousError, .truncated(.punch, length: 49, minimum: 56))
        }
        XCTAssertTrue(SudphRendezvous.tokensEqual(token, token))
        XCTAssertFalse(SudphRendezvous.tokensEqual(token, [0x7B] + token.dropFirst()))
        XCTAssertFalse(SudphRendezvous.tokensEqual(token, Array(token.dropFirst())))
        XCTAssertTrue(SudphRendezvousType.isRendezvous(0x10))
        XCTAssertTrue(SudphRendezvousType.isRendezvous(0x12))
        XCTAssertFalse(SudphRendezvousType.isRendezvous(0x01))
        XCTAssertFalse(SudphRendezvousType.isRendezvous(0x13))
    }

    private func format2(_ b: UInt8) -> String {
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }
}
