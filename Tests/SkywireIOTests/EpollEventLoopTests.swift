#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import XCTest
@testable import SkywireIO

final class EpollEventLoopTests: XCTestCase {
    private var loop: EpollEventLoop!

    override func setUpWithError() throws { loop = try EpollEventLoop(name: "test-loop") }
    override func tearDown() { loop.shutdown(); loop = nil }

    func testExecuteAndSubmitRunOnTheLoopThread() throws {
        let loop = self.loop!
        XCTAssertFalse(loop.inEventLoop)
        let onLoop = try loop.submit { loop.inEventLoop }.wait()
        XCTAssertTrue(onLoop)
        // Tasks from several threads all run, each once.
        let count = NIOLockedValueBox(0)
        let done = loop.makePromise(of: Void.self)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<250 {
                loop.execute {
                    let n = count.withLockedValue { $0 += 1; return $0 }
                    if n == 1000 { done.succeed(()) }
                }
            }
        }
        try done.futureResult.wait()
        XCTAssertEqual(count.withLockedValue { $0 }, 1000)
    }

    func testScheduledTasksRunInDeadlineOrderAndCancelledOnesDoNot() throws {
        let loop = self.loop!
        let order = NIOLockedValueBox<[Int]>([])
        let start = NIODeadline.now()
        let late = loop.scheduleTask(in: .milliseconds(60)) { order.withLockedValue { $0.append(60) } }
        let early = loop.scheduleTask(in: .milliseconds(20)) { order.withLockedValue { $0.append(20) } }
        let middle = loop.scheduleTask(in: .milliseconds(40)) { order.withLockedValue { $0.append(40) } }
        let cancelled = loop.scheduleTask(in: .milliseconds(30)) { order.withLockedValue { $0.append(30) } }
        cancelled.cancel()
        try early.futureResult.wait()
        XCTAssertGreaterThanOrEqual(NIODeadline.now() - start, .milliseconds(20))
        try middle.futureResult.wait()
        try late.futureResult.wait()
        XCTAssertEqual(order.withLockedValue { $0 }, [20, 40, 60])
        XCTAssertThrowsError(try cancelled.futureResult.wait()) { error in
            XCTAssertEqual(error as? EventLoopError, .cancelled)
        }
    }

    func testTimersFireInDeadlineOrderBesideScheduledTasksAndCancelledOnesDoNot() throws {
        let loop = self.loop!
        let order = NIOLockedValueBox<[Int]>([])
        let done = loop.makePromise(of: Void.self)
        let start = NIODeadline.now()
        try loop.submit {
            _ = loop.setTimer(in: .milliseconds(50)) {
                order.withLockedValue { $0.append(50) }
                done.succeed(())
            }
            _ = loop.setTimer(in: .milliseconds(10)) { order.withLockedValue { $0.append(10) } }
            let cancelled = loop.setTimer(in: .milliseconds(20)) { order.withLockedValue { $0.append(20) } }
            _ = loop.scheduleTask(in: .milliseconds(30)) { order.withLockedValue { $0.append(30) } }
            loop.cancelTimer(cancelled)
            loop.cancelTimer(cancelled)  // twice: ignored
        }.wait()
        try done.futureResult.wait()
        XCTAssertGreaterThanOrEqual(NIODeadline.now() - start, .milliseconds(50))
        XCTAssertEqual(order.withLockedValue { $0 }, [10, 30, 50])
        // A fired timer cancelled afterwards is ignored; a timer set by a firing one runs too.
        let again = loop.makePromise(of: Void.self)
        try loop.submit {
            var first: LoopTimer?
            first = loop.setTimer(in: .milliseconds(1)) {
                if let first { loop.cancelTimer(first) }
                _ = loop.setTimer(in: .milliseconds(1)) { again.succeed(()) }
            }
        }.wait()
        try again.futureResult.wait()
    }

    func testScheduledTaskErrorFailsItsFuture() {
        let loop = self.loop!
        struct Boom: Error {}
        let task = loop.scheduleTask(in: .milliseconds(1)) { () throws -> Int in throw Boom() }
        XCTAssertThrowsError(try task.futureResult.wait()) { XCTAssertTrue($0 is Boom) }
    }

    func testWatchedDescriptorReportsReadinessUntilUnwatched() throws {
        let loop = self.loop!
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let received = NIOLockedValueBox<[UInt8]>([])
        let gotData = loop.makePromise(of: Void.self)
        let gotWritable = loop.makePromise(of: Void.self)
        let fd = fds[0]
        try loop.submit {
            try loop.watch(fd, interest: .read) { readiness in
                if readiness.readable {
                    var buf = [UInt8](repeating: 0, count: 16)
                    let n = read(fd, &buf, buf.count)
                    if n > 0 { received.withLockedValue { $0 += buf[..<n] }; gotData.succeed(()) }
                }
                if readiness.writable { gotWritable.succeed(()) }
            }
        }.wait()
        var hello: [UInt8] = [1, 2, 3]
        XCTAssertEqual(write(fds[1], &hello, 3), 3)
        try gotData.futureResult.wait()
        XCTAssertEqual(received.withLockedValue { $0 }, [1, 2, 3])

        try loop.submit { try loop.setInterest(fd, [.read, .write]) }.wait()
        try gotWritable.futureResult.wait()

        // After unwatch, data on the descriptor reaches no handler.
        try loop.submit { loop.unwatch(fd) }.wait()
        XCTAssertEqual(write(fds[1], &hello, 3), 3)
        try loop.submit {}.wait()
        try loop.scheduleTask(in: .milliseconds(20)) {}.futureResult.wait()
        XCTAssertEqual(received.withLockedValue { $0 }, [1, 2, 3])
    }

    func testShutdownFailsPendingScheduledTasksAndRunsQueuedOnes() throws {
        let loop = self.loop!
        let pending = loop.scheduleTask(in: .seconds(60)) {}
        let failure = NIOLockedValueBox<Error?>(nil)
        pending.futureResult.whenFailure { error in failure.withLockedValue { $0 = error } }
        let ran = NIOLockedValueBox(false)
        loop.execute { ran.withLockedValue { $0 = true } }
        let finished = NIOLockedValueBox<Error??>(nil)
        loop.shutdown { error in finished.withLockedValue { $0 = .some(error) } }
        XCTAssertTrue(ran.withLockedValue { $0 })
        XCTAssertNotNil(finished.withLockedValue { $0 } as Any?)
        XCTAssertEqual(failure.withLockedValue { $0 } as? EventLoopError, .shutdown)
    }
}
