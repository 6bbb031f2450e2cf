import Foundation
import SkywireSystem
import XCTest

/// A throwaway PostgreSQL cluster for the tests: `initdb` in a temp dir, `pg_ctl start` on a unix
/// socket in that dir (no TCP), stopped and removed at the end. As root it runs as the `postgres`
/// user (initdb refuses root). Missing binaries: the caller skips with the reason.
final class PostgresFixture {
    let dir: String
    let port = 54329
    private let binDir: String
    private let asUser: String?

    /// The libpq URL of the cluster's `postgres` database.
    var url: String { "postgresql://postgres@/postgres?host=\(dir)&port=\(port)" }

    static func findBinDir() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        for v in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/initdb") {
            return "\(root)/\(v)/bin"
        }
        return nil
    }

    init() throws {
        guard let bin = Self.findBinDir() else {
            throw XCTSkip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install the Debian postgresql package: scripts/install-deps.sh)")
        }
        binDir = bin
        asUser = getuid() == 0 ? "postgres" : nil
        dir = NSTemporaryDirectory() + "skywire-pg-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if asUser != nil {
            try Self.run("/bin/chown", ["postgres:postgres", dir])
        }
        try command("\(binDir)/initdb", ["-D", "\(dir)/data", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        try command("\(binDir)/pg_ctl", ["-D", "\(dir)/data", "-l", "\(dir)/log", "-w", "-t", "30", "-o",
                                         "-k \(dir) -c listen_addresses= -p \(port) -c fsync=off", "start"])
    }

    func stop() {
        _ = try? command("\(binDir)/pg_ctl", ["-D", "\(dir)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func command(_ path: String, _ args: [String]) throws {
        if let user = asUser {
            try Self.run("/usr/sbin/runuser", ["-u", user, "--", path] + args)
        } else {
            try Self.run(path, args)
        }
    }

    /// Runs through `/bin/sh` with output to a file, not a pipe: the server pg_ctl starts would
    /// inherit a pipe and keep it open. posix_spawn + waitpid via `Subprocess`.
    static func run(_ path: String, _ args: [String]) throws {
        let logPath = NSTemporaryDirectory() + "skywire-pg-cmd-\(getpid())-\(UInt32.random(in: 0 ... .max)).log"
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let quoted = ([path] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let r = try Subprocess.run("/bin/sh", ["-c", "\(quoted) </dev/null >\(logPath) 2>&1"])
        guard r.status == 0 else {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw NSError(domain: "PostgresFixture", code: Int(r.status), userInfo: [
                NSLocalizedDescriptionKey: "\(path) \(args.joined(separator: " ")) failed (\(r.status)): \(text)"])
        }
    }
}
