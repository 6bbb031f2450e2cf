import Dispatch
import Synchronization
import XCTest
@testable import SkywireCrypto
import SkywireCryptoReference

/// A `NoiseTransportKey` holds no OpenSSL context: each thread keeps `ThreadCiphers.slots`,
/// loaded with the key of the record at hand. These tests hold the output to libsodium's while
/// one thread interleaves more keys than it has slots, while keys are dropped and new ones made
/// (an address may come back, an `id` never does), and while many threads share keys.
final class NoiseTransportKeyContextTests: XCTestCase {
    static let record = [UInt8](repeating: 0xa5, count: 1420)

    static func keyBytes(_ n: Int) -> [UInt8] { (0..<NoiseConstants.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ n) } }

    func testOneThreadInterleavingMoreKeysThanSlotsMatchesLibsodium() throws {
        let count = ThreadCiphers.slots * 3 + 1
        let keys = try (0..<count).map { try NoiseTransportKey(bytes: Self.keyBytes($0)) }
        let references = try (0..<count).map { try ChaChaPolyReference(key: Self.keyBytes($0)) }
        for round in 0..<4 {
            // Forward, then backward: every record's key was just evicted from this thread's slots.
            let order = round % 2 == 0 ? Array(0..<count) : Array((0..<count).reversed())
            for k in order {
                let counter = UInt64(round * 1000 + k)
                let ours = try ChaChaPolyEquivalenceTests.seal(keys[k], counter: counter, ad: [UInt8(k)], Self.record)
                let theirs = try ChaChaPolyEquivalenceTests.seal(references[k], counter: counter, ad: [UInt8(k)], Self.record)
                XCTAssertEqual(ours, theirs, "key \(k), round \(round)")
                XCTAssertEqual(try ChaChaPolyEquivalenceTests.open(keys[k], counter: counter, ad: [UInt8(k)], theirs), Self.record)
                // The neighbouring key must not open it (its slot holds its own key).
                let other = (k + 1) % count
                XCTAssertThrowsError(try ChaChaPolyEquivalenceTests.open(keys[other], counter: counter, ad: [UInt8(k)], theirs))
            }
        }
        XCTAssertLessThanOrEqual(ThreadCiphers.current.count, ThreadCiphers.slots)
    }

    func testKeysDroppedAndMadeInTurnNeverReuseAStaleContext() throws {
        for n in 0..<50 {
            let sealed: [UInt8] = try {
                let key = try NoiseTransportKey(bytes: Self.keyBytes(n))
                return try ChaChaPolyEquivalenceTests.seal(key, counter: 9, ad: [], Self.record)
            }()
            XCTAssertEqual(sealed, try ChaChaPolyEquivalenceTests.seal(try ChaChaPolyReference(key: Self.keyBytes(n)),
                                                                        counter: 9, ad: [], Self.record), "key \(n)")
        }
    }

    func testManyThreadsSharingKeysAgree() throws {
        let keys = try (0..<3).map { try NoiseTransportKey(bytes: Self.keyBytes(100 + $0)) }
        let threads = 12
        let perThread = 150
        // What each (key, counter) seals to, computed on this thread first.
        let expected = try (0..<(threads * perThread)).map {
            try ChaChaPolyEquivalenceTests.seal(keys[$0 % keys.count], counter: UInt64($0), ad: [1, 2, 3], Self.record)
        }
        let mismatches = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread {
                let n = t * perThread + i
                let key = keys[n % keys.count]
                let sealed = try? ChaChaPolyEquivalenceTests.seal(key, counter: UInt64(n), ad: [1, 2, 3], Self.record)
                let opened = sealed.flatMap { try? ChaChaPolyEquivalenceTests.open(key, counter: UInt64(n), ad: [1, 2, 3], $0) }
                if sealed != expected[n] || opened != Self.record { mismatches.withLock { $0 += 1 } }
            }
        }
        XCTAssertEqual(mismatches.withLock { $0 }, 0)
    }
}
