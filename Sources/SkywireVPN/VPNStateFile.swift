import SkywireConfig
import SkywireSystem

/// What a VPN app changed on the system, written before each change so that the next start
/// can undo what a crashed run left (docs/vpn.md §5). One `key=value` per line; keys repeat.
struct VPNStateFile {
    let path: String

    init(directory: String, name: String) {
        path = directory + "/" + name
    }

    func load() -> [(key: String, value: String)] {
        guard let bytes = try? FileIO.read(path) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let kv = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { return nil }
            return (String(kv[0]), String(kv[1]))
        }
    }

    func save(_ entries: [(key: String, value: String)]) throws {
        let dir = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !dir.isEmpty { try FileIO.makeDirectories(dir) }
        try AtomicFile.write(Array(entries.map { "\($0.key)=\($0.value)\n" }.joined().utf8), to: path, replace: true)
    }

    func remove() { try? FileIO.remove(path) }
}

extension RouteSpec {
    /// `DEST GATEWAY|- DEV|- TABLE SCOPE|- METRIC|-` for the state file: everything the route
    /// was added with, so that removing it matches exactly that route (docs/vpn.md §5).
    var stateValue: String {
        "\(destination) \(gateway?.description ?? "-") \(interface ?? "-") \(table) \(scope.map(String.init) ?? "-") \(metric.map(String.init) ?? "-")"
    }

    /// Reads `stateValue`, and the four-field form of earlier versions (no scope, no metric).
    init?(stateValue: String) {
        let f = stateValue.split(separator: " ").map(String.init)
        guard f.count == 4 || f.count == 6, let dst = IPPrefix(f[0]), let table = UInt32(f[3]) else { return nil }
        var scope: UInt8?, metric: UInt32?
        if f.count == 6 {
            if f[4] != "-" { guard let s = UInt8(f[4]) else { return nil }; scope = s }
            if f[5] != "-" { guard let m = UInt32(f[5]) else { return nil }; metric = m }
        }
        self.init(destination: dst, interface: f[2] == "-" ? nil : f[2],
                  gateway: f[1] == "-" ? nil : IPAddress(f[1]), table: table, metric: metric, scope: scope)
    }
}
