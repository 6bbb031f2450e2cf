import SkywireCrypto

/// One entry of `transport.dmsg_servers`: a dmsg relay server the visor keeps a session with
/// (docs/config.md, docs/dmsg.md).
public struct DmsgServerAddress: Sendable, Equatable, Hashable {
    /// The relay server's public key (its Noise responder key: the session authenticates it).
    public var publicKey: PublicKey
    public var address: HostPort

    public init(publicKey: PublicKey, address: HostPort) {
        self.publicKey = publicKey
        self.address = address
    }
}

extension Key {
    static let dmsgServers = "dmsg_servers"
    static let addr = "addr"
}

extension Limits {
    /// Relay servers one config may list: a visor keeps a session with each (one TCP connection,
    /// one handshake and keepalive apiece), so the list stays short.
    static let maxDmsgServers = 16
}

extension ConfigReader {
    /// `transport.dmsg_servers`: an array of `{"pk": HEX, "addr": "HOST:PORT"}`, at most
    /// `Limits.maxDmsgServers`, no key twice, not this visor's own key.
    mutating func readDmsgServers(_ json: JSONValue, at path: String, own: PublicKey?) -> [DmsgServerAddress]? {
        guard case .array(let items) = json else {
            report(path, "expected an array of {\"pk\": KEY, \"addr\": \"HOST:PORT\"}, got \(json.typeName)")
            return nil
        }
        guard items.count <= Limits.maxDmsgServers else {
            report(path, "\(items.count) relay servers (at most \(Limits.maxDmsgServers))")
            return nil
        }
        var out: [DmsgServerAddress] = []
        var ok = true
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let obj = object(item, at: itemPath, known: [Key.pk, Key.addr], required: [Key.pk, Key.addr]) else {
                ok = false
                continue
            }
            let keyPath = join(itemPath, Key.pk), addrPath = join(itemPath, Key.addr)
            let key = obj[Key.pk].flatMap { string($0, at: keyPath) }.flatMap { publicKeyValue($0, at: keyPath) }
            var address: HostPort?
            if let s = obj[Key.addr].flatMap({ string($0, at: addrPath) }) {
                switch HostPort.parse(s) {
                case .success(let hp): address = hp
                case .failure(let e): report(addrPath, "\"\(JSONValue.escaped(s))\" is not HOST:PORT (\(e))")
                }
            }
            guard let key, let address else { ok = false; continue }
            if key == own {
                report(keyPath, "is this visor's own public key (pk)")
                ok = false
            } else if out.contains(where: { $0.publicKey == key }) {
                report(keyPath, "relay server listed twice")
                ok = false
            } else {
                out.append(DmsgServerAddress(publicKey: key, address: address))
            }
        }
        return ok ? out : nil
    }
}

extension VisorConfig {
    /// `transport.dmsg_servers` as JSON; nil when empty (the member is then left out).
    var dmsgServersJSON: JSONValue? {
        guard !transport.dmsgServers.isEmpty else { return nil }
        return .array(transport.dmsgServers.map { server in
            .object([JSONValue.Member(name: Key.pk, value: .string(server.publicKey.hex)),
                     JSONValue.Member(name: Key.addr, value: .string(server.address.description))])
        })
    }
}
