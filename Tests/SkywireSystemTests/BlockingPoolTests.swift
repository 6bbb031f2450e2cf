import Dispatch
import XCTest
@testable import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

final class BlockingPoolTests: XCTestCase {
    /// Threads of this process whose name (/proc/self/task/TID/comm) is `name`.
    private func threads(named name: String) -> Int {
        guard let dir = opendir("/proc/self/task") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard tid.first?.isNumber == true, let comm = try? FileIO.read("/proc/self/task/\(tid)/comm") else { continue }
            if String(decoding: comm, as: UTF8.self).trimmingASCIIWhitespace == name { n += 1 }
        }
        return n
    }

    /// Jobs beyond the bound wait: never more than `threads` run at once, every job runs.
    func testAtMostThreadCountJobsRunAtOnce() {
        let pool = BlockingPool(name: "bp-bound", threads: 3)
        defer { pool.shutdown() }
        let jobs = 20
        let state = Counters()
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<jobs {
            pool.submit({
                state.enter()
                usleep(20_000)
                state.leave()
            }) { _ in done.signal() }
        }
        for _ in 0..<jobs { XCTAssertEqual(done.wait(timeout: .now() + 30), .success) }
        XCTAssertEqual(state.finished, jobs)
        XCTAssertLessThanOrEqual(state.maxRunning, 3)
        XCTAssertGreaterThan(state.maxRunning, 1, "jobs ran in parallel")
        XCTAssertLessThanOrEqual(pool.startedThreads, 3)
        XCTAssertLessThanOrEqual(threads(named: "bp-bound"), 3)
    }

    /// An idle pool starts no thread.
    func testNoThreadUntilWorkArrives() {
        let pool = BlockingPool(name: "bp-idle", threads: 4)
        defer { pool.shutdown() }
        XCTAssertEqual(pool.startedThreads, 0)
        XCTAssertEqual(threads(named: "bp-idle"), 0)
    }

    /// `run` resumes the async caller with each result; which job starts first is not assumed.
    func testRunReturnsEveryResultToTheAsyncCaller() async throws {
        let pool = BlockingPool(name: "bp-run", threads: 2)
        defer { pool.shutdown() }
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<10 { group.addTask { try await pool.run { usleep(5_000); return i * i } } }
            var all: Set<Int> = []
            for try await r in group { all.insert(r) }
            return all
        }
        XCTAssertEqual(results, Set((0..<10).map { $0 * $0 }))
        struct Boom: Error {}
        do {
            _ = try await pool.run { () throws -> Int in throw Boom() }
            XCTFail("the body's error was lost")
        } catch is Boom {}
    }

    /// shutdown() fails the queued work that has not started, lets the running job finish and
    /// joins every thread (none left in /proc/self/task).
    func testShutdownFailsQueuedWorkAndJoinsItsThreads() {
        let pool = BlockingPool(name: "bp-stop", threads: 1)
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let firstDone = DispatchSemaphore(value: 0), queuedDone = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        pool.submit({ started.signal(); release.wait(); return 1 }) { r in outcome.first = r; firstDone.signal() }
        XCTAssertEqual(started.wait(timeout: .now() + 10), .success)
        pool.submit({ 2 }) { r in outcome.queued = r; queuedDone.signal() }
        XCTAssertEqual(threads(named: "bp-stop"), 1)

        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { pool.shutdown(); stopped.signal() }
        XCTAssertEqual(queuedDone.wait(timeout: .now() + 10), .success, "the queued job is failed at once")
        XCTAssertEqual(stopped.wait(timeout: .now() + 0.2), .timedOut, "shutdown waits for the running job")
        release.signal()
        XCTAssertEqual(stopped.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(firstDone.wait(timeout: .now() + 1), .success)
        XCTAssertEqual(try outcome.first?.get(), 1, "the running job finished")
        guard case .failure(let e as BlockingPoolError)? = outcome.queued else { return XCTFail("queued job: \(String(describing: outcome.queued))") }
        XCTAssertEqual(e, .shutDown(pool: "bp-stop"))
        XCTAssertEqual(pool.startedThreads, 0)
        XCTAssertEqual(threads(named: "bp-stop"), 0, "the pool's thread was joined")
        pool.shutdown()   // idempotent
    }

    /// Work submitted after shutdown fails cleanly in every form; `runOrInline` still runs it.
    func testWorkAfterShutdownFailsCleanly() async {
        let pool = BlockingPool(name: "bp-after", threads: 2)
        pool.shutdown()
        do {
            _ = try await pool.run { 1 }
            XCTFail("ran on a shut-down pool")
        } catch {
            XCTAssertEqual(error as? BlockingPoolError, .shutDown(pool: "bp-after"))
        }
        XCTAssertThrowsError(try pool.execute {}) { XCTAssertEqual($0 as? BlockingPoolError, .shutDown(pool: "bp-after")) }
        let answered = Outcome()
        pool.submit({ 3 }) { answered.queued = $0 }
        guard case .failure? = answered.queued else { return XCTFail("submit after shutdown did not fail at once") }
        let inline = await pool.runOrInline { 7 }
        XCTAssertEqual(inline, 7)
        XCTAssertEqual(pool.startedThreads, 0)
    }

    /// The debug check knows a marked event-loop thread from any other.
    func testEventLoopThreadMark() throws {
        XCTAssertFalse(BlockingPool.isEventLoopThread)
        let seen = Outcome()
        let thread = try SystemThread(name: "marked") {
            BlockingPool.markEventLoopThread()
            seen.first = .success(BlockingPool.isEventLoopThread ? 1 : 0)
        }
        thread.join()
        XCTAssertEqual(try seen.first?.get(), 1)
        XCTAssertFalse(BlockingPool.isEventLoopThread, "the mark is per thread")
    }
}

/// Running and finished jobs, with the most that ran at once.
private final class Counters: @unchecked Sendable {
    // @unchecked Sendable: every field is guarded by `lock`.
    private let lock = MutexCondition()
    private var running = 0
    private(set) var maxRunning = 0
    private(set) var finished = 0
    func enter() { lock.withLock { running += 1; maxRunning = max(maxRunning, running) } }
    func leave() { lock.withLock { running -= 1; finished += 1 } }
}

/// Results handed from pool threads to the test (read after a semaphore says they are set).
private final class Outcome: @unchecked Sendable {
    // @unchecked Sendable: written before a semaphore signal (or synchronously), read after the wait.
    var first: Result<Int, Error>?
    var queued: Result<Int, Error>?
}
