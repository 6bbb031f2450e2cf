import XCTest
@testable import SkywireVPN

/// The exit's TUN thread waits for a full stcpr link only while one client alone gets packets
/// (`SoleClientPacing`); before, it never waited (every packet beyond the queue was dropped).
final class SoleClientPacingTests: XCTestCase {
    private let ms: UInt64 = 1_000_000
    private let start: UInt64 = 1_000_000_000

    func testASoleClientMayWait() {
        var pacing = SoleClientPacing()
        for i in 0..<1000 { XCTAssertTrue(pacing.note(7, now: start + UInt64(i) * ms)) }
    }

    func testTwoActiveClientsNeverWaitUntilTheWindowPasses() {
        var pacing = SoleClientPacing()
        XCTAssertTrue(pacing.note(7, now: start))
        // A second client while the first is active: drop mode at once, for both.
        XCTAssertFalse(pacing.note(8, now: start + ms))
        XCTAssertFalse(pacing.note(7, now: start + 2 * ms))
        // Only the first goes on: still within the window of the last switch.
        let lastSwitch = start + 2 * ms
        XCTAssertFalse(pacing.note(7, now: lastSwitch + SoleClientPacing.window - ms))
        // A window after the last time both were active, the sole client may wait again.
        XCTAssertTrue(pacing.note(7, now: lastSwitch + SoleClientPacing.window))
    }

    func testAClientThatTakesOverFromAnIdleOneMayWait() {
        var pacing = SoleClientPacing()
        XCTAssertTrue(pacing.note(7, now: start))
        // Client 7 went quiet a whole window ago: 8 is alone.
        XCTAssertTrue(pacing.note(8, now: start + SoleClientPacing.window))
        XCTAssertTrue(pacing.note(8, now: start + SoleClientPacing.window + ms))
    }
}
