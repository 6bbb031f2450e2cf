/// One SQL connection with `$1, $2, …` parameters (PostgreSQL syntax; SQLite accepts `$N` as a
/// named parameter). Every value travels as text; NULL as nil. Not thread-safe: `SQLDiscoveryStore`
/// serialises calls under its lock.
protocol SQLConnection: AnyObject {
    /// Runs one statement; returns its rows (text columns) and the number of rows it changed.
    func run(_ sql: String, _ params: [String?]) throws(StoreError) -> SQLResult
    /// Runs several statements without parameters (schema set-up).
    func runScript(_ sql: String) throws(StoreError)
    /// "sqlite" or "postgresql", for messages.
    var dialect: String { get }
}

struct SQLResult {
    var rows: [[String?]]
    var changes: Int
}

/// A storage failure: the service answers 500 with this text and keeps running.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}
