/// Why a responder refused a handshake initiation before it established anything (PROTOCOL.md
/// §2.1). Counted and logged by `RefusalLog` (debug lines rate-limited, a periodic `info` summary).
enum HandshakeRefusal: String, CaseIterable, Sendable {
    /// Wrong size or reserved bytes.
    case malformed
    /// mac1 does not verify: not addressed to this visor's key (random garbage).
    case mac1
    /// Under load without a valid mac2: answered with a cookie reply, no DH done.
    case cookie
    /// Under load, valid mac2, but its address used up its handshakes per second.
    case rateLimited = "rate-limited"
    /// Too many handshakes waiting for confirmation (`maxPending…` constants).
    case pendingFull = "pending-full"
    /// The Noise message or the identity claim does not verify.
    case handshake
    /// The TAI64N stamp is not newer than the last one accepted from that key: a replay.
    case replay
}

extension HandshakeRefusal {
    /// The `RefusalLog` reason that counts this refusal.
    var logReason: RefusalLog.Reason {
        switch self {
        case .malformed: return .handshakeMalformed
        case .mac1: return .handshakeMAC1
        case .cookie: return .handshakeCookie
        case .rateLimited: return .handshakeRateLimited
        case .pendingFull: return .handshakePendingFull
        case .handshake: return .handshakeInvalid
        case .replay: return .handshakeReplay
        }
    }
}

/// How many handshake initiations (that passed mac1) arrive per second; above `threshold` the
/// responder is "under load" and answers initiations without a valid mac2 with a cookie reply
/// (WireGuard whitepaper §5.4.7). Two adjacent one-second windows (pure; monotonic nanoseconds).
struct HandshakeLoad {
    static let windowNanoseconds: Int64 = 1_000_000_000

    let threshold: Int
    private var windowStart: Int64 = 0
    private var current = 0
    private var previous = 0

    init(threshold: Int) {
        precondition(threshold > 0, "a load threshold must be positive")
        self.threshold = threshold
    }

    private mutating func advance(to now: Int64) {
        let elapsed = now - windowStart
        guard elapsed >= Self.windowNanoseconds else { return }
        previous = elapsed < 2 * Self.windowNanoseconds ? current : 0
        current = 0
        windowStart = now - elapsed % Self.windowNanoseconds
    }

    /// Counts one initiation at `now`; returns whether the responder is under load.
    mutating func record(now: Int64) -> Bool {
        advance(to: now)
        current += 1
        return current > threshold || previous > threshold
    }
}

/// Per source address token buckets for handshakes under load (WireGuard's rate limiter): an
/// attacker that receives its cookies (a real address) still gets at most `ratePerSecond`
/// handshakes answered, after a burst of `burst`. At most `capacity` addresses are tracked;
/// when full, addresses idle for a second are forgotten, and if none is, new ones are refused
/// (pure; monotonic nanoseconds).
struct HandshakeRateLimiter {
    static let ratePerSecond: Int64 = 20
    static let burst: Int64 = 5
    static let defaultCapacity = 4096
    static let nanosecondsPerSecond: Int64 = 1_000_000_000
    /// One token, in nanoseconds of refill.
    static let tokenCost = nanosecondsPerSecond / ratePerSecond

    let capacity: Int
    /// Per address: the time its bucket was last topped up and its balance (in nanoseconds of
    /// refill, at most `burst × tokenCost`).
    private var buckets: [[UInt8]: (last: Int64, balance: Int64)] = [:]

    init(capacity: Int = Self.defaultCapacity) {
        precondition(capacity > 0, "room for one address at least")
        self.capacity = capacity
    }

    var count: Int { buckets.count }

    /// Whether `address` may have one more handshake at `now`; takes a token when it may.
    mutating func allow(_ address: [UInt8], now: Int64) -> Bool {
        let full = Self.burst * Self.tokenCost
        var bucket = buckets[address] ?? (now, full)
        if buckets[address] == nil, buckets.count >= capacity {
            buckets = buckets.filter { now - $0.value.last < Self.nanosecondsPerSecond }
            guard buckets.count < capacity else { return false }
        }
        bucket.balance = min(full, bucket.balance + max(0, now - bucket.last))
        bucket.last = now
        guard bucket.balance >= Self.tokenCost else {
            buckets[address] = bucket
            return false
        }
        bucket.balance -= Self.tokenCost
        buckets[address] = bucket
        return true
    }
}
