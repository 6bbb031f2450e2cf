import CLibPQ
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL connection through libpq (PQconnectdb, PQexecParams with text parameters).
/// A broken connection is re-established once per statement (PQreset).
final class PostgresConnection: SQLConnection {
    private let conn: OpaquePointer
    let dialect = "postgresql"

    /// `url`: a libpq connection URI, `postgres://user:pass@host:5432/db` or
    /// `postgresql:///db?host=/run/postgresql`.
    init(url: String) throws(StoreError) {
        guard let c = PQconnectdb(url) else { throw StoreError("postgresql: out of memory") }
        guard PQstatus(c) == CONNECTION_OK else {
            let msg = Self.trimmed(PQerrorMessage(c))
            PQfinish(c)
            throw StoreError("postgresql: cannot connect: \(msg)")
        }
        conn = c
        // Notices (e.g. "relation already exists, skipping") are not errors; keep them off stderr.
        PQsetNoticeProcessor(c, { _, _ in }, nil)
    }

    deinit { PQfinish(conn) }

    private static func trimmed(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "unknown error" }
        var s = String(cString: p)
        while s.last == "\n" || s.last == " " { s.removeLast() }
        return s
    }

    private func ensureConnected() throws(StoreError) {
        if PQstatus(conn) != CONNECTION_OK {
            PQreset(conn)
            guard PQstatus(conn) == CONNECTION_OK else {
                throw StoreError("postgresql: connection lost: \(Self.trimmed(PQerrorMessage(conn)))")
            }
        }
    }

    func runScript(_ sql: String) throws(StoreError) {
        try ensureConnected()
        let res = PQexec(conn, sql)
        defer { PQclear(res) }
        let st = PQresultStatus(res)
        guard st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK else {
            throw StoreError("postgresql: \(Self.trimmed(PQresultErrorMessage(res)))")
        }
    }

    func run(_ sql: String, _ params: [String?]) throws(StoreError) -> SQLResult {
        try ensureConnected()
        // Keep the C strings alive for the call: strdup each, free after.
        let cParams: [UnsafeMutablePointer<CChar>?] = params.map { $0.flatMap { strdup($0) } }
        defer { cParams.forEach { free($0) } }
        let res: OpaquePointer?
        if cParams.isEmpty {
            res = PQexecParams(conn, sql, 0, nil, nil, nil, nil, 0)
        } else {
            let values = cParams.map { UnsafePointer<CChar>($0) }
            res = PQexecParams(conn, sql, Int32(values.count), nil, values, nil, nil, 0)
        }
        defer { PQclear(res) }
        let st = PQresultStatus(res)
        guard st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK else {
            throw StoreError("postgresql: \(Self.trimmed(PQresultErrorMessage(res)))")
        }
        var rows: [[String?]] = []
        let nRows = PQntuples(res), nCols = PQnfields(res)
        for r in 0 ..< nRows {
            var row: [String?] = []
            for c in 0 ..< nCols {
                row.append(PQgetisnull(res, r, c) == 1 ? nil : String(cString: PQgetvalue(res, r, c)))
            }
            rows.append(row)
        }
        let changes = Int(String(cString: PQcmdTuples(res))) ?? 0
        return SQLResult(rows: rows, changes: changes)
    }
}
