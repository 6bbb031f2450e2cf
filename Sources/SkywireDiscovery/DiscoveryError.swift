/// A refused request: the HTTP status and the text of the `{"error": "…"}` body (docs/discovery.md).
public struct DiscoveryError: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    /// Seconds after which a refused write may succeed (429 only).
    public var retryAfter: Int?

    public init(_ status: Int, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status): \(message)" }

    public static func badRequest(_ m: String) -> DiscoveryError { .init(400, m) }
    public static func unauthorized(_ m: String) -> DiscoveryError { .init(401, m) }
    public static func forbidden(_ m: String) -> DiscoveryError { .init(403, m) }
    public static func notFound(_ m: String) -> DiscoveryError { .init(404, m) }
    public static func tooLarge(_ m: String) -> DiscoveryError { .init(413, m) }
    public static func tooManyRequests(_ m: String, retryAfter: Int) -> DiscoveryError { .init(429, m, retryAfter: retryAfter) }
}
