#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireIO
import SkywireSystem
import XCTest
@testable import SkywireTransport

/// The blocking pool seen from the event loops: blocking work handed to it leaves the loop
/// serving, and the debug check recognises both kinds of loop thread.
final class BlockingPoolEventLoopTests: XCTestCase {
    /// A 1 s blocking job (a slow getaddrinfo stand-in) on the pool while the loop runs a 20 ms
    /// timer: the timer keeps firing (generous bound: a quarter of the expected 50 ticks), and
    /// the job's result arrives on the loop.
    private func assertLoopKeepsServing(_ loop: any EventLoop, file: StaticString = #filePath, line: UInt = #line) throws {
        let ticks = TickCounter()
        let timer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in ticks.increment() }
        let blocked = BlockingPool.shared.runFuture(on: loop) { () -> Bool in
            usleep(1_000_000)
            return true
        }.map { _ in loop.inEventLoop }
        XCTAssertTrue(try blocked.wait(), "the result arrived on the loop", file: file, line: line)
        timer.cancel()
        XCTAssertGreaterThanOrEqual(ticks.value, 12, "the loop's timer stalled while the pool blocked", file: file, line: line)
    }

    func testSlowBlockingJobDoesNotStallAnEpollEventLoop() throws {
        let loop = try EpollEventLoop(name: "pool-test")
        defer { loop.shutdown() }
        try assertLoopKeepsServing(loop)
    }

    func testSlowBlockingJobDoesNotStallANIOEventLoop() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        try assertLoopKeepsServing(group.next())
    }

    /// A name resolved for a dial (`resolveOffLoop`, what stcpr, sudph and skysocks use) is looked
    /// up on a pool thread, not on the loop, and the loop is marked as an event loop for the
    /// debug check.
    func testResolutionRunsOnAPoolThreadAndLoopsAreRecognised() throws {
        BlockingPool.recogniseNIOEventLoops()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let epoll = try EpollEventLoop(name: "pool-check")
        defer { epoll.shutdown() }
        for loop in [group.next(), epoll as any EventLoop] {
            XCTAssertTrue(try loop.submit { BlockingPool.isEventLoopThread }.wait(), "\(type(of: loop)) not recognised")
            let onLoop = loop.makePromise(of: Bool.self)
            loop.execute {
                SocketAddress.resolveOffLoop(host: "peer.example", port: 7000, on: loop, resolve: { _, _ in
                    XCTAssertFalse(BlockingPool.isEventLoopThread, "the lookup ran on an event loop thread")
                    return [try SocketAddress(ipAddress: "192.0.2.1", port: 7000)]
                }) { result in onLoop.succeed((try? result.get()) != nil && loop.inEventLoop) }
            }
            XCTAssertTrue(try onLoop.futureResult.wait())
        }
        XCTAssertFalse(BlockingPool.isEventLoopThread, "the test thread is no event loop")
    }
}

/// A counter shared between a loop's timer and the test thread.
private final class TickCounter: @unchecked Sendable {
    // @unchecked Sendable: `count` is guarded by `lock`.
    private let lock = NIOLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
