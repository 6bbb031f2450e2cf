#if canImport(Glibc)
import Glibc
#endif
import CSkywireShim
import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem

/// A SwiftNIO `EventLoop` on its own thread with its own epoll(7) instance, for datapaths that
/// service raw descriptors themselves (no NIO channels) and still use futures, promises and
/// scheduled tasks. Descriptors are watched with `watch(_:interest:_:)`; their handlers, tasks and
/// scheduled tasks all run on the loop thread.
public final class EpollEventLoop: EventLoop, @unchecked Sendable {
    // @unchecked Sendable: `lock` guards `pending`, `isStopping` and `shutdownCallbacks`; every other
    // stored property is touched only on the loop thread (or before it starts / after it is joined).

    /// What a watched descriptor is waited for (EPOLLIN / EPOLLOUT).
    public struct Interest: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let read = Interest(rawValue: UInt32(skw_epollin))
        public static let write = Interest(rawValue: UInt32(skw_epollout))
    }

    /// What epoll reported for a watched descriptor.
    public struct Readiness: Sendable {
        public let events: UInt32
        public var readable: Bool { events & UInt32(skw_epollin) != 0 }
        public var writable: Bool { events & UInt32(skw_epollout) != 0 }
        /// EPOLLHUP / EPOLLERR / EPOLLRDHUP: read to learn EOF or the error.
        public var hangup: Bool {
            events & UInt32(skw_epollhup | skw_epollerr | skw_epollrdhup) != 0
        }
    }

    private struct Watch {
        var generation: UInt32
        var interest: Interest
        var handler: (Readiness) -> Void
    }

    private struct ScheduledEntry {
        let deadline: UInt64
        let id: UInt64
        /// Runs the task (nil) or fails it with the error (cancelled, loop shut down).
        let complete: ((any Error)?) -> Void
    }

    /// Boxed once: failing a cancelled or shut-down task allocates nothing.
    private static let cancelledError: any Error = EventLoopError.cancelled
    private static let shutdownError: any Error = EventLoopError.shutdown

    private let epoll: OwnedDescriptor
    private let waker: OwnedDescriptor
    private let timer: OwnedDescriptor
    private let lock = NIOLock()
    private var pending: [() -> Void] = []
    private var isStopping = false
    private var shutdownCallbacks: [(Error?) -> Void] = []
    private var thread: SystemThread?
    private var threadID = pthread_t()

    // Loop thread only.
    private var watches: [Int32: Watch] = [:]
    private var nextGeneration: UInt32 = 1
    private var scheduled: [ScheduledEntry] = []  // sorted by (deadline, id)
    private var nextScheduledID: UInt64 = 0
    private var armedDeadline: UInt64 = 0
    private var runQueue: [() -> Void] = []
    /// One read buffer for the loop's stream sockets (`RawStreamSocket`): a read that nobody keeps
    /// allocates nothing. Loop thread only.
    public var readScratch = ByteBuffer()
    /// The batch being run, swapped with `runQueue` (and `pending`) so no round allocates.
    private var running: [() -> Void] = []

    /// Reserved epoll user data for the loop's own descriptors.
    private static let wakerToken: UInt64 = UInt64(UInt32.max)
    private static let timerToken: UInt64 = UInt64(UInt32.max) - 1

    /// Starts the loop thread; `name` appears in errors.
    public init(name: String) throws {
        epoll = OwnedDescriptor(taking: try syscall("epoll_create1") { skw_epoll_create() })
        waker = OwnedDescriptor(taking: try syscall("eventfd") { skw_eventfd() })
        timer = OwnedDescriptor(taking: try syscall("timerfd_create") { skw_timerfd_create() })
        let readable = UInt32(skw_epollin)
        try syscall("epoll_ctl(ADD eventfd)") {
            skw_epoll_ctl(epoll.raw, Int32(skw_epoll_ctl_add), waker.raw, readable, Self.wakerToken)
        }
        try syscall("epoll_ctl(ADD timerfd)") {
            skw_epoll_ctl(epoll.raw, Int32(skw_epoll_ctl_add), timer.raw, readable, Self.timerToken)
        }
        let started = ConditionLock(value: false)
        thread = try SystemThread(name: name) { [self] in
            threadID = pthread_self()
            BlockingPool.markEventLoopThread()
            started.lock(); started.unlock(withValue: true)
            run()
        }
        started.lock(whenValue: true); started.unlock()
    }

    deinit {
        epoll.close(); waker.close(); timer.close()
    }

    // MARK: - EventLoop

    public var inEventLoop: Bool { pthread_equal(pthread_self(), threadID) != 0 }

    public func execute(_ task: @escaping @Sendable () -> Void) {
        if inEventLoop {
            runQueue.append(task)
            return
        }
        let wake = lock.withLock { () -> Bool in
            pending.append(task)
            return pending.count == 1
        }
        if wake { wakeUp() }
    }

    public func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise: EventLoopPromise<T> = makePromise()
        let id = SchedulingID()
        // On the loop (timers set and cancelled per request), both take effect at once, without a
        // queued task each.
        let scheduled = Scheduled(promise: promise, cancellationTask: { [self] in
            if inEventLoop {
                cancelScheduled(id)
            } else {
                execute { self.cancelScheduled(id) }
            }
        })
        if inEventLoop {
            insertScheduled(id, deadline, promise, task)
        } else {
            execute { self.insertScheduled(id, deadline, promise, task) }
        }
        return scheduled
    }

    public func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + delay, task)
    }

    /// Runs `fire` on the loop at `deadline` unless `cancelTimer` comes first: `scheduleTask` for
    /// loop code that sets and cancels a timer per connection, without the promise, future,
    /// `Scheduled` and cancellation closure each `scheduleTask` allocates (one closure here).
    /// Loop thread only; a loop that shuts down drops its timers unfired.
    public func setTimer(deadline: NIODeadline, _ fire: @escaping () -> Void) -> LoopTimer {
        preconditionInEventLoop()
        nextScheduledID += 1
        insert(ScheduledEntry(deadline: deadline.uptimeNanoseconds, id: nextScheduledID) { error in
            if error == nil { fire() }
        })
        return LoopTimer(id: nextScheduledID)
    }

    public func setTimer(in delay: TimeAmount, _ fire: @escaping () -> Void) -> LoopTimer {
        setTimer(deadline: .now() + delay, fire)
    }

    /// Forgets a timer set with `setTimer` that has not fired (a fired or cancelled one is ignored).
    /// Loop thread only.
    public func cancelTimer(_ timer: LoopTimer) {
        preconditionInEventLoop()
        _ = removeScheduled(id: timer.id)
    }

    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        shutdown { error in queue.async { callback(error) } }
    }

    /// Stops the loop: scheduled tasks fail with `EventLoopError.shutdown`, tasks already queued
    /// still run, then the thread ends. `callback` runs once the thread is joined (called on the
    /// loop itself: when the thread leaves its loop; tasks executed after that are dropped).
    public func shutdown(_ callback: @escaping @Sendable (Error?) -> Void = { _ in }) {
        let first = lock.withLock { () -> Bool in
            defer { isStopping = true }
            return !isStopping
        }
        guard first else { callback(EventLoopError.shutdown); return }
        wakeUp()
        if inEventLoop {
            // Joined by whoever releases the loop; the callback runs when the thread leaves `run`.
            lock.withLock { shutdownCallbacks.append(callback) }
        } else {
            thread?.join()
            callback(nil)
        }
    }

    // MARK: - Descriptors

    /// Watches `fd` for `interest`; `handler` runs on the loop for each readiness report until
    /// `unwatch`. Loop thread only; the caller keeps owning (and eventually closes) `fd`.
    public func watch(_ fd: Int32, interest: Interest, _ handler: @escaping (Readiness) -> Void) throws {
        precondition(inEventLoop, "EpollEventLoop.watch off the loop thread")
        let generation = nextGeneration
        nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1  // tokens stay above 2^32
        try syscall("epoll_ctl(ADD)") {
            skw_epoll_ctl(epoll.raw, Int32(skw_epoll_ctl_add), fd, interest.rawValue, token(fd, generation))
        }
        watches[fd] = Watch(generation: generation, interest: interest, handler: handler)
    }

    /// Changes what a watched `fd` is waited for (no system call when it is unchanged). Loop thread only.
    public func setInterest(_ fd: Int32, _ interest: Interest) throws {
        precondition(inEventLoop, "EpollEventLoop.setInterest off the loop thread")
        guard let watch = watches[fd], watch.interest != interest else { return }
        try syscall("epoll_ctl(MOD)") {
            skw_epoll_ctl(epoll.raw, Int32(skw_epoll_ctl_mod), fd, interest.rawValue, token(fd, watch.generation))
        }
        watches[fd]?.interest = interest
    }

    /// Stops watching `fd` (before the caller closes it); reports already fetched for it are dropped.
    public func unwatch(_ fd: Int32) {
        precondition(inEventLoop, "EpollEventLoop.unwatch off the loop thread")
        guard watches.removeValue(forKey: fd) != nil else { return }
        _ = skw_epoll_ctl(epoll.raw, Int32(skw_epoll_ctl_del), fd, 0, 0)
    }

    private func token(_ fd: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: - Loop

    private func wakeUp() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(waker.raw, $0.baseAddress, $0.count) }
    }

    private func drain(_ fd: Int32) {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, $0.count) }
    }

    private func run() {
        var events = [UInt32](repeating: 0, count: 64)
        var data = [UInt64](repeating: 0, count: 64)
        while true {
            runTasks()
            runDueScheduled()
            let (stopping, nothingPending) = lock.withLock { (isStopping, pending.isEmpty) }
            if stopping && runQueue.isEmpty && nothingPending { break }
            armTimer()
            let timeout: Int32 = runQueue.isEmpty && !stopping ? -1 : 0
            let n = events.withUnsafeMutableBufferPointer { ev in
                data.withUnsafeMutableBufferPointer { d in
                    skw_epoll_wait(epoll.raw, ev.baseAddress, d.baseAddress, Int32(ev.count), timeout)
                }
            }
            guard n > 0 else { continue }  // 0: timeout; -1: EINTR (nothing else is expected here)
            for i in 0..<Int(n) {
                switch data[i] {
                case Self.wakerToken: drain(waker.raw)
                case Self.timerToken: drain(timer.raw); armedDeadline = 0
                default:
                    let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data[i]))
                    let generation = UInt32(truncatingIfNeeded: data[i] >> 32)
                    // A handler earlier in this batch may have unwatched (and closed) the descriptor.
                    guard let watch = watches[fd], watch.generation == generation else { continue }
                    watch.handler(Readiness(events: events[i]))
                }
            }
        }
        for entry in scheduled { entry.complete(Self.shutdownError) }
        scheduled.removeAll()
        let callbacks = lock.withLock { () -> [(Error?) -> Void] in
            defer { shutdownCallbacks.removeAll() }
            return shutdownCallbacks
        }
        for callback in callbacks { callback(nil) }
    }

    private func runTasks() {
        // Remote tasks after the local ones; tasks queued by these run in the next round, after
        // the descriptors were polled.
        lock.withLock { swap(&pending, &running) }
        runQueue.append(contentsOf: running)
        running.removeAll(keepingCapacity: true)
        swap(&runQueue, &running)
        for task in running { task() }
        running.removeAll(keepingCapacity: true)
    }

    private func runDueScheduled() {
        guard !scheduled.isEmpty else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        var due = 0
        while due < scheduled.count && scheduled[due].deadline <= now { due += 1 }
        guard due > 0 else { return }
        let batch = scheduled[..<due]
        scheduled.removeFirst(due)
        for entry in batch { entry.complete(nil) }
    }

    /// Arms the timerfd for the first scheduled deadline, but only when that is earlier than the
    /// one armed: a later deadline (tasks scheduled and cancelled per request) is armed when the
    /// armed one fires, so most schedule/cancel pairs cost no timerfd_settime. A fire with nothing
    /// due is harmless.
    private func armTimer() {
        guard let next = scheduled.first?.deadline else { return }
        guard armedDeadline == 0 || next < armedDeadline else { return }
        armedDeadline = max(next, 1)
        // A deadline already passed fires at once, which is what is wanted.
        _ = skw_timerfd_set_absolute(timer.raw, armedDeadline)
    }

    private func insertScheduled<T>(_ id: SchedulingID, _ deadline: NIODeadline, _ promise: EventLoopPromise<T>,
                                    _ task: @escaping @Sendable () throws -> T) {
        // Cancelled before it was queued (a cancel from the loop can overtake a remote schedule).
        if id.cancelled { promise.fail(Self.cancelledError); return }
        nextScheduledID += 1
        id.value = nextScheduledID
        insert(ScheduledEntry(deadline: deadline.uptimeNanoseconds, id: nextScheduledID) { error in
            if let error {
                promise.fail(error)
                return
            }
            do { promise.assumeIsolated().succeed(try task()) } catch { promise.fail(error) }
        })
    }

    /// Puts `entry` in `scheduled`, which stays sorted by (deadline, id).
    private func insert(_ entry: ScheduledEntry) {
        var low = 0, high = scheduled.count
        while low < high {
            let mid = (low + high) / 2
            let m = scheduled[mid]
            if (m.deadline, m.id) < (entry.deadline, entry.id) { low = mid + 1 } else { high = mid }
        }
        scheduled.insert(entry, at: low)
    }

    private func cancelScheduled(_ id: SchedulingID) {
        id.cancelled = true
        removeScheduled(id: id.value)?.complete(Self.cancelledError)
    }

    /// Takes the entry with `id` out of `scheduled` (nil once it ran or was cancelled).
    private func removeScheduled(id: UInt64) -> ScheduledEntry? {
        guard let index = scheduled.firstIndex(where: { $0.id == id }) else { return nil }
        return scheduled.remove(at: index)
    }
}

/// A timer set with `EpollEventLoop.setTimer`, for `cancelTimer`.
public struct LoopTimer: Sendable {
    fileprivate let id: UInt64
}

/// The id a scheduled task gets on the loop, for its cancellation (set and read on the loop).
private final class SchedulingID: @unchecked Sendable {
    // @unchecked Sendable: written and read only on the owning loop's thread.
    var value: UInt64 = 0
    var cancelled = false
}
