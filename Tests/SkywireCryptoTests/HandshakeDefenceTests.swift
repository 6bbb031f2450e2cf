import XCTest
@testable import SkywireCrypto

/// TAI64N stamps, replay memory, mac1/mac2 and cookies (PROTOCOL.md §2, §2.1), byte by byte.
/// Expected bytes come from Python's hashlib (keyed BLAKE2b) and libsodium through ctypes.
final class HandshakeDefenceTests: XCTestCase {
    func hex(_ s: String) -> [UInt8] { HexCoding.decode(s)! }

    func testTAI64NEncodesLabelAndWhitenedNanoseconds() {
        let stamp = TAI64N(unixSeconds: 1_700_000_000, nanoseconds: 123_456_789)
        // 2^62 + 10 + 1_700_000_000 seconds; 123_456_789 rounded down to a multiple of 2^24.
        XCTAssertEqual(stamp.bytes, hex("400000006553f10a07000000"))
        XCTAssertEqual(stamp.nanoseconds, 117_440_512)
        XCTAssertEqual(TAI64N(bytes: stamp.bytes), stamp)
        XCTAssertNil(TAI64N(bytes: hex("400000006553f10a3b9aca00")), "nanoseconds must be below 10^9")
        XCTAssertNil(TAI64N(bytes: hex("400000006553f10a070000")), "12 bytes exactly")
        XCTAssertEqual(TAI64N(unixSeconds: 0, nanoseconds: 0).bytes, hex("400000000000000a00000000"))
    }

    func testTAI64NOrderAndStrictlyIncreasingStamps() {
        let t = TAI64N(unixSeconds: 1_700_000_000, nanoseconds: 0)
        let later = TAI64N(unixSeconds: 1_700_000_000, nanoseconds: 500_000_000)
        XCTAssertLessThan(t, later)
        XCTAssertLessThan(later, TAI64N(unixSeconds: 1_700_000_001, nanoseconds: 0))
        XCTAssertEqual(t.successor, TAI64N(seconds: t.seconds, nanoseconds: 1 << 24))
        // The last granule of a second rolls over to the next second.
        let last = TAI64N(seconds: t.seconds, nanoseconds: 59 << 24)
        XCTAssertEqual(last.successor, TAI64N(seconds: t.seconds + 1, nanoseconds: 0))
        XCTAssertEqual(TAI64N.stamp(now: later, after: t), later, "the clock moved on: now")
        XCTAssertEqual(TAI64N.stamp(now: t, after: t), t.successor, "same granule: one more")
        XCTAssertEqual(TAI64N.stamp(now: t, after: later), later.successor, "clock stepped back: still increasing")
        XCTAssertEqual(TAI64N.stamp(now: t, after: nil), t)
    }

    func testTimestampTableRefusesOlderAndEqualStampsPerKey() {
        var table = HandshakeTimestamps<String>(capacity: 2)
        let t0 = TAI64N(unixSeconds: 100, nanoseconds: 0), t1 = TAI64N(unixSeconds: 101, nanoseconds: 0)
        XCTAssertTrue(table.accept(t1, from: "k"))
        XCTAssertFalse(table.accept(t1, from: "k"), "the same stamp again is a replay")
        XCTAssertFalse(table.accept(t0, from: "k"), "an older stamp is a replay")
        XCTAssertEqual(table.last(for: "k"), t1)
        XCTAssertTrue(table.accept(t0, from: "other"), "stamps are per key")
        // Bounded: a third key evicts the one updated longest ago ("k").
        XCTAssertTrue(table.accept(t0, from: "third"))
        XCTAssertEqual(table.count, 2)
        XCTAssertNil(table.last(for: "k"))
        XCTAssertEqual(table.last(for: "other"), t0)
    }

    func testMac1Mac2AndCookieKeysWithFixedKeys() {
        let responder = (0..<32).map { UInt8($0) }
        let mac1Key = HandshakeMAC.mac1Key(responderStatic: responder)
        XCTAssertEqual(mac1Key, hex("b941bf1b95db7cb783423638ff760265304756babdb2510836584fbfbe257274"))
        XCTAssertEqual(HandshakeMAC.cookieKey(responderStatic: responder),
                       hex("23e183f41d849970577acaafb23f2891bafd92709b873d0ae8d228560c90a648"))
        let message = [UInt8](repeating: 0xAB, count: 149)
        let mac1 = HandshakeMAC.mac(key: mac1Key, message)
        XCTAssertEqual(mac1, hex("c0c1469a1bee414219238b2f725f7ec2"))
        let cookie = (16..<32).map { UInt8($0) }
        XCTAssertEqual(HandshakeMAC.mac(key: cookie, message + mac1), hex("cb1c7dec59f715f5f0b2724f2cd87143"),
                       "mac2 is keyed by the 16-byte cookie")
        XCTAssertTrue(mac1.withUnsafeBytes { HandshakeMAC.matches(hex("c0c1469a1bee414219238b2f725f7ec2"), $0) })
        XCTAssertFalse(mac1.withUnsafeBytes { HandshakeMAC.matches(hex("c0c1469a1bee414219238b2f725f7ec3"), $0) })
    }

    func testCookieIsBoundToAddressAndSealedToMac1() {
        var secret = CookieSecret(nowSeconds: 0, secret: [UInt8](repeating: 7, count: 32))
        let address: [UInt8] = [192, 0, 2, 1, 0x1e, 0x62]   // 192.0.2.1:7778
        let cookie = secret.cookie(for: address, nowSeconds: 1)
        XCTAssertEqual(cookie, hex("636aadcc5ecfda807bc2f78803f12d62"))
        XCTAssertNotEqual(secret.cookie(for: [192, 0, 2, 1, 0x1e, 0x63], nowSeconds: 1), cookie, "another port")
        XCTAssertNotEqual(secret.cookie(for: address, nowSeconds: CookieSecret.lifetimeSeconds), cookie,
                          "R is replaced after its lifetime")

        let key = HandshakeMAC.cookieKey(responderStatic: (0..<32).map { UInt8($0) })
        let nonce = [UInt8](repeating: 9, count: 24), mac1 = [UInt8](repeating: 5, count: 16)
        let fixed = (16..<32).map { UInt8($0) }
        let sealed = HandshakeMAC.sealCookie(fixed, key: key, nonce: nonce, mac1: mac1)
        XCTAssertEqual(sealed, hex("9b627d9ff2d90b4f2df3a0fe0de25dceac857f156df2d4c356bdcf5267b6132a"))
        let open = { (sealed: [UInt8], mac1: [UInt8]) in
            sealed.withUnsafeBytes { s in nonce.withUnsafeBytes { n in HandshakeMAC.openCookie(s, key: key, nonce: n, mac1: mac1) } }
        }
        XCTAssertEqual(open(sealed, mac1), fixed)
        XCTAssertNil(open(sealed, [UInt8](repeating: 6, count: 16)), "bound to the initiation's mac1")
        var tampered = sealed
        tampered[0] ^= 1
        XCTAssertNil(open(tampered, mac1))
    }

    func testIdentityClaimCarriesTheStamp() throws {
        let a = KeyPair.generate()
        let stamp = TAI64N(unixSeconds: 1_700_000_000, nanoseconds: 0)
        let payload = IdentityClaim.encode(a.publicKey, timestamp: stamp)
        XCTAssertEqual(payload.count, 45)
        XCTAssertEqual(payload[0], 0x02)
        XCTAssertEqual(Array(payload[1..<33]), a.publicKey.bytes)
        XCTAssertEqual(Array(payload[33...]), hex("400000006553f10a00000000"))
        let verified = try IdentityClaim.verify(payload: payload, remoteStatic: a.publicKey.x25519())
        XCTAssertEqual(verified.key, a.publicKey)
        XCTAssertEqual(verified.timestamp, stamp)
        var badStamp = payload
        badStamp[41] = 0xFF   // nanoseconds ≥ 10^9
        XCTAssertThrowsError(try IdentityClaim.verify(payload: badStamp, remoteStatic: a.publicKey.x25519()))
    }
}
