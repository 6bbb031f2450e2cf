import SkywireTestSupport
import XCTest
@testable import SkywireWire

final class ReplayWindowTests: XCTestCase {
    private func accept(_ w: inout ReplayWindow, _ n: UInt64) -> Bool {
        guard w.check(n) else { return false }
        return w.commit(n)
    }

    func testInOrderAndDuplicates() {
        var w = ReplayWindow()
        for n in UInt64(0)..<5000 {
            XCTAssertTrue(accept(&w, n), "\(n)")
            XCTAssertFalse(w.check(n), "duplicate \(n)")
        }
        XCTAssertEqual(w.highest, 4999)
        XCTAssertFalse(accept(&w, 4990))
        XCTAssertFalse(w.commit(4999), "commit refuses what check refuses")
    }

    func testCheckIsReadOnly() {
        var w = ReplayWindow()
        XCTAssertTrue(w.check(10))
        XCTAssertTrue(w.check(10), "check alone records nothing (tag not verified)")
        XCTAssertFalse(w.hasReceived)
        w.commit(10)
        XCTAssertFalse(w.check(10))
    }

    func testOutOfOrderWithinWindow() {
        var w = ReplayWindow()
        XCTAssertTrue(accept(&w, 3000))
        let lowestInWindow = 3000 - ReplayWindow.windowSize + 1
        XCTAssertTrue(accept(&w, lowestInWindow))
        XCTAssertFalse(accept(&w, lowestInWindow), "duplicate at the window's bottom")
        XCTAssertFalse(accept(&w, lowestInWindow - 1), "just below the window")
        var rng = SeededGenerator(seed: 7)
        var seen = Set<UInt64>([3000, lowestInWindow])
        for _ in 0..<3000 {
            let n = UInt64.random(in: lowestInWindow...3000, using: &rng)
            XCTAssertEqual(accept(&w, n), !seen.contains(n), "\(n)")
            seen.insert(n)
        }
        XCTAssertEqual(w.highest, 3000)
    }

    func testTooOldAndJumpAhead() {
        var w = ReplayWindow()
        XCTAssertTrue(accept(&w, 100))
        XCTAssertTrue(accept(&w, 100 + 10_000), "jump ahead further than the window")
        XCTAssertFalse(accept(&w, 100 + 10_000 - ReplayWindow.windowSize), "now too old")
        XCTAssertTrue(accept(&w, 100 + 10_000 - ReplayWindow.windowSize + 1))
        // Stale bits from before the jump must not survive: every counter in the new window is fresh.
        var ws = ReplayWindow()
        for n in UInt64(0)..<2048 { XCTAssertTrue(accept(&ws, n)) }
        XCTAssertTrue(accept(&ws, 2048 + 2048 * 3))
        for n in (2048 * 4 - ReplayWindow.windowSize + 1)..<(2048 * 4) {
            XCTAssertTrue(ws.check(n), "\(n) is new")
        }
        // Block-by-block advance: counters a full bitmap apart share a slot, and must stay distinct.
        var wb = ReplayWindow()
        XCTAssertTrue(accept(&wb, 64))
        XCTAssertTrue(accept(&wb, 64 + 2048))
        XCTAssertFalse(wb.check(64))
        XCTAssertTrue(wb.check(64 + 2047))
    }

    func testRejectLimit() {
        var w = ReplayWindow()
        let limit = ReplayWindow.rejectAfterMessages
        XCTAssertEqual(limit, UInt64.max - 8192)
        XCTAssertFalse(w.check(limit))
        XCTAssertFalse(w.check(UInt64.max))
        XCTAssertFalse(w.commit(limit))
        XCTAssertTrue(accept(&w, limit - 1))
        XCTAssertFalse(accept(&w, limit - 1))
        XCTAssertTrue(accept(&w, limit - 2))
        XCTAssertFalse(accept(&w, limit))
        XCTAssertEqual(w.highest, limit - 1)
    }

    func testZeroIsAcceptedOnce() {
        var w = ReplayWindow()
        XCTAssertTrue(accept(&w, 0))
        XCTAssertFalse(accept(&w, 0))
        XCTAssertTrue(accept(&w, 1))
    }
}
