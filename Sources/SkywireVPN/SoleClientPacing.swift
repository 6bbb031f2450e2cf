/// Whether the exit's TUN thread may wait for room in a client's full stcpr queue
/// (`DatagramBatch.waitsForRoom`, docs/vpn.md §9) instead of dropping what does not fit. The
/// thread reads one TUN for every client, so waiting for one client's link holds up the packets
/// of every other client queued behind in the TUN (head-of-line blocking); while one client alone
/// gets packets there are none, and waiting paces its inner flows by the link, as the VPN client's
/// thread is paced, instead of tail-dropping whole batches (over stcpr the inner TCP of a
/// download retransmitted ~6 % of its segments). A second client seen within `window` of the
/// other's last packet ends the waiting at once, until `window` passes without that. A client
/// that becomes active behind a sole client's full link waits at most one
/// `StcprDatagramQueue.defaultFullWait`, and a link that stays full that long drops again
/// (`congested`). Not thread-safe: the TUN thread's.
struct SoleClientPacing {
    /// How long after two clients last got packets close together the thread stays in drop mode.
    static let window: UInt64 = 250_000_000
    /// The client that got the last packet, and when (CLOCK_MONOTONIC ns).
    private var current: UInt32?
    private var currentSeen: UInt64 = 0
    /// No waiting before this time: two clients were active.
    private var sharedUntil: UInt64 = 0

    /// Notes a packet for client `key` at `now` (CLOCK_MONOTONIC ns, e.g. once per TUN read
    /// round); returns whether the thread may wait for room.
    mutating func note(_ key: UInt32, now: UInt64) -> Bool {
        if key != current {
            if current != nil && now &- currentSeen < Self.window { sharedUntil = now &+ Self.window }
            current = key
        }
        currentSeen = now
        return now >= sharedUntil
    }
}
