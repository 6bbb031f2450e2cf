import NIOCore
@testable import SkywireTransport
import XCTest

/// Issue 18, "a stream-based app on dmsg moves its new streams to a direct transport when one
/// comes up later": the choice of transport for a new stream and the background retry of a
/// direct transport, as pure functions (the manager-level test is in TransportManagerStcprTests).
final class DirectRetryTests: XCTestCase {
    // MARK: Which transport a new stream takes

    private typealias Live = (type: TransportType, order: UInt64, value: String)

    func testADirectTransportIsPreferredOverANewerDmsgOne() {
        let live: [Live] = [(.dmsg, 1, "relay"), (.stcpr, 2, "direct"), (.dmsg, 3, "relay2")]
        XCTAssertEqual(TransportManager.preferred(live)?.connection, "direct")
        XCTAssertEqual(TransportManager.preferred(live)?.type, .stcpr)
        // The direct one came up after the relay, as when it comes up later: the same choice.
        let later: [Live] = [(.dmsg, 5, "relay"), (.sudph, 9, "punched")]
        XCTAssertEqual(TransportManager.preferred(later)?.connection, "punched")
    }

    func testStcprBeforeSudphBeforeDmsgAndTheNewestWithinAType() {
        let live: [Live] = [(.sudph, 7, "s7"), (.stcpr, 1, "t1"), (.stcpr, 4, "t4"), (.dmsg, 9, "d9")]
        XCTAssertEqual(TransportManager.preferred(live)?.connection, "t4")
        XCTAssertEqual(TransportManager.preferred(live.filter { $0.type != .stcpr })?.connection, "s7")
        XCTAssertEqual(TransportManager.preferred([(.dmsg, 2, "d2"), (.dmsg, 3, "d3")] as [Live])?.connection, "d3")
        XCTAssertEqual(TransportManager.preferred([(.dmsg, 2, "d2")] as [Live])?.type, .dmsg, "dmsg when nothing direct is up")
        XCTAssertNil(TransportManager.preferred([] as [Live]))
    }

    // MARK: The schedule

    func testTheStandardScheduleIs30SecondsDoublingTo5Minutes() {
        let s = DirectRetrySchedule.standard
        XCTAssertEqual((0..<7).map { s.delay(beforeAttempt: $0).nanoseconds / 1_000_000_000 }, [30, 60, 120, 240, 300, 300, 300])
        XCTAssertEqual(s.delay(beforeAttempt: 10_000), .minutes(5), "no overflow far out")
    }

    func testJitterStaysWithin20Percent() {
        for _ in 0..<200 {
            let j = DirectRetrySchedule.jittered(.seconds(30)).nanoseconds
            XCTAssertGreaterThanOrEqual(j, TimeAmount.seconds(24).nanoseconds)
            XCTAssertLessThanOrEqual(j, TimeAmount.seconds(36).nanoseconds)
        }
        XCTAssertEqual(DirectRetrySchedule.jittered(.zero), .zero)
    }

    func testAMaximumBelowTheInitialWaitIsRaisedToIt() {
        let s = DirectRetrySchedule(initial: .seconds(10), maximum: .seconds(1))
        XCTAssertEqual(s.maximum, .seconds(10))
        XCTAssertEqual(s.delay(beforeAttempt: 3), .seconds(10))
    }

    // MARK: When to attempt and when to stop

    private func peer(relayUp: Bool = true, directUp: Bool = false, streams: Int = 0, opens: UInt64 = 0) -> RelayOnlyPeer {
        RelayOnlyPeer(relayUp: relayUp, directUp: directUp, relayStreams: streams, relayOpens: opens)
    }

    func testAttemptsWhileStreamsAreOpenOnTheRelayWithGrowingWaits() {
        var state = DirectRetryState(schedule: .standard, relayOpens: 1)
        XCTAssertEqual(state.nextDelay, .seconds(30))
        XCTAssertEqual(state.look(at: peer(streams: 1, opens: 1)), .attempt)
        XCTAssertEqual(state.nextDelay, .seconds(60))
        XCTAssertEqual(state.look(at: peer(streams: 3, opens: 4)), .attempt)
        XCTAssertEqual(state.look(at: peer(streams: 2, opens: 4)), .attempt)
        XCTAssertEqual(state.attempts, 3)
        XCTAssertEqual(state.nextDelay, .seconds(240))
    }

    func testAStreamOpenedAndClosedBetweenTwoLooksCountsAsUse() {
        var state = DirectRetryState(schedule: .standard, relayOpens: 0)
        XCTAssertEqual(state.look(at: peer(streams: 0, opens: 2)), .attempt)
        XCTAssertEqual(state.look(at: peer(streams: 0, opens: 2)), .stop(.idle), "nothing opened since the last look")
    }

    func testStopsWhenTheRelayPathIsIdle() {
        var state = DirectRetryState(schedule: .standard, relayOpens: 5)
        XCTAssertEqual(state.look(at: peer(streams: 0, opens: 5)), .stop(.idle))
        XCTAssertEqual(state.attempts, 0)
    }

    func testStopsWhenTheRelayTransportClosed() {
        var state = DirectRetryState(schedule: .standard, relayOpens: 0)
        XCTAssertEqual(state.look(at: peer(relayUp: false, streams: 0, opens: 3)), .stop(.relayClosed))
    }

    func testStopsOnceADirectTransportIsUpEvenWithStreamsOnTheRelay() {
        var state = DirectRetryState(schedule: .standard, relayOpens: 0)
        XCTAssertEqual(state.look(at: peer(streams: 4, opens: 9)), .attempt)
        XCTAssertEqual(state.look(at: peer(directUp: true, streams: 4, opens: 9)), .stop(.directUp))
        XCTAssertEqual(state.attempts, 1)
    }
}
