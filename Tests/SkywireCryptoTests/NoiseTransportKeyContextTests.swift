import Dispatch
import Synchronization
import XCTest
@testable import SkywireCrypto

/// How many OpenSSL contexts a `NoiseTransportKey` holds: none until its first record (a relay
/// or a visor with thousands of idle sessions pays nothing for keys never used), one for a key
/// used by one thread at a time, and a bound however many threads used it at once.
final class NoiseTransportKeyContextTests: XCTestCase {
    static let record = [UInt8](repeating: 0xa5, count: 1420)

    func testNoContextBeforeTheFirstRecordAndOneForOneThread() throws {
        let key = try NoiseTransportKey(bytes: [UInt8](repeating: 7, count: NoiseConstants.keyLength))
        XCTAssertEqual(key.heldCiphers, 0)
        let first = try ChaChaPolyEquivalenceTests.seal(key, counter: 0, ad: [], Self.record)
        XCTAssertEqual(key.heldCiphers, 1)
        for counter in UInt64(1)..<200 {
            let sealed = try ChaChaPolyEquivalenceTests.seal(key, counter: counter, ad: [], Self.record)
            XCTAssertEqual(try ChaChaPolyEquivalenceTests.open(key, counter: counter, ad: [], sealed), Self.record)
        }
        XCTAssertEqual(key.heldCiphers, 1, "sealing and opening on one thread reuses the one context")
        XCTAssertEqual(try ChaChaPolyEquivalenceTests.open(key, counter: 0, ad: [], first), Self.record)
    }

    func testManyThreadsAtOnceAgreeAndLeaveABoundedNumberOfContexts() throws {
        let key = try NoiseTransportKey(bytes: (0..<NoiseConstants.keyLength).map { UInt8($0 ^ 0x5c) })
        let threads = 12
        let perThread = 150
        // What each counter seals to, computed on one thread first.
        let expected = try (0..<(threads * perThread)).map {
            try ChaChaPolyEquivalenceTests.seal(key, counter: UInt64($0), ad: [1, 2, 3], Self.record)
        }
        let mismatches = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread {
                let counter = t * perThread + i
                let sealed = try? ChaChaPolyEquivalenceTests.seal(key, counter: UInt64(counter), ad: [1, 2, 3], Self.record)
                let opened = sealed.flatMap {
                    try? ChaChaPolyEquivalenceTests.open(key, counter: UInt64(counter), ad: [1, 2, 3], $0)
                }
                if sealed != expected[counter] || opened != Self.record { mismatches.withLock { $0 += 1 } }
            }
        }
        XCTAssertEqual(mismatches.withLock { $0 }, 0)
        XCTAssertGreaterThanOrEqual(key.heldCiphers, 1)
        XCTAssertLessThanOrEqual(key.heldCiphers, 1 + NoiseTransportKey.maxSpareCiphers)
    }
}
