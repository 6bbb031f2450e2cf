#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with one condition variable (pthread_mutex_lock(3), pthread_cond_wait(3)),
/// for the few places that wait for a state change (the blocking pool; a VPN thread waiting for
/// room in an stcpr link's datagram queue). The condition times out on CLOCK_MONOTONIC.
public final class MutexCondition: @unchecked Sendable {
    // @unchecked Sendable: the pthread objects are heap-allocated once, never moved, and used
    // only through the pthread calls, which are thread-safe by definition.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` holding the mutex.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal; the caller holds the mutex (inside `withLock`). Wakes may be spurious:
    /// callers re-check their condition in a loop.
    public func waitLocked() {
        pthread_cond_wait(condition, mutex)
    }

    /// `waitLocked` until `deadline` at the latest (`now` plus a delay; pthread_cond_timedwait(3)).
    /// Returns false once the deadline has passed.
    public func waitLocked(until deadline: UInt64) -> Bool {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }

    /// CLOCK_MONOTONIC in nanoseconds (clock_gettime(3)), the clock of `waitLocked(until:)`.
    public static var now: UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Wakes one waiter.
    public func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    public func broadcast() { pthread_cond_broadcast(condition) }
}
