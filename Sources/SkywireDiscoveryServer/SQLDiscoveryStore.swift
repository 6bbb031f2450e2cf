import NIOConcurrencyHelpers
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery

/// `DiscoveryStore` over one SQL connection (SQLite or PostgreSQL: the statements are the same
/// in both dialects). `@unchecked Sendable`: every use of `connection` holds `lock`.
final class SQLDiscoveryStore: DiscoveryStore, @unchecked Sendable {
    private let connection: any SQLConnection
    private let lock = NIOLock()

    /// `transport_relays` holds a transport entry's `dmsg` relay keys (a table of its own, so a
    /// database from before them needs no ALTER). `bindings` (before BIND tokens) is replaced by `sudph_bindings`; bindings live one TTL and
    /// visors BIND every 15 s, so nothing of value is dropped.
    static let schema = """
        CREATE TABLE IF NOT EXISTS transports (
            pk TEXT PRIMARY KEY, stcpr TEXT NOT NULL, sudph BOOLEAN NOT NULL, expires_ms BIGINT NOT NULL);
        DROP TABLE IF EXISTS bindings;
        CREATE TABLE IF NOT EXISTS transport_relays (
            pk TEXT PRIMARY KEY, dmsg TEXT NOT NULL, expires_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS sudph_bindings (
            pk TEXT PRIMARY KEY, addr TEXT NOT NULL, token TEXT NOT NULL, ts_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS services (
            type TEXT NOT NULL, pk TEXT NOT NULL, version TEXT NOT NULL, country TEXT NOT NULL,
            label TEXT, stats TEXT, expires_ms BIGINT NOT NULL, PRIMARY KEY (type, pk));
        CREATE INDEX IF NOT EXISTS services_country ON services (type, country);
        CREATE TABLE IF NOT EXISTS nonces (
            pk TEXT NOT NULL, nonce TEXT NOT NULL, expires_ms BIGINT NOT NULL, PRIMARY KEY (pk, nonce));
        """

    init(connection: any SQLConnection) throws(StoreError) {
        self.connection = connection
        try connection.runScript(Self.schema)
    }

    private func run(_ sql: String, _ params: [String?]) throws(StoreError) -> SQLResult {
        lock.lock()
        defer { lock.unlock() }
        return try connection.run(sql, params)
    }

    private static func int(_ s: String?) throws(StoreError) -> Int64 {
        guard let s, let v = Int64(s) else { throw StoreError("store: bad integer column \(s ?? "NULL")") }
        return v
    }

    func putTransport(pk: String, registration: TransportRegistration, expiresMs: Int64) throws(StoreError) {
        let stcpr = JSONValue.array(registration.stcpr.map { .string($0) }).compact()
        _ = try run("""
            INSERT INTO transports (pk, stcpr, sudph, expires_ms) VALUES ($1, $2, $3, $4)
            ON CONFLICT (pk) DO UPDATE SET stcpr = excluded.stcpr, sudph = excluded.sudph, expires_ms = excluded.expires_ms
            """, [pk, stcpr, registration.sudph ? "true" : "false", String(expiresMs)])
        if registration.dmsg.isEmpty {
            _ = try run("DELETE FROM transport_relays WHERE pk = $1", [pk])
        } else {
            let dmsg = JSONValue.array(registration.dmsg.map { .string($0.hex) }).compact()
            _ = try run("""
                INSERT INTO transport_relays (pk, dmsg, expires_ms) VALUES ($1, $2, $3)
                ON CONFLICT (pk) DO UPDATE SET dmsg = excluded.dmsg, expires_ms = excluded.expires_ms
                """, [pk, dmsg, String(expiresMs)])
        }
    }

    /// `pk`'s live `dmsg` relay keys (stored only after validation; anything unreadable is skipped).
    private func relays(pk: String, nowMs: Int64) throws(StoreError) -> [PublicKey] {
        let r = try run("SELECT dmsg FROM transport_relays WHERE pk = $1 AND expires_ms > $2", [pk, String(nowMs)])
        guard let row = r.rows.first, case .array(let items)? = try? JSONParser.parse(row[0] ?? "[]") else { return [] }
        return items.compactMap { item in
            guard case .string(let s) = item else { return nil }
            return try? PublicKey(hex: s)
        }
    }

    func transport(pk: String, nowMs: Int64) throws(StoreError) -> TransportEntry? {
        let r = try run("SELECT stcpr, expires_ms FROM transports WHERE pk = $1 AND expires_ms > $2", [pk, String(nowMs)])
        guard let row = r.rows.first else { return nil }
        var addrs: [String] = []
        if case .array(let items)? = try? JSONParser.parse(row[0] ?? "[]") {
            for case .string(let s) in items { addrs.append(s) }
        }
        return TransportEntry(pk: pk, stcpr: addrs, sudph: try binding(pk: pk, nowMs: nowMs)?.address,
                              dmsg: try relays(pk: pk, nowMs: nowMs), expiresMs: try Self.int(row[1]))
    }

    func deleteTransport(pk: String, nowMs: Int64) throws(StoreError) -> Bool {
        let live = try run("SELECT 1 FROM transports WHERE pk = $1 AND expires_ms > $2", [pk, String(nowMs)]).rows.count > 0
        _ = try run("DELETE FROM transports WHERE pk = $1", [pk])
        _ = try run("DELETE FROM transport_relays WHERE pk = $1", [pk])
        _ = try run("DELETE FROM sudph_bindings WHERE pk = $1", [pk])
        return live
    }

    func bind(pk: String, address: String, token: String, timestampMs: Int64, expiresMs: Int64) throws(StoreError) -> Bool {
        try run("""
            INSERT INTO sudph_bindings (pk, addr, token, ts_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (pk) DO UPDATE SET addr = excluded.addr, token = excluded.token, ts_ms = excluded.ts_ms,
                expires_ms = excluded.expires_ms
            WHERE sudph_bindings.ts_ms < excluded.ts_ms
            """, [pk, address, token, String(timestampMs), String(expiresMs)]).changes == 1
    }

    func binding(pk: String, nowMs: Int64) throws(StoreError) -> SudphBinding? {
        let r = try run("SELECT addr, token FROM sudph_bindings WHERE pk = $1 AND expires_ms > $2", [pk, String(nowMs)])
        guard let row = r.rows.first, let addr = row[0], let token = row[1] else { return nil }
        return SudphBinding(address: addr, token: token)
    }

    func putService(type: DiscoveryServiceType, pk: String, registration: ServiceRegistration, expiresMs: Int64) throws(StoreError) {
        _ = try run("""
            INSERT INTO services (type, pk, version, country, label, stats, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (type, pk) DO UPDATE SET version = excluded.version, country = excluded.country,
                label = excluded.label, stats = excluded.stats, expires_ms = excluded.expires_ms
            """, [type.rawValue, pk, registration.version, registration.country, registration.label,
                  registration.stats.map { DiscoveryValidation.statsJSON($0).compact() }, String(expiresMs)])
    }

    func services(type: DiscoveryServiceType, country: String?, version: String?, after: String?, limit: Int,
                  nowMs: Int64) throws(StoreError) -> [ServiceEntry] {
        // A NULL filter matches everything: ($3 IS NULL OR country = $3) with the parameter typed.
        // `limit` is an Int, written into the text (LIMIT takes no text parameter in SQLite).
        let r = try run("""
            SELECT pk, version, country, label, stats, expires_ms FROM services
            WHERE type = $1 AND expires_ms > $2
              AND (CAST($3 AS TEXT) IS NULL OR country = $3) AND (CAST($4 AS TEXT) IS NULL OR version = $4)
              AND (CAST($5 AS TEXT) IS NULL OR pk > $5)
            ORDER BY pk LIMIT \(max(0, limit))
            """, [type.rawValue, String(nowMs), country, version, after])
        var out: [ServiceEntry] = []
        for row in r.rows {
            var stats: [String: Int64]? = nil
            if let s = row[4], let v = try? JSONParser.parse(s) { stats = try? DiscoveryValidation.stats(v) }
            out.append(ServiceEntry(pk: row[0] ?? "", type: type,
                                    registration: ServiceRegistration(version: row[1] ?? "", country: row[2] ?? "", label: row[3], stats: stats),
                                    expiresMs: try Self.int(row[5])))
        }
        return out
    }

    func deleteService(type: DiscoveryServiceType, pk: String, nowMs: Int64) throws(StoreError) -> Bool {
        let live = try run("SELECT 1 FROM services WHERE type = $1 AND pk = $2 AND expires_ms > $3",
                           [type.rawValue, pk, String(nowMs)]).rows.count > 0
        _ = try run("DELETE FROM services WHERE type = $1 AND pk = $2", [type.rawValue, pk])
        return live
    }

    func recordNonce(pk: String, nonce: String, expiresMs: Int64, nowMs: Int64) throws(StoreError) -> Bool {
        // Inserted, or an expired row taken over: 1 change. A live duplicate: 0 (a replay).
        try run("""
            INSERT INTO nonces (pk, nonce, expires_ms) VALUES ($1, $2, $3)
            ON CONFLICT (pk, nonce) DO UPDATE SET expires_ms = excluded.expires_ms WHERE nonces.expires_ms <= $4
            """, [pk, nonce, String(expiresMs), String(nowMs)]).changes == 1
    }

    func purge(nowMs: Int64) throws(StoreError) -> Int {
        var n = 0
        for table in ["transports", "transport_relays", "sudph_bindings", "services", "nonces"] {
            n += try run("DELETE FROM \(table) WHERE expires_ms <= $1", [String(nowMs)]).changes
        }
        return n
    }
}
