#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with one condition variable (pthread_mutex_lock(3), pthread_cond_wait(3)),
/// for the few places in SkywireSystem that wait for a state change (the blocking pool).
final class MutexCondition: @unchecked Sendable {
    // @unchecked Sendable: the pthread objects are heap-allocated once, never moved, and used
    // only through the pthread calls, which are thread-safe by definition.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` holding the mutex.
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal; the caller holds the mutex (inside `withLock`). Wakes may be spurious:
    /// callers re-check their condition in a loop.
    func waitLocked() {
        pthread_cond_wait(condition, mutex)
    }

    /// Wakes one waiter.
    func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    func broadcast() { pthread_cond_broadcast(condition) }
}
