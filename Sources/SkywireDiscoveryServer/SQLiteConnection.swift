import CSQLite3

/// An embedded SQLite database file (sqlite3_open_v2, WAL journal).
final class SQLiteConnection: SQLConnection {
    private var db: OpaquePointer?
    let dialect = "sqlite"

    init(path: String) throws(StoreError) {
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
            sqlite3_close(handle)
            throw StoreError("sqlite: cannot open \(path): \(msg)")
        }
        db = handle
        sqlite3_busy_timeout(handle, 5000)
        try runScript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    }

    deinit { sqlite3_close_v2(db) }

    private func message() -> String { String(cString: sqlite3_errmsg(db)) }

    func runScript(_ sql: String) throws(StoreError) {
        var err: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &err) == SQLITE_OK else {
            let msg = err.map { String(cString: $0) } ?? message()
            sqlite3_free(err)
            throw StoreError("sqlite: \(msg)")
        }
    }

    /// sqlite3_prepare_v2, sqlite3_bind_text by `$N` name, sqlite3_step until SQLITE_DONE.
    func run(_ sql: String, _ params: [String?]) throws(StoreError) -> SQLResult {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw StoreError("sqlite: prepare failed: \(message())")
        }
        defer { sqlite3_finalize(stmt) }
        // SQLITE_TRANSIENT: SQLite copies the text before bind returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, p) in params.enumerated() {
            let index = sqlite3_bind_parameter_index(stmt, "$\(i + 1)")
            guard index > 0 else { continue }   // a parameter this statement does not use
            let rc: Int32
            if let p { rc = sqlite3_bind_text(stmt, index, p, -1, transient) } else { rc = sqlite3_bind_null(stmt, index) }
            guard rc == SQLITE_OK else { throw StoreError("sqlite: bind failed: \(message())") }
        }
        var rows: [[String?]] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw StoreError("sqlite: \(message())") }
            let n = sqlite3_column_count(stmt)
            var row: [String?] = []
            for c in 0 ..< n {
                if let text = sqlite3_column_text(stmt, c) {
                    row.append(String(cString: text))
                } else {
                    row.append(nil)
                }
            }
            rows.append(row)
        }
        return SQLResult(rows: rows, changes: Int(sqlite3_changes(db)))
    }
}
