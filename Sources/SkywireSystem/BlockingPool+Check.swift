#if canImport(Glibc)
import Glibc
#endif

/// The debug-build check that blocking calls stay off event-loop threads: each blocking entry
/// point (getaddrinfo, the subprocess runner, thread joins, the discovery HTTP client) calls
/// `assertMayBlock`, which traps in a debug build when the calling thread is an event loop's.
/// Release builds skip it (`assert`), so it costs nothing there.
extension BlockingPool {
    /// Traps (debug builds only) when the current thread is an event loop's: `call` blocks and
    /// belongs on `BlockingPool.shared`.
    public static func assertMayBlock(_ call: @autoclosure () -> String) {
        assert(!isEventLoopThread, "\(call()) blocks: it must not run on an event loop thread (use BlockingPool.shared)")
    }

    /// Marks the calling thread as an event loop's (EpollEventLoop marks its thread when it starts).
    public static func markEventLoopThread() {
        pthread_setspecific(eventLoopKey, UnsafeRawPointer(bitPattern: 1))
    }

    /// Adds a test for "the current thread is an event loop's" for loops this module does not
    /// know (SkywireTransport adds SwiftNIO's `MultiThreadedEventLoopGroup.currentEventLoop`).
    /// Adding the same `id` again does nothing.
    public static func addEventLoopProbe(id: String, _ probe: @escaping @Sendable () -> Bool) {
        probes.withLock {
            if !probes.entries.contains(where: { $0.id == id }) { probes.entries.append(Probe(id: id, test: probe)) }
        }
    }

    /// Whether the current thread is marked, or recognised by a probe, as an event loop's.
    public static var isEventLoopThread: Bool {
        if pthread_getspecific(eventLoopKey) != nil { return true }
        return probes.withLock { probes.entries.contains { $0.test() } }
    }

    /// The thread-specific slot `markEventLoopThread` sets (pthread_key_create(3); created once).
    private static let eventLoopKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private static let probes = ProbeList()

    /// One registered test (a struct, not a tuple holding a closure: swiftc 6.2.3's SILGen).
    private struct Probe {
        let id: String
        let test: @Sendable () -> Bool
    }

    private final class ProbeList: @unchecked Sendable {
        // @unchecked Sendable: `entries` is read and written only inside `withLock`.
        private let lock = MutexCondition()
        var entries: [Probe] = []
        func withLock<T>(_ body: () throws -> T) rethrows -> T { try lock.withLock(body) }
    }
}
