import NIOCore
import XCTest
import SkywireCrypto
@testable import SkywireDmsg

/// Relay frames byte by byte (PROTOCOL.md §7.2).
final class DmsgFrameTests: XCTestCase {
    /// A fixed key: Ed25519 from the seed 01 01 … 01.
    static let key = try! KeyPair.fromSeed([UInt8](repeating: 1, count: 32)).publicKey

    private func bytes(_ frame: DmsgFrame) -> [UInt8] { Array(frame.encoded.readableBytesView) }
    private func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    func testEncodingsByteByByte() {
        XCTAssertEqual(hex(bytes(.open(stream: 1, peer: Self.key, window: 0x40000))),
                       "01" + "00000001" + Self.key.hex + "00040000")
        XCTAssertEqual(bytes(.open(stream: 1, peer: Self.key, window: 1)).count, 41)
        XCTAssertEqual(hex(bytes(.openOK(stream: 2, window: 65536))), "02" + "00000002" + "00010000")
        XCTAssertEqual(hex(bytes(.openReject(stream: 3, code: .noSession))), "03" + "00000003" + "01")
        XCTAssertEqual(hex(bytes(.openReject(stream: 3, code: .limit))), "03" + "00000003" + "03")
        XCTAssertEqual(hex(bytes(.data(stream: 5, payload: ByteBuffer(bytes: [0xAA, 0xBB])))), "04" + "00000005" + "aabb")
        XCTAssertEqual(hex(bytes(.window(stream: 7, increment: 0x8000))), "05" + "00000007" + "00008000")
        XCTAssertEqual(hex(bytes(.close(stream: 9, code: .peerGone))), "06" + "00000009" + "01")
        XCTAssertEqual(hex(bytes(.ping(0x0102030405060708))), "07" + "0102030405060708")
        XCTAssertEqual(hex(bytes(.pong(42))), "08" + "000000000000002a")
        XCTAssertEqual(hex(bytes(.refused(.notListed))), "09" + "01")
        XCTAssertEqual(hex(bytes(.refused(.full))), "09" + "02")
    }

    func testRoundTripsEveryType() throws {
        let frames: [DmsgFrame] = [
            .open(stream: 0xFFFF_FFFF, peer: Self.key, window: 0), .openOK(stream: 2, window: 7),
            .openReject(stream: 1, code: .other(200)), .data(stream: 1, payload: ByteBuffer(repeating: 7, count: DmsgFrameLayout.maxDataPayload)),
            .window(stream: 1, increment: 1), .close(stream: 4, code: .protocolError), .ping(0), .pong(.max),
            .refused(.notListed), .refused(.other(77)),
        ]
        for frame in frames {
            let wire = frame.encoded
            XCTAssertEqual(wire.readableBytes, frame.encodedLength)
            XCTAssertEqual(try DmsgFrame.decode(wire), frame)
        }
        XCTAssertEqual(Set(frames.map(\.type.rawValue)), Set(DmsgFrameType.allCases.map(\.rawValue)))
    }

    func testDecodeRefusals() {
        func refused(_ b: [UInt8]) -> DmsgFrameError? {
            do { _ = try DmsgFrame.decode(ByteBuffer(bytes: b)); return nil } catch { return error }
        }
        XCTAssertEqual(refused([]), .empty)
        XCTAssertEqual(refused([0x00]), .unknownType(0))
        XCTAssertEqual(refused([0x0A, 0, 0, 0, 0, 0, 0, 0, 0]), .unknownType(10))
        XCTAssertEqual(refused([0x09, 1, 0]), .wrongLength(.refused, length: 3))
        XCTAssertEqual(refused([0x09]), .wrongLength(.refused, length: 1))
        XCTAssertEqual(refused([0x02, 0, 0, 0, 1, 0, 0, 0]), .wrongLength(.openOK, length: 8))
        XCTAssertEqual(refused([0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0]), .wrongLength(.openOK, length: 10))
        XCTAssertEqual(refused([0x02, 0, 0, 0, 0, 0, 0, 0, 1]), .zeroStreamID(.openOK))
        XCTAssertEqual(refused([0x04, 0, 0, 0, 1]), .wrongLength(.data, length: 5), "DATA carries a byte at least")
        XCTAssertEqual(refused([0x04, 0, 0, 0, 1] + [UInt8](repeating: 0, count: DmsgFrameLayout.maxDataPayload + 1)),
                       .wrongLength(.data, length: 6 + DmsgFrameLayout.maxDataPayload))
        XCTAssertEqual(refused([0x05, 0, 0, 0, 1, 0, 0, 0, 0]), .zeroWindowIncrement)
        XCTAssertEqual(refused([0x07, 1]), .wrongLength(.ping, length: 2))
        // An OPEN whose 32 bytes are not a curve point (all 0xFF does not decode).
        XCTAssertEqual(refused([0x01, 0, 0, 0, 1] + [UInt8](repeating: 0xFF, count: 32) + [0, 0, 0, 1]), .invalidKey)
    }

    func testDecodeReadsFromTheReaderIndexAndSlicesData() throws {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0x04, 0, 0, 0, 3, 0x61, 0x62])
        buffer.moveReaderIndex(forwardBy: 2)
        XCTAssertEqual(try DmsgFrame.decode(buffer), .data(stream: 3, payload: ByteBuffer(string: "ab")))
    }

    func testRelayChoiceIsStableAndSpreads() throws {
        let relays = (0..<5).map { i in try! KeyPair.fromSeed([UInt8](repeating: UInt8(10 + i), count: 32)).publicKey }
        let client = Self.key
        let top = DmsgRelayChoice.pick(client: client, relays: relays, count: 2)
        XCTAssertEqual(top.count, 2)
        XCTAssertEqual(DmsgRelayChoice.pick(client: client, relays: relays.reversed() + relays, count: 2), top,
                       "order and duplicates of the list change nothing")
        XCTAssertGreaterThan(DmsgRelayChoice.score(client: client, relay: top[0]), DmsgRelayChoice.score(client: client, relay: top[1]))
        // Removing a relay the client does not use keeps its choice.
        let unused = try XCTUnwrap(relays.first { !top.contains($0) })
        XCTAssertEqual(DmsgRelayChoice.pick(client: client, relays: relays.filter { $0 != unused }, count: 2), top)
        // 200 clients over 5 relays: every relay is someone's first choice, none takes more than half.
        var first: [PublicKey: Int] = [:]
        for i in 0..<200 {
            var seed = [UInt8](repeating: 0, count: 32); seed[0] = UInt8(i & 0xFF); seed[1] = 0x5A
            let c = try KeyPair.fromSeed(seed).publicKey
            first[DmsgRelayChoice.pick(client: c, relays: relays, count: 1)[0], default: 0] += 1
        }
        XCTAssertEqual(first.count, 5)
        XCTAssertLessThan(first.values.max() ?? 0, 100)
        XCTAssertEqual(DmsgRelayChoice.pick(client: client, relays: relays, count: 0), [])
        XCTAssertEqual(DmsgRelayChoice.pick(client: client, relays: [], count: 2), [])
    }

    func testClientPolicyParsing() throws {
        let a = KeyPair.generate().publicKey, b = KeyPair.generate().publicKey
        XCTAssertEqual(try DmsgClientPolicy.parse(list: ""), .nobody, "no keys: nobody")
        XCTAssertEqual(try DmsgClientPolicy.parse(list: "any"), .any)
        XCTAssertEqual(try DmsgClientPolicy.parse(list: "\(a.hex), \(b.hex.uppercased()),"), .keys([a, b]))
        XCTAssertEqual(try DmsgClientPolicy.parse(list: "\(a.hex),any"), .any)
        XCTAssertThrowsError(try DmsgClientPolicy.parse(list: "\(a.hex),nope")) { error in
            XCTAssertEqual(error as? DmsgClientPolicy.ParseError, .badKey(index: 2, text: "nope"))
        }
        XCTAssertThrowsError(try DmsgClientPolicy.parse(list: "everyone"), "only the word `any` means everyone")
        let file = "# relay clients\n\(a.hex)  # laptop\n\n  \(b.hex)\n"
        XCTAssertEqual(try DmsgClientPolicy.parse(file: file), .keys([a, b]))
        XCTAssertThrowsError(try DmsgClientPolicy.parse(file: "\(a.hex)\n\(a.hex.dropLast())\n")) { error in
            XCTAssertEqual(error as? DmsgClientPolicy.ParseError, .badKey(index: 2, text: String(a.hex.dropLast())))
        }
        XCTAssertFalse(DmsgClientPolicy.nobody.admits(a))
        XCTAssertTrue(DmsgClientPolicy.keys([a]).admits(a))
        XCTAssertFalse(DmsgClientPolicy.keys([a]).admits(b))
        XCTAssertTrue(DmsgClientPolicy.any.admits(b))
        XCTAssertEqual(DmsgClientPolicy.keys([a]).union(.keys([b])), .keys([a, b]))
        XCTAssertEqual(DmsgClientPolicy.keys([a]).union(.any), .any)
    }
}
