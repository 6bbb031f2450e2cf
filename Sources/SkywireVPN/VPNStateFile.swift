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
        try FileIO.writeAtomically(path, Array(entries.map { "\($0.key)=\($0.value)\n" }.joined().utf8))
    }

    func remove() { try? FileIO.remove(path) }
}

extension RouteSpec {
    /// `DEST GATEWAY|- DEV|- TABLE` for the state file.
    var stateValue: String {
        "\(destination) \(gateway?.description ?? "-") \(interface ?? "-") \(table)"
    }

    init?(stateValue: String) {
        let f = stateValue.split(separator: " ").map(String.init)
        guard f.count == 4, let dst = IPPrefix(f[0]), let table = UInt32(f[3]) else { return nil }
        self.init(destination: dst, interface: f[2] == "-" ? nil : f[2],
                  gateway: f[1] == "-" ? nil : IPAddress(f[1]), table: table)
    }
}
