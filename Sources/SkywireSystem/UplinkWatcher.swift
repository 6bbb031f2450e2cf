import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One stream of uplink changes for the visor: a `NetworkMonitor` read on its own thread (the
/// socket is polled with a bounded timeout, so `stop` takes effect within `pollIntervalMs`), its
/// events folded into an `UplinkState` (a dump first), bursts debounced (`debounceMs` of quiet,
/// at most `maxDebounceMs` after the first event), the state read again by a dump once a burst
/// settles (the kernel does not report every route it drops), then one `UplinkChange` per
/// settled change handed to `handler` on that thread. The handler must not
/// block for long: it hands the work to the visor (tasks, the blocking pool).
public final class UplinkWatcher: Sendable {
    /// Quiet time that ends a burst (a DHCP renewal or an interface coming up sends several
    /// messages within a few ms).
    public static let debounceMs: Int64 = 150
    /// A burst that never goes quiet is reported after this anyway.
    public static let maxDebounceMs: Int64 = 1000
    /// How often the thread checks `stop` while nothing happens.
    public static let pollIntervalMs: Int32 = 250

    private let control = Control()
    private let thread = Mutex<SystemThread?>(nil)

    /// The uplink as first read (the dump before the thread started).
    public let initial: UplinkState.Uplink

    /// Opens the monitor, reads the current state and starts the thread. Throws when netlink
    /// cannot be opened (the visor then runs without following changes).
    public init(handler: @escaping @Sendable (UplinkChange) -> Void) throws {
        // Subscribe first, then dump: a change between the two is not lost (it is read twice).
        let monitor = try NetworkMonitor()
        var state = UplinkState()
        state.apply(try NetworkMonitor(groups: 0).dump())
        initial = state.uplink
        let box = StateBox(state)
        let t = try SystemThread(name: "skw-uplink") { [control] in
            Self.run(monitor: monitor, state: box, control: control, handler: handler)
        }
        thread.withLock { $0 = t }
    }

    /// Ends the thread (within `pollIntervalMs`) and waits for it; blocks: call off the event
    /// loops and the cooperative pool.
    public func stop() {
        control.stopped.store(true, ordering: .relaxed)
        let t = thread.withLock { t -> SystemThread? in defer { t = nil }; return t }
        t?.join()
    }

    /// The stop flag, shared with the thread.
    private final class Control: Sendable {
        let stopped = Atomic<Bool>(false)
    }

    /// Passes the state into the thread (used only there after init).
    private final class StateBox: @unchecked Sendable {
        // @unchecked Sendable: confined to the watcher thread once it starts.
        var state: UplinkState
        init(_ state: UplinkState) { self.state = state }
    }

    private static func run(monitor: NetworkMonitor, state box: StateBox, control: Control,
                            handler: @Sendable (UplinkChange) -> Void) {
        var tracker = UplinkTracker(box.state.uplink)
        var firstPending: Int64?
        var lastEvent: Int64 = 0
        while !control.stopped.load(ordering: .relaxed) {
            let now = monotonicMs()
            var timeout = pollIntervalMs
            if let first = firstPending {
                let due = min(lastEvent + debounceMs, first + maxDebounceMs)
                if now >= due {
                    firstPending = nil
                    // Events only say that something changed: the kernel does not report every
                    // route it drops (a link taken down flushes them silently) nor the route a
                    // `route replace` displaced. What is reported comes from a fresh dump.
                    if let dump = try? NetworkMonitor(groups: 0).dump() {
                        var fresh = UplinkState()
                        fresh.apply(dump)
                        box.state = fresh
                    }
                    if let change = tracker.settle(box.state.uplink) { handler(change) }
                    continue
                }
                timeout = Int32(clamping: max(1, due - now))
            }
            let readable: Bool
            do { readable = try monitor.wait(timeoutMs: timeout) } catch {
                // poll(2) failing is not expected; do not spin on it.
                usleep(UInt32(pollIntervalMs) * 1000)
                continue
            }
            guard readable else { continue }
            // Drain what is queued (bounded per wake so that `stop` is still checked).
            reading: for _ in 0..<maxReadsPerWake {
                guard let received = try? monitor.receive() else { break }
                switch received {
                case .wouldBlock:
                    break reading
                case .events(let events):
                    if box.state.apply(events) || firstPending != nil {
                        lastEvent = monotonicMs()
                        if firstPending == nil { firstPending = lastEvent }
                    }
                case .overrun:
                    // Events were lost: the dump when the burst settles reads everything again.
                    lastEvent = monotonicMs()
                    if firstPending == nil { firstPending = lastEvent }
                }
            }
        }
    }

    /// Datagrams read per wake before `stop` is checked again.
    static let maxReadsPerWake = 64

    /// CLOCK_MONOTONIC in milliseconds.
    static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
