import NIOCore
import SkywireTransport
import XCTest

/// The sudph initiator's resend schedules (pure): the usual one of PROTOCOL.md §4.3 and the faster
/// one after a hole punch (docs/discovery.md "Hole punching").
final class SudphHandshakeScheduleTests: XCTestCase {
    func testPunchedResendsEvery250MillisecondsForFiveSeconds() {
        let s = SudphHandshakeSchedule.punched
        XCTAssertEqual(s.limit, .seconds(5))
        XCTAssertFalse(s.doubling)
        for n in 1...30 { XCTAssertEqual(s.delay(afterSend: n), .milliseconds(250)) }
        let offsets = s.sendOffsets
        XCTAssertEqual(offsets.count, 20)   // 0, 0.25, …, 4.75 s; none at 5 s: the dial fails then
        XCTAssertEqual(offsets.first, .zero)
        XCTAssertEqual(offsets.last, .milliseconds(4750))
        XCTAssertEqual(offsets, (0..<20).map { .milliseconds(Int64($0) * 250) })
        XCTAssertEqual(s.summary, "within 5 s, resent every 250 ms after a punch")
    }

    func testNormalDoublesFromOneSecondUpToTheHandshakeTimeout() {
        let s = SudphHandshakeSchedule.normal(limitSeconds: 10)
        XCTAssertEqual((1...4).map { s.delay(afterSend: $0) }, [.seconds(1), .seconds(2), .seconds(4), .seconds(8)])
        XCTAssertEqual(s.sendOffsets, [.zero, .seconds(1), .seconds(3), .seconds(7)])
        XCTAssertEqual(s.limit, .seconds(10))
        XCTAssertEqual(s.summary, "within 10 s")
        XCTAssertEqual(SudphHandshakeSchedule.normal(limitSeconds: 2).sendOffsets, [.zero, .seconds(1)])
        // Never below one second; the doubling is capped instead of overflowing.
        XCTAssertEqual(SudphHandshakeSchedule.normal(limitSeconds: 0).limit, .seconds(1))
        XCTAssertEqual(s.delay(afterSend: 1000), .nanoseconds(1_000_000_000 << 30))
    }
}
