import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// The process's one pool of threads for blocking work: getaddrinfo(3), the discovery HTTP
/// client, `nft`/`resolvectl`/dnsmasq subprocesses and their waitpid(2), netlink route changes
/// and thread joins (docs/architecture.md, "Where blocking work runs"). Event loops and the Swift
/// cooperative pool hand such work here and are resumed when it is done; they never block.
///
/// At most `threadCount` threads, started on demand (an idle visor starts none) and kept until
/// `shutdown()`. Work beyond that waits in a queue; each job is bounded by its own timeout
/// (resolver, socket, `nft`), so the queue drains. Jobs start in no promised order.
public final class BlockingPool: @unchecked Sendable {
    // @unchecked Sendable: every stored var below is read and written only under `lock`.

    /// The threads of `shared`: enough for a DNS outage (a few getaddrinfo calls waiting for the
    /// resolver's timeout) not to hold back an `nft` run, few enough to cost nothing at idle.
    public static let defaultThreadCount = 4
    /// The pool the visor uses. It lives as long as the process (never shut down).
    public static let shared = BlockingPool(name: "skw-blocking", threads: defaultThreadCount)

    /// Work that starts on a pool thread: `run` there, or `refuse` (on the caller) when the pool
    /// is shut down or cannot start a thread.
    private struct Job {
        let run: @Sendable () -> Void
        let refuse: @Sendable (BlockingPoolError) -> Void
    }

    /// How many queued jobs already taken may stay in the array before it is compacted.
    private static let compactThreshold = 64

    public let name: String
    public let threadCount: Int
    private let lock = MutexCondition()
    private var queue: [Job] = []
    private var head = 0
    private var workers: [SystemThread] = []
    private var workerIDs: [pthread_t] = []
    private var idle = 0
    private var stopping = false

    /// A pool of at most `threads` (≥ 1) threads; `name` (15 bytes at most show) names them in
    /// `ps -L` and errors.
    public init(name: String, threads: Int) {
        self.name = name
        self.threadCount = max(1, threads)
    }

    /// Threads started so far (they stay until `shutdown()`).
    public var startedThreads: Int { lock.withLock { workers.count } }

    /// Runs `body` on a pool thread and resumes the caller with its result, without blocking a
    /// cooperative thread meanwhile. Throws `BlockingPoolError` when the pool is shut down.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            submit(body) { continuation.resume(with: $0) }
        }
    }

    /// For work that must happen even when the pool refuses it (undoing system changes on
    /// stop): `run`, or `body` on the caller's thread when the pool is shut down or has no thread.
    public func runOrInline<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        do { return try await run(body) } catch { return body() }
    }

    /// Runs `body` on a pool thread, then `completion` with its result on that thread (event-loop
    /// callers hop back with `loop.execute`). When the pool refuses the work, `completion` gets
    /// the `BlockingPoolError` at once, on the caller's thread.
    public func submit<T>(_ body: @escaping @Sendable () throws -> T,
                          completion: @escaping @Sendable (Result<T, Error>) -> Void) {
        enqueue(Job(run: { completion(Result { try body() }) }, refuse: { completion(.failure($0)) }))
    }

    /// Runs `work` on a pool thread; throws when the pool refuses it.
    public func execute(_ work: @escaping @Sendable () -> Void) throws(BlockingPoolError) {
        let refusal = RefusalBox()
        enqueue(Job(run: work, refuse: { refusal.error = $0 }))
        if let error = refusal.error { throw error }
    }

    /// Refuses new work, fails the queued work that has not started (`BlockingPoolError.shutDown`),
    /// lets running jobs finish and joins every thread. Not from a pool thread (it would join
    /// itself). Idempotent.
    public func shutdown() {
        let (refused, threads): ([Job], [SystemThread]) = lock.withLock {
            precondition(!workerIDs.contains { pthread_equal($0, pthread_self()) != 0 },
                         "BlockingPool(\(name)).shutdown() on one of its own threads")
            stopping = true
            let pending = Array(queue[head...])
            queue = []
            head = 0
            defer { workers = [] }
            lock.broadcast()
            return (pending, workers)
        }
        for job in refused { job.refuse(.shutDown(pool: name)) }
        for thread in threads { thread.join() }
        lock.withLock { workerIDs = [] }
    }

    private func enqueue(_ job: Job) {
        let refusal: BlockingPoolError? = lock.withLock {
            guard !stopping else { return .shutDown(pool: name) }
            queue.append(job)
            // More jobs waiting than idle threads to take them: one more thread, up to the bound.
            if queue.count - head > idle && workers.count < threadCount {
                do {
                    workers.append(try SystemThread(name: name) { [self] in work() })
                } catch {
                    if workers.isEmpty {
                        queue.removeLast()
                        return .noThread(pool: name, reason: "\(error)")
                    }
                }
            }
            lock.signal()
            return nil
        }
        if let refusal { job.refuse(refusal) }
    }

    /// A worker thread: takes jobs until the pool shuts down.
    private func work() {
        lock.withLock { workerIDs.append(pthread_self()) }
        _ = skw_set_thread_name(String(name.utf8.prefix(Self.threadNameBytes)) ?? "blocking")
        while let job = next() { job.run() }
    }

    /// The Linux limit of a thread name (16 bytes with the NUL: pthread_setname_np(3)).
    private static let threadNameBytes = 15

    private func next() -> Job? {
        lock.withLock {
            while head == queue.count && !stopping {
                idle += 1
                lock.waitLocked()
                idle -= 1
            }
            guard head < queue.count else { return nil }
            let job = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            } else if head > Self.compactThreshold && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    /// Carries a refusal out of `enqueue`, which reports it synchronously on the caller's thread.
    private final class RefusalBox: @unchecked Sendable {
        // @unchecked Sendable: written and read on the submitting thread only (refusals run there).
        var error: BlockingPoolError?
    }
}

/// Why a `BlockingPool` did not take work.
public enum BlockingPoolError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The pool was shut down (the process is exiting, or a test pool was stopped).
    case shutDown(pool: String)
    /// The pool has no thread and could not start one (pthread_create failed).
    case noThread(pool: String, reason: String)

    public var description: String {
        switch self {
        case .shutDown(let pool): return "blocking pool \(pool) is shut down"
        case .noThread(let pool, let reason): return "blocking pool \(pool) cannot start a thread: \(reason)"
        }
    }
}
