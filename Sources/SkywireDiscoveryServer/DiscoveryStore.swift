import SkywireDiscovery

/// Where the service keeps its entries. Every method takes the current time (Unix ms) so expiry
/// is decided by the caller's clock and tests can move it. Implementations are thread-safe.
public protocol DiscoveryStore: Sendable {
    /// Inserts or replaces `pk`'s transport registration, live until `expiresMs`.
    func putTransport(pk: String, registration: TransportRegistration, expiresMs: Int64) throws(StoreError)
    /// The live registration of `pk` with its live sudph binding, if any.
    func transport(pk: String, nowMs: Int64) throws(StoreError) -> TransportEntry?
    /// Removes the registration and the binding; true when something was live.
    func deleteTransport(pk: String, nowMs: Int64) throws(StoreError) -> Bool
    /// Records `pk`'s observed sudph address and BIND token (hex) from a BIND signed at
    /// `timestampMs`. Refused (false) unless `timestampMs` is newer than the last accepted BIND
    /// of that key (replay).
    func bind(pk: String, address: String, token: String, timestampMs: Int64, expiresMs: Int64) throws(StoreError) -> Bool
    /// The live sudph binding of `pk`.
    func binding(pk: String, nowMs: Int64) throws(StoreError) -> SudphBinding?
    func putService(type: DiscoveryServiceType, pk: String, registration: ServiceRegistration, expiresMs: Int64) throws(StoreError)
    /// Live services of `type` sorted by pk, optionally filtered: at most `limit`, with a pk
    /// greater than `after` when given (one page).
    func services(type: DiscoveryServiceType, country: String?, version: String?, after: String?, limit: Int,
                  nowMs: Int64) throws(StoreError) -> [ServiceEntry]
    func deleteService(type: DiscoveryServiceType, pk: String, nowMs: Int64) throws(StoreError) -> Bool
    /// Remembers (pk, nonce) until `expiresMs`; false when it is already remembered (a replay).
    func recordNonce(pk: String, nonce: String, expiresMs: Int64, nowMs: Int64) throws(StoreError) -> Bool
    /// Deletes expired rows of every table; returns how many.
    func purge(nowMs: Int64) throws(StoreError) -> Int
}

/// A key's observed sudph address and the token of its latest accepted BIND (hex).
public struct SudphBinding: Sendable, Equatable {
    public var address: String
    public var token: String
}

/// Opens the store a `--db` URL names: `sqlite:PATH` or `postgres://…` / `postgresql://…`.
public enum DiscoveryStoreURL {
    public static func open(_ url: String) throws(StoreError) -> any DiscoveryStore {
        if url.hasPrefix("sqlite:") {
            var path = String(url.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            guard !path.isEmpty else { throw StoreError("--db sqlite: needs a file path, e.g. sqlite:/var/lib/skywire-discovery/db.sqlite") }
            return try SQLDiscoveryStore(connection: SQLiteConnection(path: path))
        }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return try SQLDiscoveryStore(connection: PostgresConnection(url: url))
        }
        throw StoreError("--db \"\(url.prefix(80))\": expected sqlite:PATH or postgres://user:pass@host:port/db")
    }
}
