#if canImport(Glibc)
import Glibc
#endif

/// A TAI64N label (D. J. Bernstein, "TAI64, TAI64N, and TAI64NA"): 8 bytes of seconds with the
/// Unix epoch at 2^62 + 10, then 4 bytes of nanoseconds, both big-endian. The initiator of a
/// handshake puts one in message 1 (PROTOCOL.md §2, as WireGuard does, whitepaper §5.1) and the
/// responder accepts a key's initiation only when its stamp is greater than the last one it
/// accepted from that key (`HandshakeTimestamps`): a captured message 1 cannot be replayed.
public struct TAI64N: Comparable, Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 12
    /// TAI64's label of 1970-01-01 00:00:00 (2^62 + 10, TAI−UTC in 1970).
    public static let unixEpochLabel: UInt64 = 0x4000_0000_0000_000a
    /// Nanoseconds are rounded down to a multiple of 2^24 (≈ 16.8 ms), as WireGuard does, so that
    /// the stamp does not reveal the sender's clock precisely.
    public static let granule: UInt32 = 1 << 24
    static let nanosecondsPerSecond: UInt32 = 1_000_000_000

    public let seconds: UInt64
    public let nanoseconds: UInt32

    public init(seconds: UInt64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// The whitened stamp of a Unix time (seconds since 1970, 0 ≤ nanoseconds < 10^9).
    public init(unixSeconds: Int64, nanoseconds: UInt32) {
        self.seconds = Self.unixEpochLabel &+ UInt64(bitPattern: unixSeconds)
        self.nanoseconds = nanoseconds & ~(Self.granule - 1)
    }

    /// Parses 12 bytes; nil for another length or nanoseconds ≥ 10^9.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == Self.byteCount else { return nil }
        var s: UInt64 = 0
        var n: UInt32 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { s = s << 8 | UInt64(b) } else { n = n << 8 | UInt32(b) }
        }
        guard n < Self.nanosecondsPerSecond else { return nil }
        self.init(seconds: s, nanoseconds: n)
    }

    /// The 12-byte wire form.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.byteCount)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: seconds >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: nanoseconds >> UInt32(shift))) }
        return out
    }

    /// The next whitened stamp after this one (one granule later).
    public var successor: TAI64N {
        let n = UInt64(nanoseconds) + UInt64(Self.granule)
        return n >= UInt64(Self.nanosecondsPerSecond)
            ? TAI64N(seconds: seconds &+ 1, nanoseconds: 0)
            : TAI64N(seconds: seconds, nanoseconds: UInt32(n))
    }

    /// The stamp for a new initiation: now, or just after `last` when the clock has not moved on
    /// since (two dials in one granule, or a clock stepped back), so that a sender's stamps
    /// strictly increase while it runs.
    public static func stamp(now: TAI64N, after last: TAI64N?) -> TAI64N {
        guard let last, now <= last else { return now }
        return last.successor
    }

    /// The current real time (`clock_gettime(CLOCK_REALTIME)`), whitened.
    public static func now() -> TAI64N {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return TAI64N(unixSeconds: Int64(ts.tv_sec), nanoseconds: UInt32(clamping: ts.tv_nsec))
    }

    public static func < (a: TAI64N, b: TAI64N) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    public var description: String {
        "@" + String(seconds, radix: 16) + "." + String(nanoseconds)
    }
}

/// The responder's memory of the newest stamp it accepted per initiator key (WireGuard keeps it
/// per peer). Pure and bounded: at most `capacity` keys; when full, the key updated longest ago is
/// forgotten (a forgotten key's old initiations are accepted again, but such a handshake still
/// needs the initiator's confirmation before it can replace anything, PROTOCOL.md §2).
public struct HandshakeTimestamps<Key: Hashable> {
    /// Default bound: keys remembered per transport.
    public static var defaultCapacity: Int { 4096 }

    public let capacity: Int
    private var newest: [Key: (stamp: TAI64N, order: UInt64)] = [:]
    private var order: UInt64 = 0

    public init(capacity: Int = Self.defaultCapacity) {
        precondition(capacity > 0, "a timestamp table needs room for one key")
        self.capacity = capacity
    }

    public var count: Int { newest.count }

    /// The newest stamp accepted from `key`, if remembered.
    public func last(for key: Key) -> TAI64N? { newest[key]?.stamp }

    /// True when `stamp` is greater than the last accepted from `key` (or none is remembered).
    public func isFresh(_ stamp: TAI64N, from key: Key) -> Bool {
        guard let last = newest[key]?.stamp else { return true }
        return stamp > last
    }

    /// Accepts `stamp` from `key` if fresh and remembers it; false (nothing changes) otherwise.
    public mutating func accept(_ stamp: TAI64N, from key: Key) -> Bool {
        guard isFresh(stamp, from: key) else { return false }
        if newest[key] == nil, newest.count >= capacity, let oldest = newest.min(by: { $0.value.order < $1.value.order }) {
            newest.removeValue(forKey: oldest.key)
        }
        order &+= 1
        newest[key] = (stamp, order)
        return true
    }
}
