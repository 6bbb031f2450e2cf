import SkywireSystem

/// Points the system resolver at the tunnel's DNS servers and restores it exactly (docs/vpn.md §6).
/// With systemd-resolved (/etc/resolv.conf names its stub 127.0.0.53 and `resolvectl` exists)
/// the servers are set on the TUN link, which resolved forgets when the link goes away;
/// otherwise /etc/resolv.conf is saved byte for byte, rewritten in place and written back.
enum VPNDNS {
    static let resolvConf = "/etc/resolv.conf"
    static let resolvedStub = "127.0.0.53"
    static let resolvectlCandidates = ["/usr/bin/resolvectl", "/bin/resolvectl"]
    static let backupName = "vpn-client.resolv.conf"

    /// State-file entries describing how to undo the change.
    static func apply(servers: [IPAddress], tun: String, stateDirectory: String) throws -> [(key: String, value: String)] {
        let current = try FileIO.read(resolvConf)
        if let current, String(decoding: current, as: UTF8.self).contains(resolvedStub),
           let resolvectl = resolvectlCandidates.first(where: FileIO.exists) {
            let r1 = try Subprocess.run(resolvectl, ["dns", tun] + servers.map(\.description))
            let r2 = try Subprocess.run(resolvectl, ["domain", tun, "~."])
            guard r1.status == 0, r2.status == 0 else {
                throw VPNError("resolvectl failed: \(r1.output) \(r2.output)")
            }
            return [("resolved_link", tun)]
        }
        let backup = stateDirectory + "/" + backupName
        var entries: [(key: String, value: String)]
        if let current {
            try FileIO.writeAtomically(backup, current)
            entries = [("resolv_backup", backup)]
        } else {
            entries = [("resolv_absent", resolvConf)]
        }
        let text = "# written by skywire vpn-client; restored when the VPN stops\n"
            + servers.map { "nameserver \($0)\n" }.joined()
        try FileIO.overwrite(resolvConf, Array(text.utf8))
        return entries
    }

    /// Undoes one state-file entry; true when the key was a DNS one.
    static func restore(key: String, value: String) throws -> Bool {
        switch key {
        case "resolv_backup":
            guard let bytes = try FileIO.read(value) else { throw VPNError("DNS backup \(value) is missing") }
            try FileIO.overwrite(resolvConf, bytes)
            try FileIO.remove(value)
            return true
        case "resolv_absent":
            try FileIO.remove(resolvConf)
            return true
        case "resolved_link":
            if let resolvectl = resolvectlCandidates.first(where: FileIO.exists) {
                _ = try? Subprocess.run(resolvectl, ["revert", value])
            }
            return true
        default:
            return false
        }
    }
}
