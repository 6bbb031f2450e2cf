import Glibc
import SkywireConfig
import SkywireSystem

/// Points the system resolver at the tunnel's DNS servers and restores it exactly (docs/vpn.md §6).
/// With systemd-resolved (/etc/resolv.conf names its stub 127.0.0.53 and `resolvectl` exists)
/// the servers are set on the TUN link, which resolved forgets when the link goes away;
/// otherwise /etc/resolv.conf is saved byte for byte, rewritten in place and written back.
enum VPNDNS {
    static let resolvConf = "/etc/resolv.conf"
    static let resolvedStub = "127.0.0.53"
    static let resolvectlCandidates = ["/usr/bin/resolvectl", "/bin/resolvectl"]
    /// `SKYWIRE_RESOLVECTL` names another resolvectl (non-standard installs, and the tests'
    /// recording stand-in); the standard paths follow.
    static var resolvectl: String? {
        if let path = getenv("SKYWIRE_RESOLVECTL").map({ String(cString: $0) }), !path.isEmpty, FileIO.exists(path) {
            return path
        }
        return resolvectlCandidates.first(where: FileIO.exists)
    }
    static let backupName = "vpn-client.resolv.conf"

    /// Changes the resolver; `record(key, value)` is called with how to undo it *before* the
    /// change, so a crash at any point leaves a restorable state file.
    static func apply(servers: [IPAddress], tun: String, stateDirectory: String,
                      record: (String, String) throws -> Void) throws {
        let current = try FileIO.read(resolvConf)
        // Bytes, not `String.contains(String)`, which would link _StringProcessing (~0.95 MB).
        if let current, current.indices.contains(where: { current[$0...].starts(with: resolvedStub.utf8) }),
           let resolvectl = resolvectl {
            try record("resolved_link", tun)
            let r1 = try Subprocess.run(resolvectl, ["dns", tun] + servers.map(\.description))
            let r2 = try Subprocess.run(resolvectl, ["domain", tun, "~."])
            guard r1.status == 0, r2.status == 0 else {
                throw VPNError("resolvectl failed: \(r1.output) \(r2.output)")
            }
            return
        }
        let backup = stateDirectory + "/" + backupName
        if let current {
            try AtomicFile.write(current, to: backup, replace: true)
            try record("resolv_backup", backup)
        } else {
            try record("resolv_absent", resolvConf)
        }
        try FileIO.overwrite(resolvConf, Array(resolvText(servers).utf8))
    }

    /// Points the resolver set up by `apply` (as the state entries record) at other servers;
    /// the recorded way back stays as it is.
    static func update(servers: [IPAddress], tun: String, entries: [(key: String, value: String)]) throws {
        if entries.contains(where: { $0.key == "resolved_link" }) {
            guard let resolvectl else { throw VPNError("resolvectl is gone") }
            let r = try Subprocess.run(resolvectl, ["dns", tun] + servers.map(\.description))
            guard r.status == 0 else { throw VPNError("resolvectl failed: \(r.output)") }
        } else if entries.contains(where: { $0.key == "resolv_backup" || $0.key == "resolv_absent" }) {
            try FileIO.overwrite(resolvConf, Array(resolvText(servers).utf8))
        }
    }

    static func resolvText(_ servers: [IPAddress]) -> String {
        "# written by skywire vpn-client; restored when the VPN stops\n" + servers.map { "nameserver \($0)\n" }.joined()
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
            if let resolvectl {
                _ = try? Subprocess.run(resolvectl, ["revert", value])
            }
            return true
        default:
            return false
        }
    }
}
