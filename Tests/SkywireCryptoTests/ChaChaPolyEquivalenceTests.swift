import Dispatch
import SkywireTestSupport
import Synchronization
import XCTest
@testable import SkywireCrypto
import SkywireCryptoReference

/// The transports' ChaCha20-Poly1305 moved from libsodium to OpenSSL (`ChaChaPolyCipher`): these
/// tests hold OpenSSL's output byte for byte to libsodium's (`ChaChaPolyReference`) over random
/// sizes up to the largest Noise message, and check that both refuse tampered records.
final class ChaChaPolyEquivalenceTests: XCTestCase {
    /// Sizes worth hitting besides the random ones: block (64), Poly1305 block (16) and buffer
    /// boundaries, a typical VPN packet, the largest plaintext a Noise message carries.
    static let edgeSizes = [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1400,
                            1420, 4096, 8191, 8192, 16384, 32768, 65000, NoiseConstants.maxPlaintextLength]
    static let randomCases = 160
    static let maxAdLength = 80

    func testSealAndOpenMatchLibsodiumOverRandomSizes() throws {
        var rng = SeededGenerator(seed: 0xC4AC_4A20_1305)
        var sizes = Self.edgeSizes
        for _ in 0..<Self.randomCases { sizes.append(Int.random(in: 0...NoiseConstants.maxPlaintextLength, using: &rng)) }
        for (index, size) in sizes.enumerated() {
            let keyBytes = (0..<NoiseConstants.keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let key = try NoiseTransportKey(bytes: keyBytes)
            let reference = try ChaChaPolyReference(key: keyBytes)
            let ad = (0..<Int.random(in: 0...Self.maxAdLength, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let plaintext = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Counters with both halves of the 64-bit value set, and the edges.
            let counter = index < 2 ? [0, NoiseConstants.reservedNonce - 1][index] : rng.next() >> 1
            let ours = try Self.seal(key, counter: counter, ad: ad, plaintext)
            let theirs = try Self.seal(reference, counter: counter, ad: ad, plaintext)
            XCTAssertEqual(ours, theirs, "size \(size), ad \(ad.count), counter \(counter): OpenSSL's bytes differ from libsodium's")
            XCTAssertEqual(try Self.open(key, counter: counter, ad: ad, theirs), plaintext, "size \(size): OpenSSL opens libsodium's")
            XCTAssertEqual(try Self.open(reference, counter: counter, ad: ad, ours), plaintext, "size \(size): libsodium opens OpenSSL's")
            // In place, as sudph seals and opens (one buffer, the tag after the text).
            var buffer = plaintext + [UInt8](repeating: 0, count: NoiseConstants.tagLength)
            try ad.withUnsafeBytes { a in
                try buffer.withUnsafeMutableBytes { b in
                    _ = try key.seal(counter: counter, ad: a, plaintext: UnsafeRawBufferPointer(rebasing: b[0..<size]), into: b)
                }
            }
            XCTAssertEqual(buffer, theirs, "size \(size): in-place seal differs")
            let opened = try ad.withUnsafeBytes { a in
                try buffer.withUnsafeMutableBytes { b in try key.open(counter: counter, ad: a, ciphertext: UnsafeRawBufferPointer(b), into: b) }
            }
            XCTAssertEqual(opened, size)
            XCTAssertEqual(Array(buffer.prefix(size)), plaintext, "size \(size): in-place open differs")
        }
    }

    func testTamperedRecordsAreRefusedByBothAndTheContextStaysUsable() throws {
        var rng = SeededGenerator(seed: 17)
        let keyBytes = (0..<NoiseConstants.keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let key = try NoiseTransportKey(bytes: keyBytes)
        let reference = try ChaChaPolyReference(key: keyBytes)
        let ad: [UInt8] = Array("header0123456789".utf8)
        for size in [0, 1, 64, 1420, 8192] {
            let plaintext = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let sealed = try Self.seal(key, counter: 5, ad: ad, plaintext)
            var variants: [(String, UInt64, [UInt8], [UInt8])] = []
            for position in [0, size / 2, size - 1] where size > 0 {
                var c = sealed
                c[position] ^= 0x01
                variants.append(("ciphertext byte \(position)", 5, ad, c))
            }
            for position in [size, size + 7, size + NoiseConstants.tagLength - 1] {
                var c = sealed
                c[position] ^= 0x80
                variants.append(("tag byte \(position - size)", 5, ad, c))
            }
            var otherAd = ad
            otherAd[3] ^= 0x40
            variants.append(("associated data", 5, otherAd, sealed))
            variants.append(("counter", 6, ad, sealed))
            variants.append(("truncated", 5, ad, Array(sealed.dropLast())))
            for (what, counter, a, c) in variants {
                XCTAssertThrowsError(try Self.open(key, counter: counter, ad: a, c), "size \(size), \(what): OpenSSL") { error in
                    // Shorter than a tag is refused before any crypto runs.
                    let expected: NoiseError = c.count < NoiseConstants.tagLength
                        ? .badLength(what: "ciphertext (at least the tag)", expected: NoiseConstants.tagLength, got: c.count)
                        : .decryptFailed
                    XCTAssertEqual(error as? NoiseError, expected, "size \(size), \(what)")
                }
                XCTAssertThrowsError(try Self.open(reference, counter: counter, ad: a, c), "size \(size), \(what): libsodium")
                // The same key (and the context this thread holds for it) still opens the genuine record.
                XCTAssertEqual(try Self.open(key, counter: 5, ad: ad, sealed), plaintext, "size \(size) after \(what)")
            }
        }
    }

    func testThreadsSealingWithOneKeyAtOnceAgreeWithLibsodium() throws {
        let keyBytes = (0..<NoiseConstants.keyLength).map { UInt8($0 * 3) }
        let key = try NoiseTransportKey(bytes: keyBytes)
        let reference = try ChaChaPolyReference(key: keyBytes)
        let threads = 4
        let perThread = 200
        let plaintext = [UInt8](repeating: 0x5a, count: 1420)
        let mismatches = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread {
                let counter = UInt64(t * perThread + i)
                guard let ours = try? Self.seal(key, counter: counter, ad: [], plaintext),
                      let theirs = try? Self.seal(reference, counter: counter, ad: [], plaintext), ours == theirs else {
                    mismatches.withLock { $0 += 1 }
                    continue
                }
            }
        }
        XCTAssertEqual(mismatches.withLock { $0 }, 0)
    }

    // MARK: - Helpers

    static func seal<S: ChaChaPolySealing>(_ s: S, counter: UInt64, ad: [UInt8], _ plaintext: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + NoiseConstants.tagLength)
        let n = try ad.withUnsafeBytes { a in
            try plaintext.withUnsafeBytes { p in try out.withUnsafeMutableBytes { o in try s.seal(counter: counter, ad: a, plaintext: p, into: o) } }
        }
        XCTAssertEqual(n, out.count)
        return out
    }

    static func open<S: ChaChaPolySealing>(_ s: S, counter: UInt64, ad: [UInt8], _ ciphertext: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(ciphertext.count, 1))
        let n = try ad.withUnsafeBytes { a in
            try ciphertext.withUnsafeBytes { c in try out.withUnsafeMutableBytes { o in try s.open(counter: counter, ad: a, ciphertext: c, into: o) } }
        }
        return Array(out.prefix(n))
    }
}
