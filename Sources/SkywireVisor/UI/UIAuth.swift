import NIOConcurrencyHelpers
import SkywireCrypto

/// Sessions, one-time login tokens and login rate limits of the web UI (docs/ui.md §Security).
/// Time is a parameter (seconds on a monotonic clock), so expiry and refill are tested
/// without waiting.
public final class UIAuthenticator: @unchecked Sendable {
    // @unchecked Sendable: every mutable member below is guarded by `lock`.
    private let lock = NIOLock()

    /// Session lifetime from login (absolute, not sliding).
    public static let sessionLifetime: Double = 12 * 3600
    /// A one-time token from `skywire cli url` is good for this long.
    public static let tokenLifetime: Double = 10 * 60
    /// Random bytes in a session id, a CSRF token and a login token (256 bits).
    public static let secretBytes = 32
    /// Live sessions kept; the oldest is dropped beyond this.
    public static let maxSessions = 32
    /// Unused tokens kept; the oldest is dropped beyond this.
    public static let maxTokens = 16

    struct Session { let csrf: String; let expires: Double; let created: Double }
    private var sessions: [String: Session] = [:]
    private var tokens: [String: Double] = [:]  // token -> expiry
    private var perSource: UIRateLimiter
    private var global: UIRateLimiter

    public init(perSource: UIRateLimiter.Rate = UIRateLimiter.perSourceDefault,
                global: UIRateLimiter.Rate = UIRateLimiter.globalDefault) {
        self.perSource = UIRateLimiter(rate: perSource)
        self.global = UIRateLimiter(rate: global)
    }

    /// A fresh one-time login token (`ui.token` on the control socket).
    public func issueToken(now: Double) -> String {
        let token = HexCoding.encode(SecureRandom.bytes(Self.secretBytes))
        lock.withLock {
            tokens = tokens.filter { $0.value > now }
            while tokens.count >= Self.maxTokens, let oldest = tokens.min(by: { $0.value < $1.value })?.key {
                tokens[oldest] = nil
            }
            tokens[token] = now + Self.tokenLifetime
        }
        return token
    }

    /// Takes one login attempt from `source` out of both buckets; false: refuse with 429.
    public func admitLogin(source: String, now: Double) -> Bool {
        lock.withLock {
            // The global bucket is only charged when the source's own bucket admits the attempt,
            // so one flooding source cannot lock everyone else out.
            guard perSource.peek(source, now: now) else { return false }
            guard global.take("", now: now) else { return false }
            return perSource.take(source, now: now)
        }
    }

    /// Consumes `token` if it is live (each token logs in once).
    public func redeemToken(_ token: String, now: Double) -> Bool {
        lock.withLock {
            // Look up by constant-time comparison over every live token, not by hashing the guess.
            var match: String?
            for (t, expiry) in tokens where expiry > now && Self.constantTimeEqual(t, token) { match = t }
            guard let match else { return false }
            tokens[match] = nil
            return true
        }
    }

    /// A new session: (id, csrf token).
    public func createSession(now: Double) -> (id: String, csrf: String) {
        let id = HexCoding.encode(SecureRandom.bytes(Self.secretBytes))
        let csrf = HexCoding.encode(SecureRandom.bytes(Self.secretBytes))
        lock.withLock {
            sessions = sessions.filter { $0.value.expires > now }
            while sessions.count >= Self.maxSessions, let oldest = sessions.min(by: { $0.value.created < $1.value.created })?.key {
                sessions[oldest] = nil
            }
            sessions[id] = Session(csrf: csrf, expires: now + Self.sessionLifetime, created: now)
        }
        return (id, csrf)
    }

    /// The CSRF token of a live session, nil when `id` is unknown or expired.
    public func session(_ id: String, now: Double) -> String? {
        lock.withLock {
            guard Self.isSecretShaped(id), let s = sessions[id] else { return nil }
            guard s.expires > now else { sessions[id] = nil; return nil }
            return s.csrf
        }
    }

    /// Seconds the session has left (for the cookie's Max-Age).
    public func remaining(_ id: String, now: Double) -> Double {
        lock.withLock { max(0, (sessions[id]?.expires ?? now) - now) }
    }

    public func endSession(_ id: String) {
        lock.withLock { sessions[id] = nil }
    }

    /// Ends every session (a password change).
    public func endAllSessions() {
        lock.withLock { sessions.removeAll() }
    }

    /// 64 lowercase hex: anything else is never looked up.
    static func isSecretShaped(_ s: String) -> Bool {
        s.utf8.count == secretBytes * 2 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Equal strings, compared without an early exit.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// Token buckets keyed by source address (the key "" for the global one); at most
/// `maxKeys` are remembered, the fullest (most idle) forgotten first. Not locked: its owner
/// (`UIAuthenticator`) holds the lock.
public struct UIRateLimiter {
    public struct Rate: Sendable {
        /// Attempts available at once.
        public var burst: Double
        /// Attempts regained per second.
        public var perSecond: Double
        public init(burst: Double, perSecond: Double) { self.burst = burst; self.perSecond = perSecond }
    }

    /// 5 attempts, then one every 12 s, per source address.
    public static let perSourceDefault = Rate(burst: 5, perSecond: 1.0 / 12)
    /// 20 attempts, then one a second, for all sources together.
    public static let globalDefault = Rate(burst: 20, perSecond: 1)
    static let maxKeys = 1024

    let rate: Rate
    private var buckets: [String: (tokens: Double, at: Double)] = [:]

    init(rate: Rate) { self.rate = rate }

    private func level(_ key: String, now: Double) -> Double {
        guard let b = buckets[key] else { return rate.burst }
        return min(rate.burst, b.tokens + max(0, now - b.at) * rate.perSecond)
    }

    func peek(_ key: String, now: Double) -> Bool { level(key, now: now) >= 1 }

    mutating func take(_ key: String, now: Double) -> Bool {
        let l = level(key, now: now)
        guard l >= 1 else { return false }
        if buckets[key] == nil, buckets.count >= Self.maxKeys {
            // Forget the fullest bucket: it is the one closest to a fresh one.
            if let k = buckets.max(by: { level($0.key, now: now) < level($1.key, now: now) })?.key { buckets[k] = nil }
        }
        buckets[key] = (l - 1, now)
        return true
    }
}
