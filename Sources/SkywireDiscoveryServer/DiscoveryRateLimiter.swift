import NIOConcurrencyHelpers
import SkywireDiscovery

/// A token-bucket rate: `perSecond` tokens are added each second up to `burst`; each write takes one.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var perSecond: Double
    public var burst: Int

    public init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// Per signing key: a visor writes 3 entries every ttl/3 s and punches on connects.
    public static let defaultPerKey = RateLimit(perSecond: 1, burst: 20)
    /// Per client IPv4 address or IPv6 /64: room for a few hundred visors behind one NAT.
    public static let defaultPerIP = RateLimit(perSecond: 20, burst: 200)
    /// Reads (GET) and rendezvous datagrams per client address: a visor BINDs every ttl/3 s and
    /// looks keys up on connects, so this leaves room for a thousand visors behind one NAT while a
    /// flood from one address costs at most this many lookups or signature checks a second.
    public static let defaultReadsPerIP = RateLimit(perSecond: 100, burst: 1_000)

    public var description: String { "\(perSecond.formattedRate)/s, burst \(burst)" }
}

extension Double {
    /// `2` rather than `2.0`; fractions as Swift prints them.
    var formattedRate: String { self == rounded() ? String(Int64(self)) : String(self) }
}

/// Token buckets per key in a table of at most `capacity` keys (bounded memory whatever the
/// number of keys or addresses an attacker uses). A bucket that has refilled is the same as no
/// bucket, so when the table is full those are dropped first, then the least recently used down
/// to 7/8 of the capacity (they restart full, as new keys would). Thread-safe: `buckets` only
/// under its lock (`NIOLockedValueBox`).
public final class TokenBucketTable<Key: Hashable & Sendable>: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedMs: Int64
    }

    public let limit: RateLimit
    let capacity: Int
    private let buckets = NIOLockedValueBox<[Key: Bucket]>([:])

    init(limit: RateLimit, capacity: Int) {
        self.limit = limit
        self.capacity = max(1, capacity)
    }

    var count: Int { buckets.withLockedValue { $0.count } }

    /// Takes one token for `key` at `nowMs`: nil when admitted, else the whole seconds until a
    /// token is back (for `Retry-After`).
    func take(_ key: Key, nowMs: Int64) -> Int? {
        buckets.withLockedValue { table -> Int? in
            var b = table[key] ?? Bucket(tokens: Double(limit.burst), updatedMs: nowMs)
            b.tokens = refilled(b, nowMs: nowMs)
            b.updatedMs = nowMs
            guard b.tokens >= 1 else {
                table[key] = b
                return max(1, Int(((1 - b.tokens) / limit.perSecond).rounded(.up)))
            }
            b.tokens -= 1
            if table[key] == nil && table.count >= capacity { makeRoom(&table, nowMs: nowMs) }
            table[key] = b
            return nil
        }
    }

    private func refilled(_ b: Bucket, nowMs: Int64) -> Double {
        // A clock step backwards adds nothing.
        let elapsed = Double(max(0, nowMs - b.updatedMs)) / 1000
        return min(Double(limit.burst), b.tokens + elapsed * limit.perSecond)
    }

    /// Called when the table is full: drops refilled buckets, then the least recently used down
    /// to 7/8 of the capacity, so this O(n log n) pass runs at most once per capacity/8 new keys.
    private func makeRoom(_ table: inout [Key: Bucket], nowMs: Int64) {
        let full = Double(limit.burst)
        table = table.filter { refilled($0.value, nowMs: nowMs) < full }
        let target = capacity - max(1, capacity / Self.evictionFraction)
        guard table.count > target else { return }
        for (key, _) in table.sorted(by: { $0.value.updatedMs < $1.value.updatedMs }).prefix(table.count - target) {
            table[key] = nil
        }
    }

    /// When full, room is made for capacity / this many new keys at once.
    static var evictionFraction: Int { 8 }
}

/// The rate limits of one service: writes per signing key and per client address, and reads
/// (GET requests and rendezvous datagrams, checked before any lookup or signature) per client address.
public struct DiscoveryRateLimits: Sendable {
    public let perKey: TokenBucketTable<String>
    public let perIP: TokenBucketTable<[UInt8]>
    public let readsPerIP: TokenBucketTable<[UInt8]>

    /// Buckets per table by default: ~100 bytes each, so about 1.6 MB per table at most.
    public static let defaultCapacity = 16_384

    public init(perKey: RateLimit = .defaultPerKey, perIP: RateLimit = .defaultPerIP, readsPerIP: RateLimit = .defaultReadsPerIP,
                capacity: Int = defaultCapacity) {
        self.perKey = TokenBucketTable(limit: perKey, capacity: capacity)
        self.perIP = TokenBucketTable(limit: perIP, capacity: capacity)
        self.readsPerIP = TokenBucketTable(limit: readsPerIP, capacity: capacity)
    }

    /// The per-IP bucket key: the IPv4 address, or the /64 of an IPv6 address (one subscriber's
    /// prefix; IPv4-mapped addresses count as IPv4).
    static func ipKey(_ address: [UInt8]) -> [UInt8] {
        if address.count == 16 && address[0..<10].allSatisfy({ $0 == 0 }) && address[10] == 0xff && address[11] == 0xff {
            return Array(address[12..<16])
        }
        return address.count == 16 ? Array(address[0..<8]) : address
    }
}
