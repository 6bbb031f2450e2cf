/// Skychat's per-sender rate limit: a token bucket per key (`--rate` messages a minute, a burst
/// of `burst`), pure (the caller gives the time). Holds at most `maxSenders` buckets: past that
/// the fullest (the sender quiet the longest) makes room, so a stream of new keys costs bounded memory.
struct ChatRateLimiter: Sendable {
    struct Bucket: Sendable {
        var tokens: Double
        var updated: Double
    }

    let perSecond: Double
    let burst: Double
    let maxSenders: Int
    private(set) var buckets: [String: Bucket] = [:]

    /// Messages a sender may send at once before the rate applies.
    static let defaultBurst = 20
    static let defaultMaxSenders = 1024
    static let secondsPerMinute = 60.0

    init(perMinute: Int, burst: Int = defaultBurst, maxSenders: Int = defaultMaxSenders) {
        perSecond = Double(perMinute) / Self.secondsPerMinute
        self.burst = Double(burst)
        self.maxSenders = maxSenders
    }

    /// Takes one token from `key`'s bucket at time `now` (seconds); false when it is empty.
    mutating func admit(_ key: String, now: Double) -> Bool {
        var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
        bucket.tokens = min(burst, bucket.tokens + max(0, now - bucket.updated) * perSecond)
        bucket.updated = now
        let admitted = bucket.tokens >= 1
        if admitted { bucket.tokens -= 1 }
        if buckets[key] == nil, buckets.count >= maxSenders {
            // The bucket that would be fullest now: its sender has been quiet the longest.
            if let quiet = buckets.min(by: { $0.value.updated < $1.value.updated })?.key { buckets[quiet] = nil }
        }
        buckets[key] = bucket
        return admitted
    }
}
