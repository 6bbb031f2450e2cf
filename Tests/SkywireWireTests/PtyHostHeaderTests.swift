import XCTest
@testable import SkywireWire

/// `PtyHostHeader` (docs/pty.md "Session host"): what the visor tells the session host, byte by byte.
final class PtyHostHeaderTests: XCTestCase {
    private let key = [UInt8](0..<32)

    func testEncodingByteByByte() throws {
        let header = try PtyHostHeader(peer: key, user: "pi")
        XCTAssertEqual(header.encoded, Array("SKPH".utf8) + [1] + key + [2] + Array("pi".utf8))
    }

    func testDecodesAfterEveryByteAndKeepsTheRest() throws {
        let bytes = try PtyHostHeader(peer: key, user: "root").encoded
        for n in 0..<bytes.count { XCTAssertNil(try PtyHostHeader.decode(bytes[..<n]), "\(n) bytes") }
        let frames = PtyFrame.eof.encoded
        let decoded = try XCTUnwrap(try PtyHostHeader.decode((bytes + frames)[...]))
        XCTAssertEqual(decoded.header, try PtyHostHeader(peer: key, user: "root"))
        XCTAssertEqual(decoded.length, bytes.count)
    }

    func testRefusesHostileHeaders() throws {
        let good = try PtyHostHeader(peer: key, user: "root").encoded
        var badVersion = good; badVersion[4] = 2
        var longUser = Array(good.prefix(37)); longUser.append(33); longUser += [UInt8](repeating: 0x61, count: 33)
        var badUser = Array(good.prefix(37)); badUser.append(4); badUser += Array("r;rm".utf8)
        var notUTF8 = Array(good.prefix(37)); notUTF8.append(2); notUTF8 += [0xC3, 0x28]
        for (name, bytes) in [("magic", Array("GET / HTTP/1.1".utf8)), ("version", badVersion), ("long user", longUser),
                              ("user", badUser), ("utf8", notUTF8), ("first byte", [0x01])] {
            XCTAssertThrowsError(try PtyHostHeader.decode(bytes[...]), name)
        }
        for user in ["", "Root", "1x", "a/b", "a:b", String(repeating: "a", count: 33), "é"] {
            XCTAssertFalse(PtyHostHeader.isUserName(user), user)
        }
        for user in ["root", "_apt", "pi", "user-1", String(repeating: "a", count: 32)] {
            XCTAssertTrue(PtyHostHeader.isUserName(user), user)
        }
        XCTAssertThrowsError(try PtyHostHeader(peer: [1, 2], user: "root"))
    }
}
