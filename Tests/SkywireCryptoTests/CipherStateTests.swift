import XCTest
@testable import SkywireCrypto

final class CipherStateTests: XCTestCase {
    let header: [UInt8] = [4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 9]

    func testExplicitNonceRoundTripOutOfOrder() throws {
        let key = try NoiseTransportKey(bytes: (0..<32).map { UInt8($0) })
        let messages = (0..<8).map { n in (0..<(n * 37)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ n) } }
        var sealed: [(UInt64, [UInt8])] = []
        for (n, plaintext) in messages.enumerated() {
            var out = [UInt8](repeating: 0, count: plaintext.count + NoiseConstants.tagLength)
            let written = try header.withUnsafeBytes { ad in
                try plaintext.withUnsafeBytes { p in
                    try out.withUnsafeMutableBytes { o in try key.seal(counter: UInt64(n) * 1000, ad: ad, plaintext: p, into: o) }
                }
            }
            XCTAssertEqual(written, plaintext.count + NoiseConstants.tagLength)
            sealed.append((UInt64(n) * 1000, out))
        }
        // Open in reverse order: explicit counters make order irrelevant.
        for (counter, ciphertext) in sealed.reversed() {
            var out = [UInt8](repeating: 0xee, count: 1500)
            let n = try header.withUnsafeBytes { ad in
                try ciphertext.withUnsafeBytes { c in
                    try out.withUnsafeMutableBytes { o in try key.open(counter: counter, ad: ad, ciphertext: c, into: o) }
                }
            }
            XCTAssertEqual(Array(out.prefix(n)), messages[Int(counter / 1000)])
        }
    }

    func testExplicitNonceMatchesCipherState() throws {
        let raw = (0..<32).map { UInt8(255 - $0) }
        let key = try NoiseTransportKey(bytes: raw)
        let cs = CipherState(key: key)
        cs.setNonce(41)
        let viaCipherState = try cs.encryptWithAd(header, Array("payload".utf8))
        XCTAssertEqual(cs.nonce, 42)
        var out = [UInt8](repeating: 0, count: 7 + 16)
        _ = try header.withUnsafeBytes { ad in
            try Array("payload".utf8).withUnsafeBytes { p in
                try out.withUnsafeMutableBytes { o in try key.seal(counter: 41, ad: ad, plaintext: p, into: o) }
            }
        }
        XCTAssertEqual(out, viaCipherState)
    }

    func testInPlaceSealAndOpen() throws {
        let key = try NoiseTransportKey(bytes: [UInt8](repeating: 9, count: 32))
        let plaintext = Array("in place, no copies".utf8)
        var buffer = plaintext + [UInt8](repeating: 0, count: NoiseConstants.tagLength)
        let sealedLength = try header.withUnsafeBytes { ad in
            try buffer.withUnsafeMutableBytes { b in
                try key.seal(counter: 7, ad: ad, plaintext: UnsafeRawBufferPointer(rebasing: b[0..<plaintext.count]), into: b)
            }
        }
        XCTAssertEqual(sealedLength, buffer.count)
        XCTAssertNotEqual(Array(buffer.prefix(plaintext.count)), plaintext)
        let openedLength = try header.withUnsafeBytes { ad in
            try buffer.withUnsafeMutableBytes { b in
                try key.open(counter: 7, ad: ad, ciphertext: UnsafeRawBufferPointer(b), into: b)
            }
        }
        XCTAssertEqual(Array(buffer.prefix(openedLength)), plaintext)
    }

    func testTagFailures() throws {
        let key = try NoiseTransportKey(bytes: [UInt8](repeating: 1, count: 32))
        let other = try NoiseTransportKey(bytes: [UInt8](repeating: 2, count: 32))
        var sealed = [UInt8](repeating: 0, count: 5 + 16)
        _ = try header.withUnsafeBytes { ad in
            try [UInt8]([1, 2, 3, 4, 5]).withUnsafeBytes { p in
                try sealed.withUnsafeMutableBytes { o in try key.seal(counter: 3, ad: ad, plaintext: p, into: o) }
            }
        }
        func open(_ k: NoiseTransportKey, _ counter: UInt64, _ ad: [UInt8], _ c: [UInt8]) throws -> Int {
            var out = [UInt8](repeating: 0, count: 64)
            return try ad.withUnsafeBytes { a in
                try c.withUnsafeBytes { cb in try out.withUnsafeMutableBytes { o in try k.open(counter: counter, ad: a, ciphertext: cb, into: o) } }
            }
        }
        XCTAssertEqual(try open(key, 3, header, sealed), 5)
        var flipped = sealed
        flipped[2] ^= 1
        var flippedAd = header
        flippedAd[15] ^= 1
        for (label, attempt) in [
            ("wrong counter", { try open(key, 4, self.header, sealed) }),
            ("wrong key", { try open(other, 3, self.header, sealed) }),
            ("tampered ciphertext", { try open(key, 3, self.header, flipped) }),
            ("tampered ad", { try open(key, 3, flippedAd, sealed) }),
        ] as [(String, () throws -> Int)] {
            XCTAssertThrowsError(try attempt(), label) { error in XCTAssertEqual(error as? NoiseError, .decryptFailed, label) }
        }
        XCTAssertThrowsError(try open(key, 3, header, Array(sealed.prefix(15)))) { error in
            guard case .badLength = error as? NoiseError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try open(key, UInt64.max, header, sealed)) { error in
            XCTAssertEqual(error as? NoiseError, .nonceExhausted)
        }
    }

    func testBufferChecks() throws {
        let key = try NoiseTransportKey(bytes: [UInt8](repeating: 3, count: 32))
        var buffer = [UInt8](repeating: 0, count: 64)
        try buffer.withUnsafeMutableBytes { b in
            // Output too small.
            XCTAssertThrowsError(try key.seal(counter: 0, ad: UnsafeRawBufferPointer(rebasing: b[0..<0]),
                                              plaintext: UnsafeRawBufferPointer(rebasing: b[0..<10]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: b[32..<40])))
            // Partial overlap.
            XCTAssertThrowsError(try key.seal(counter: 0, ad: UnsafeRawBufferPointer(rebasing: b[0..<0]),
                                              plaintext: UnsafeRawBufferPointer(rebasing: b[0..<10]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: b[5..<64]))) { error in
                guard case .badBuffer = error as? NoiseError else { return XCTFail("\(error)") }
            }
        }
    }

    func testAllocationFreeCipherStatePath() throws {
        let raw = [UInt8](repeating: 5, count: 32)
        let sender = CipherState(key: try NoiseTransportKey(bytes: raw))
        let receiver = CipherState(key: try NoiseTransportKey(bytes: raw))
        var wire = [UInt8](repeating: 0, count: 256)
        var plain = [UInt8](repeating: 0, count: 256)
        for round in 0..<3 {
            let message = [UInt8](repeating: UInt8(round), count: 100 + round)
            let n = try message.withUnsafeBytes { m in
                try wire.withUnsafeMutableBytes { w in try sender.encrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext: m, into: w) }
            }
            let p = try wire.withUnsafeBytes { w in
                try plain.withUnsafeMutableBytes { o in
                    try receiver.decrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                         ciphertext: UnsafeRawBufferPointer(rebasing: w[0..<n]), into: o)
                }
            }
            XCTAssertEqual(Array(plain.prefix(p)), message)
        }
        XCTAssertEqual(sender.nonce, 3)
        XCTAssertEqual(receiver.nonce, 3)
    }

    func testNonceExhaustionAndEmptyKey() throws {
        let cs = CipherState(key: try NoiseTransportKey(bytes: [UInt8](repeating: 4, count: 32)))
        cs.setNonce(UInt64.max - 1)
        XCTAssertNoThrow(try cs.encryptWithAd([], [1]))
        XCTAssertThrowsError(try cs.encryptWithAd([], [1])) { error in
            XCTAssertEqual(error as? NoiseError, .nonceExhausted)
        }
        // Without a key, EncryptWithAd returns the plaintext (§5.1).
        let empty = CipherState()
        XCTAssertFalse(empty.hasKey)
        XCTAssertEqual(try empty.encryptWithAd([9], [1, 2, 3]), [1, 2, 3])
        XCTAssertThrowsError(try empty.rekey())
    }

    func testRekeyKeepsPeersInStep() throws {
        let raw = [UInt8](repeating: 6, count: 32)
        let a = CipherState(key: try NoiseTransportKey(bytes: raw))
        let b = CipherState(key: try NoiseTransportKey(bytes: raw))
        let before = try a.encryptWithAd([], [1, 2, 3])
        XCTAssertEqual(try b.decryptWithAd([], before), [1, 2, 3])
        try a.rekey()
        try b.rekey()
        XCTAssertNotEqual(a.key?.exportBytes(), raw)
        XCTAssertEqual(a.key?.exportBytes(), b.key?.exportBytes())
        XCTAssertEqual(a.nonce, 1, "Rekey leaves the nonce alone (§4.2)")
        let after = try a.encryptWithAd([], [4, 5, 6])
        XCTAssertEqual(try b.decryptWithAd([], after), [4, 5, 6])
        // The old key no longer opens new traffic.
        let stale = CipherState(key: try NoiseTransportKey(bytes: raw))
        stale.setNonce(2)
        XCTAssertThrowsError(try stale.decryptWithAd([], try a.encryptWithAd([], [7])))
    }
}
