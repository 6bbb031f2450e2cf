import XCTest
@testable import SkywireCrypto

final class SigningTests: XCTestCase {
    /// RFC 8032 §7.1 TEST 2: one-byte message 0x72.
    func testRFC8032Vector2() throws {
        let seed = Hex.decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")!
        let kp = try KeyPair.fromSeed(seed)
        XCTAssertEqual(kp.publicKey.hex, "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
        let sig = kp.sign([0x72])
        XCTAssertEqual(Hex.encode(sig),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            + "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
        XCTAssertTrue(kp.publicKey.verify(signature: sig, message: [0x72]))
    }

    func testTamperedMessageOrSignatureIsRejected() throws {
        let kp = KeyPair.generate()
        let msg = Array("hello".utf8)
        var sig = kp.sign(msg)
        XCTAssertFalse(kp.publicKey.verify(signature: sig, message: Array("hellO".utf8)))
        XCTAssertFalse(KeyPair.generate().publicKey.verify(signature: sig, message: msg))
        XCTAssertFalse(kp.publicKey.verify(signature: Array(sig.prefix(63)), message: msg))
        sig[0] ^= 1
        XCTAssertFalse(kp.publicKey.verify(signature: sig, message: msg))
    }
}
