import SkywireCrypto

/// The sudph responder's handshake bookkeeping, pure (PROTOCOL.md §4.3 "Confirmation"):
///
/// * an initiation whose TAI64N stamp is not newer than the last accepted from its key is refused
///   (a replay);
/// * an accepted initiation becomes a *pending* handshake: the Response is sent, but nothing else
///   exists yet (no peer, no transport, no mux connection), and at most `maxPending` wait at once,
///   one per key (a newer one from the same key replaces the older);
/// * the first authenticated data packet on a pending handshake's index confirms it: it becomes
///   the key's *live* session and replaces the previous live one, which is closed. Until then the
///   live session is untouched, so a replayed or forged initiation never displaces it.
///
/// `Pending` is what the endpoint keeps per pending handshake (keys, the Response); `fingerprint`
/// identifies an Initiation's bytes so that a resent copy is answered with the same Response.
struct SudphResponderTable<Pending> {
    enum Offer: Equatable {
        /// Kept; `replaced` is the index of the key's older pending handshake, now dropped.
        case accepted(replaced: UInt32?)
        /// The stamp is not newer than the last accepted from the key.
        case replay
        /// `maxPending` handshakes are waiting already.
        case full
    }

    struct Confirmed {
        let key: PublicKey
        let pending: Pending
        /// The key's previous live session, to close.
        let replacedLive: UInt32?
    }

    private struct Entry {
        let key: PublicKey
        let fingerprint: [UInt8]
        let payload: Pending
        let expires: Int64
    }

    let maxPending: Int
    /// How long (nanoseconds) a pending handshake waits for its confirmation.
    let pendingLifetime: Int64
    private(set) var timestamps: HandshakeTimestamps<PublicKey>
    private var pending: [UInt32: Entry] = [:]
    private var pendingByKey: [PublicKey: UInt32] = [:]
    private var pendingByFingerprint: [[UInt8]: UInt32] = [:]
    private var live: [PublicKey: UInt32] = [:]

    init(maxPending: Int, pendingLifetime: Int64, timestampCapacity: Int = HandshakeTimestamps<PublicKey>.defaultCapacity) {
        precondition(maxPending > 0, "room for one pending handshake at least")
        self.maxPending = maxPending
        self.pendingLifetime = pendingLifetime
        timestamps = HandshakeTimestamps(capacity: timestampCapacity)
    }

    var pendingCount: Int { pending.count }

    /// Whether another pending handshake fits (after dropping expired ones); checked before the DH.
    mutating func hasRoom(now: Int64) -> Bool {
        if pending.count >= maxPending { expire(now: now) }
        return pending.count < maxPending
    }

    /// The pending handshake answering exactly this Initiation (a resend), if any.
    func pendingIndex(fingerprint: [UInt8]) -> UInt32? { pendingByFingerprint[fingerprint] }

    func pending(at index: UInt32) -> Pending? { pending[index]?.payload }

    func isPending(_ index: UInt32) -> Bool { pending[index] != nil }

    /// The key's live (confirmed) session index.
    func liveIndex(for key: PublicKey) -> UInt32? { live[key] }

    /// An initiation from `key` stamped `timestamp` passed the Noise checks; `index` is the local
    /// index its Response names.
    mutating func offer(key: PublicKey, timestamp: TAI64N, index: UInt32, fingerprint: [UInt8],
                        pending payload: Pending, now: Int64) -> Offer {
        guard timestamps.isFresh(timestamp, from: key) else { return .replay }
        let replaced = pendingByKey[key]
        guard replaced != nil || hasRoom(now: now) else { return .full }
        _ = timestamps.accept(timestamp, from: key)
        if let replaced { remove(replaced) }
        pending[index] = Entry(key: key, fingerprint: fingerprint, payload: payload, expires: now + pendingLifetime)
        pendingByKey[key] = index
        pendingByFingerprint[fingerprint] = index
        return .accepted(replaced: replaced)
    }

    /// The initiator's first authenticated data packet arrived on `index`: the pending handshake
    /// becomes its key's live session. Nil when `index` is not pending (or expired at `now`).
    mutating func confirm(_ index: UInt32, now: Int64) -> Confirmed? {
        guard let entry = pending[index] else { return nil }
        remove(index)
        guard entry.expires > now else { return nil }
        let previous = live[entry.key]
        live[entry.key] = index
        return Confirmed(key: entry.key, pending: entry.payload, replacedLive: previous == index ? nil : previous)
    }

    /// The live session `index` of `key` ended (a later one may have replaced it already).
    mutating func liveClosed(key: PublicKey, index: UInt32) {
        if live[key] == index { live.removeValue(forKey: key) }
    }

    /// Drops pending handshakes whose confirmation did not come in time; returns their indices.
    @discardableResult
    mutating func expire(now: Int64) -> [UInt32] {
        let old = pending.filter { $0.value.expires <= now }.map(\.key)
        for index in old { remove(index) }
        return old
    }

    /// Drops every pending handshake (the endpoint closes).
    mutating func removeAllPending() {
        pending.removeAll()
        pendingByKey.removeAll()
        pendingByFingerprint.removeAll()
    }

    private mutating func remove(_ index: UInt32) {
        guard let entry = pending.removeValue(forKey: index) else { return }
        if pendingByKey[entry.key] == index { pendingByKey.removeValue(forKey: entry.key) }
        if pendingByFingerprint[entry.fingerprint] == index { pendingByFingerprint.removeValue(forKey: entry.fingerprint) }
    }
}
