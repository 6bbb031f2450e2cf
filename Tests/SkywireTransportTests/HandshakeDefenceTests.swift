import NIOCore
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport
@testable import SkywireWire

/// The pure cores of the handshake defences (PROTOCOL.md §2.1, §3, §4.3): the sudph responder's
/// confirmation state machine, stcpr admission, load gauge, refusal summaries, sudph MACs.
final class HandshakeDefenceTests: XCTestCase {
    typealias Table = SudphResponderTable<String>
    let k = KeyPair.generate().publicKey
    let other = KeyPair.generate().publicKey
    func stamp(_ s: Int64) -> TAI64N { TAI64N(unixSeconds: s, nanoseconds: 0) }
    static let second: Int64 = 1_000_000_000

    func testReplayedOrOlderInitiationIsRefused() {
        var table = Table(maxPending: 4, pendingLifetime: 10 * Self.second)
        XCTAssertEqual(table.offer(key: k, timestamp: stamp(100), index: 1, fingerprint: [1], pending: "t100", now: 0),
                       .accepted(replaced: nil))
        XCTAssertEqual(table.offer(key: k, timestamp: stamp(100), index: 2, fingerprint: [2], pending: "again", now: 0), .replay)
        XCTAssertEqual(table.offer(key: k, timestamp: stamp(99), index: 3, fingerprint: [3], pending: "older", now: 0), .replay)
        XCTAssertFalse(table.isPending(2))
        XCTAssertFalse(table.isPending(3))
        XCTAssertEqual(table.pendingIndex(fingerprint: [1]), 1, "a resent copy finds its pending handshake")
    }

    func testUnconfirmedHandshakeDoesNotReplaceTheConfirmedSessionAndConfirmationSwapsIt() {
        var table = Table(maxPending: 4, pendingLifetime: 10 * Self.second)
        _ = table.offer(key: k, timestamp: stamp(100), index: 1, fingerprint: [1], pending: "first", now: 0)
        let first = table.confirm(1, now: 0)
        XCTAssertEqual(first?.pending, "first")
        XCTAssertNil(first?.replacedLive)
        XCTAssertEqual(table.liveIndex(for: k), 1)
        // A newer initiation from k (the peer redialled, or a forger with a fresh stamp but no
        // way to confirm): pending only, the live session stays.
        XCTAssertEqual(table.offer(key: k, timestamp: stamp(200), index: 2, fingerprint: [2], pending: "second", now: 0),
                       .accepted(replaced: nil))
        XCTAssertEqual(table.liveIndex(for: k), 1, "unconfirmed: the live session is untouched")
        XCTAssertNil(table.confirm(99, now: 0), "only a pending index can be confirmed")
        XCTAssertNil(table.confirm(1, now: 0), "a live index is not pending")
        // Confirmation swaps: the old live index is handed back to be closed.
        let second = table.confirm(2, now: 0)
        XCTAssertEqual(second?.key, k)
        XCTAssertEqual(second?.replacedLive, 1)
        XCTAssertEqual(table.liveIndex(for: k), 2)
        // The old session's close arriving late does not forget the new one.
        table.liveClosed(key: k, index: 1)
        XCTAssertEqual(table.liveIndex(for: k), 2)
        table.liveClosed(key: k, index: 2)
        XCTAssertNil(table.liveIndex(for: k))
    }

    func testOnePendingPerKeyACapAndExpiry() {
        var table = Table(maxPending: 2, pendingLifetime: 10 * Self.second)
        _ = table.offer(key: k, timestamp: stamp(1), index: 1, fingerprint: [1], pending: "a", now: 0)
        XCTAssertEqual(table.offer(key: k, timestamp: stamp(2), index: 2, fingerprint: [2], pending: "b", now: 0),
                       .accepted(replaced: 1), "a newer initiation from the same key replaces its pending one")
        XCTAssertFalse(table.isPending(1))
        XCTAssertNil(table.pendingIndex(fingerprint: [1]))
        _ = table.offer(key: other, timestamp: stamp(1), index: 3, fingerprint: [3], pending: "c", now: 0)
        let third = KeyPair.generate().publicKey
        XCTAssertEqual(table.offer(key: third, timestamp: stamp(1), index: 4, fingerprint: [4], pending: "d", now: Self.second), .full)
        XCTAssertFalse(table.hasRoom(now: Self.second))
        XCTAssertTrue(table.timestamps.isFresh(stamp(1), from: third), "a refused offer leaves no stamp behind")
        // After the lifetime the pending handshakes expire and make room.
        XCTAssertTrue(table.hasRoom(now: 10 * Self.second))
        XCTAssertEqual(table.pendingCount, 0)
        XCTAssertNil(table.confirm(2, now: 10 * Self.second), "an expired handshake cannot be confirmed")
    }

    func testExpiredPendingHandshakeIsNotConfirmedEvenBeforeItIsPurged() {
        var table = Table(maxPending: 4, pendingLifetime: 10 * Self.second)
        _ = table.offer(key: k, timestamp: stamp(1), index: 1, fingerprint: [1], pending: "a", now: 0)
        XCTAssertTrue(table.isPending(1))
        XCTAssertNil(table.confirm(1, now: 10 * Self.second))
        XCTAssertFalse(table.isPending(1))
        XCTAssertNil(table.liveIndex(for: k))
    }

    func testRateLimiterAllowsABurstThenTheRatePerAddress() {
        var limiter = HandshakeRateLimiter(capacity: 2)
        let a: [UInt8] = [192, 0, 2, 1], b: [UInt8] = [192, 0, 2, 2], c: [UInt8] = [192, 0, 2, 3]
        XCTAssertEqual((0..<6).map { _ in limiter.allow(a, now: 0) }, [true, true, true, true, true, false], "burst of 5")
        XCTAssertTrue(limiter.allow(b, now: 0), "another address has its own bucket")
        XCTAssertFalse(limiter.allow(a, now: HandshakeRateLimiter.tokenCost - 1))
        XCTAssertTrue(limiter.allow(a, now: HandshakeRateLimiter.tokenCost), "one more every 1/20 s")
        XCTAssertFalse(limiter.allow(c, now: HandshakeRateLimiter.tokenCost), "table full, nobody idle for 1 s")
        XCTAssertTrue(limiter.allow(c, now: 2 * Self.second), "idle addresses are forgotten to make room")
        XCTAssertLessThanOrEqual(limiter.count, 2)
    }

    func testStcprHandshakeAdmissionCapsUnconfirmedHandshakesAndRefusesReplays() {
        var admission = StcprHandshakeAdmission(maxUnconfirmed: 2)
        XCTAssertTrue(admission.reserve())
        XCTAssertTrue(admission.reserve())
        XCTAssertFalse(admission.reserve(), "the cap holds until one is confirmed or closed")
        admission.release()
        XCTAssertTrue(admission.reserve())
        XCTAssertTrue(admission.admit(k, timestamp: stamp(10)))
        for _ in 0..<20 { XCTAssertFalse(admission.admit(k, timestamp: stamp(10)), "20 replays of one message 1") }
        XCTAssertTrue(admission.admit(k, timestamp: stamp(11)))
    }

    func testLoadGaugeEngagesAboveTheThresholdAndDecays() {
        var load = HandshakeLoad(threshold: 3)
        let s = Self.second
        XCTAssertEqual((0..<3).map { _ in load.record(now: 0) }, [false, false, false])
        XCTAssertTrue(load.record(now: s / 2), "the 4th in one second")
        XCTAssertTrue(load.record(now: s + 1), "the previous second was over the threshold")
        XCTAssertFalse(load.record(now: 3 * s), "two quiet seconds later")
    }

    /// Handshake refusals go through `RefusalLog` (one logger for every refusal): at most one
    /// summary per interval, with the counts since the last one, and debug lines rate-limited.
    func testRefusalLogSummarisesAtMostOncePerInterval() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var log = RefusalLog.Counter(start: start)
        var debugLines = 0
        for i in 1...1000 {
            let r = log.record((i % 2 == 0 ? HandshakeRefusal.mac1 : .replay).logReason, now: start + .milliseconds(Int64(i)))
            XCTAssertNil(r.summary, "no summary within the interval (refusal \(i))")
            if r.debug { debugLines += 1 }
        }
        XCTAssertEqual(debugLines, RefusalLog.debugLinesPerInterval, "a flood logs a bounded number of debug lines")
        let due = log.record(HandshakeRefusal.cookie.logReason, now: start + RefusalLog.summaryInterval)
        XCTAssertEqual(due.summary.map(RefusalLog.describe), "handshake mac1 500, handshake cookie 1, handshake replay 500")
        XCTAssertTrue(due.debug, "debug lines start again after a summary")
        XCTAssertNil(log.record(HandshakeRefusal.malformed.logReason, now: start + RefusalLog.summaryInterval + .seconds(1)).summary)
        XCTAssertEqual(log.total.values.reduce(0, +), 1002)
        XCTAssertEqual(log.sinceSummary, [.handshakeMalformed: 1])
    }

    func testSudphInitiationMacsAndCookieReply() throws {
        let responder = try NoiseStaticIdentity(identity: KeyPair.generate())
        var packet = try [UInt8](repeating: 0xAB, count: 141).withUnsafeBytes { try SudphPacket.initiation(senderIndex: 7, message: $0) }
        SudphHandshakeMACs.seal(initiation: &packet, mac1Key: responder.mac1Key, cookie: nil)
        XCTAssertEqual(Array(packet[149..<165]), HandshakeMAC.mac(key: responder.mac1Key, Array(packet[0..<149])))
        XCTAssertEqual(Array(packet[165...]), [UInt8](repeating: 0, count: 16), "no cookie: mac2 is zero")
        packet.withUnsafeBytes { XCTAssertTrue(SudphHandshakeMACs.checkMac1($0, mac1Key: responder.mac1Key)) }
        let stranger = try NoiseStaticIdentity(identity: KeyPair.generate())
        packet.withUnsafeBytes { XCTAssertFalse(SudphHandshakeMACs.checkMac1($0, mac1Key: stranger.mac1Key)) }

        let address = try SocketAddress(ipAddress: "192.0.2.1", port: 7778)
        XCTAssertEqual(SudphHandshakeMACs.addressBytes(address), [192, 0, 2, 1, 0x1e, 0x62])
        XCTAssertEqual(SudphHandshakeMACs.addressBytes(try SocketAddress(ipAddress: "2001:db8::1", port: 1)).count, 18)
        var secret = CookieSecret(nowSeconds: 0)
        let cookie = secret.cookie(for: SudphHandshakeMACs.addressBytes(address), nowSeconds: 0)
        packet.withUnsafeBytes { XCTAssertFalse(SudphHandshakeMACs.checkMac2($0, cookie: cookie)) }
        let mac1 = packet.withUnsafeBytes { SudphHandshakeMACs.mac1(of: $0) }
        let reply = SudphHandshakeMACs.cookieReply(senderIndex: 7, cookie: cookie, cookieKey: responder.cookieKey, mac1: mac1,
                                                   nonce: [UInt8](repeating: 3, count: 24))
        XCTAssertEqual(reply.count, 64)
        guard case .cookieReply(let index, let nonce, let sealed) = try reply.withUnsafeBytes({ try SudphPacket.parse($0) }) else {
            return XCTFail("not a cookie reply")
        }
        XCTAssertEqual(index, 7)
        let opened = reply.withUnsafeBytes {
            SudphHandshakeMACs.openCookieReply($0, nonce: nonce, sealedCookie: sealed, cookieKey: responder.cookieKey, mac1: mac1)
        }
        XCTAssertEqual(opened, cookie)
        XCTAssertNil(reply.withUnsafeBytes {
            SudphHandshakeMACs.openCookieReply($0, nonce: nonce, sealedCookie: sealed, cookieKey: stranger.cookieKey, mac1: mac1)
        })
        // With the cookie, mac2 verifies (and mac1 is unchanged).
        SudphHandshakeMACs.seal(initiation: &packet, mac1Key: responder.mac1Key, cookie: cookie)
        XCTAssertEqual(Array(packet[149..<165]), mac1)
        XCTAssertEqual(Array(packet[165...]), HandshakeMAC.mac(key: cookie, Array(packet[0..<165])))
        packet.withUnsafeBytes { XCTAssertTrue(SudphHandshakeMACs.checkMac2($0, cookie: cookie)) }
    }
}
