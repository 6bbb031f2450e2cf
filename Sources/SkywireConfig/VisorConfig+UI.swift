/// `ui`: the visor's web UI (docs/ui.md). Optional in the file; absent means the default.
public struct UIConfig: Sendable, Equatable {
    /// Where the UI listens by default: loopback only.
    public static let defaultListen = HostPort(host: "127.0.0.1", port: 8000)

    /// The UI's TCP address (an IP literal and a port); nil: no UI (`"listen": ""`).
    public var listen: HostPort?

    public init(listen: HostPort? = UIConfig.defaultListen) {
        self.listen = listen
    }
}

extension ConfigReader {
    /// `ui`: `{"listen": "IP:PORT"}` or `{"listen": ""}` (off). A DNS name is refused: the UI
    /// binds, it does not dial, and a name could resolve to a public address unnoticed.
    mutating func readUI(_ json: JSONValue) -> UIConfig? {
        guard let obj = object(json, at: Key.ui, known: [Key.uiListen], required: []) else { return nil }
        guard let v = obj[Key.uiListen] else { return UIConfig() }
        let path = join(Key.ui, Key.uiListen)
        guard let s = string(v, at: path) else { return nil }
        if s.isEmpty { return UIConfig(listen: nil) }
        switch HostPort.parse(s) {
        case .success(let hp) where HostPort.isIPv4(hp.host) || HostPort.isIPv6(hp.host):
            return UIConfig(listen: hp)
        case .success:
            report(path, "\"\(JSONValue.escaped(s))\" must be an IP address and port (e.g. 127.0.0.1:8000), or \"\" for no UI")
        case .failure(let e):
            report(path, "\"\(JSONValue.escaped(s))\" is not IP:PORT (\(e)); use \"\" for no UI")
        }
        return nil
    }
}

extension UIConfig {
    /// A listener beyond loopback: allowed (a gateway's LAN address), but the UI is plain HTTP.
    func warnings() -> [FieldProblem] {
        guard let listen, !Self.isLoopback(listen.host) else { return [] }
        return [FieldProblem(path: "ui.listen", message:
            "\(listen) is reachable beyond this host; logins are required, but the UI is plain HTTP (no TLS): "
            + "passwords and session cookies cross that network unencrypted")]
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "::1" || host.hasPrefix("127.")
    }

    /// The `ui` member as written, or nil when it is the default (files without `ui` stay as they were).
    var jsonValue: JSONValue? {
        guard self != UIConfig() else { return nil }
        return .object([.init(name: Key.uiListen, value: .string(listen?.description ?? ""))])
    }
}
