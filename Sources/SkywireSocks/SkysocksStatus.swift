import NIOConcurrencyHelpers
import NIOCore

/// A point-in-time view of a skysocks app's activity.
public struct SkysocksStatus: Sendable, Equatable {
    /// Sessions (server) or proxied TCP connections (client) currently open.
    public var activeSessions = 0
    /// Sessions accepted since start.
    public var totalSessions = 0
    /// Sessions refused (whitelist, limits) or failed before piping (handshake, connect).
    public var failedSessions = 0
    /// Bytes from the SOCKS client application towards the destination.
    public var bytesUp: UInt64 = 0
    /// Bytes from the destination towards the SOCKS client application.
    public var bytesDown: UInt64 = 0
    /// UDP datagrams relayed (both directions) and dropped (not writable, malformed, FRAG ≠ 0).
    public var datagramsRelayed: UInt64 = 0
    public var datagramsDropped: UInt64 = 0
    /// Server: CONNECT requests refused by `--secure` (reply 0x02; also counted in `failedSessions`).
    public var refusedDestinations: UInt64 = 0
    /// Server: UDP datagrams not sent because `--secure` refused their destination.
    public var datagramsRefused: UInt64 = 0
    /// Largest number of bytes queued towards a stream while it was not writable (back-pressure check).
    public var peakBytesWrittenWhileUnwritable = 0

    public init() {}
}

/// Shared counters behind `SkysocksStatus`, updated from every event loop (guarded by `box`'s lock).
final class SkysocksCounters: Sendable {
    private let box = NIOLockedValueBox(SkysocksStatus())

    var snapshot: SkysocksStatus { box.withLockedValue { $0 } }

    func update(_ body: (inout SkysocksStatus) -> Void) { box.withLockedValue { body(&$0) } }

    func addBytes(up: Int, down: Int) {
        box.withLockedValue {
            $0.bytesUp &+= UInt64(up)
            $0.bytesDown &+= UInt64(down)
        }
    }

    func notePeakUnwritable(_ bytes: Int) {
        box.withLockedValue { $0.peakBytesWrittenWhileUnwritable = max($0.peakBytesWrittenWhileUnwritable, bytes) }
    }
}

/// Open sessions of one app, so `stop()` can abort them on their own event loops (guarded by `box`'s lock).
final class SkysocksSessionRegistry: Sendable {
    private struct State {
        var nextID = 0
        var aborts: [Int: @Sendable () -> Void] = [:]
        var closed = false
    }
    private let box = NIOLockedValueBox(State())

    /// Registers a session; returns nil when the registry is closed or `limit` sessions are open.
    func register(limit: Int) -> Int? {
        box.withLockedValue { state in
            guard !state.closed, state.aborts.count < limit else { return nil }
            state.nextID += 1
            state.aborts[state.nextID] = {}
            return state.nextID
        }
    }

    /// Sets how to abort session `id` (called once the session object exists).
    func setAbort(_ id: Int, _ abort: @escaping @Sendable () -> Void) {
        let runNow: Bool = box.withLockedValue { state in
            guard state.aborts[id] != nil else { return false }
            if state.closed { return true }
            state.aborts[id] = abort
            return false
        }
        if runNow { abort() }
    }

    func unregister(_ id: Int) {
        _ = box.withLockedValue { $0.aborts.removeValue(forKey: id) }
    }

    var count: Int { box.withLockedValue { $0.aborts.count } }

    /// Closes the registry and aborts every open session.
    func closeAll() {
        let aborts = box.withLockedValue { state -> [@Sendable () -> Void] in
            state.closed = true
            return Array(state.aborts.values)
        }
        for abort in aborts { abort() }
    }

    func reopen() { box.withLockedValue { $0.closed = false } }
}
