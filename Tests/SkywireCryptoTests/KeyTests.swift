import XCTest
@testable import SkywireCrypto

final class KeyTests: XCTestCase {
    func testPublicKeyHexRoundTrip() throws {
        let pair = KeyPair.generate()
        let hex = pair.publicKey.hex
        XCTAssertEqual(hex.count, 64)
        XCTAssertEqual(hex, hex.lowercased())
        XCTAssertEqual(try PublicKey(hex: hex), pair.publicKey)
        XCTAssertThrowsError(try PublicKey(hex: hex.uppercased()))
        XCTAssertThrowsError(try PublicKey(hex: String(hex.dropLast())))
    }

    func testSecretKeyHexRoundTrip() throws {
        let pair = KeyPair.generate()
        let loaded = try KeyPair(secretKeyHex: pair.secretKeyHex, publicKey: pair.publicKey)
        XCTAssertEqual(loaded.secretKey, pair.secretKey)
        XCTAssertEqual(loaded.publicKey, pair.publicKey)
    }

    func testKeyMismatchDetected() throws {
        let a = KeyPair.generate()
        let b = KeyPair.generate()
        XCTAssertThrowsError(try KeyPair(secretKeyHex: a.secretKeyHex, publicKey: b.publicKey)) { error in
            XCTAssertEqual(error as? CryptoError, .keyMismatch)
        }
        // A secret whose seed half was altered but whose stored public half still matches.
        var tampered = a.secretKey
        tampered[0] ^= 0x01
        XCTAssertThrowsError(try KeyPair(secretKeyHex: Hex.encode(tampered), publicKey: a.publicKey)) { error in
            XCTAssertEqual(error as? CryptoError, .keyMismatch)
        }
    }

    func testEd25519ToX25519HalvesAgree() throws {
        for _ in 0..<8 {
            let pair = KeyPair.generate()
            let noise = try pair.noiseStaticKeyPair()
            XCTAssertEqual(noise.publicKey, try pair.publicKey.x25519())
            XCTAssertEqual(noise.publicKey.count, NoiseConstants.dhLength)
        }
        // And the converted keys agree on a DH secret.
        let a = try KeyPair.generate().noiseStaticKeyPair()
        let b = try KeyPair.generate().noiseStaticKeyPair()
        XCTAssertEqual(try a.dh(b.publicKey), try b.dh(a.publicKey))
    }

    func testSeedConversionIsDeterministic() throws {
        let seed = [UInt8](repeating: 7, count: 32)
        let one = try KeyPair.fromSeed(seed).noiseStaticKeyPair()
        let two = try KeyPair.fromSeed(seed).noiseStaticKeyPair()
        XCTAssertEqual(one.publicKey, two.publicKey)
    }

    func testLowOrderPointRejected() throws {
        let local = X25519KeyPair.generate()
        XCTAssertThrowsError(try local.dh([UInt8](repeating: 0, count: 32))) { error in
            XCTAssertEqual(error as? NoiseError, .dhFailed)
        }
        XCTAssertThrowsError(try local.dh([1, 2, 3])) { error in
            XCTAssertEqual(error as? NoiseError, .badLength(what: "X25519 public key", expected: 32, got: 3))
        }
    }

    func testSecureRandomBytesOfAnyLengthIncludingNone() {
        XCTAssertEqual(SecureRandom.bytes(0), [])
        XCTAssertEqual(SecureRandom.bytes(33).count, 33)
        XCTAssertNotEqual(SecureRandom.bytes(32), SecureRandom.bytes(32))
    }
}
