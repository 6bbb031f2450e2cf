import NIOCore
import SkywireConfig
import SkywireCrypto

/// One exposed port of the SkyNet server (`skynet srv start`): streams asking for `port` from a
/// key `whitelist` admits are connected to `target`.
public struct SkynetServerForward: Sendable, Equatable {
    public static let defaultTargetHost = "127.0.0.1"
    public static let defaultMaxConnections = 256

    public var name: String
    /// The port clients ask for (`--port`).
    public var port: UInt16
    /// Where connections go (`--target`, default 127.0.0.1:`port`): a local port or a host on the LAN.
    public var target: HostPort
    /// Who may connect (`--wl`): nobody unless keys are listed or `any` is given.
    public var whitelist: AppWhitelist
    /// Concurrent connections; further ones are answered `busy`.
    public var maxConnections: Int

    public init(name: String? = nil, port: UInt16, target: HostPort? = nil, whitelist: AppWhitelist = .nobody,
                maxConnections: Int = defaultMaxConnections) {
        self.name = name ?? "srv-\(port)"
        self.port = port
        self.target = target ?? HostPort(host: Self.defaultTargetHost, port: port)
        self.whitelist = whitelist
        self.maxConnections = maxConnections
    }
}

/// One client forward (`skynet start`): a local listener whose connections each become a stream to
/// port `remotePort` of the SkyNet server on visor `serverKeyHex`.
public struct SkynetClientForward: Sendable, Equatable {
    public static let defaultBindHost = "127.0.0.1"
    public static let defaultMaxConnections = 256

    public var name: String
    public var serverKeyHex: String
    public var remotePort: UInt16
    /// `--bind` (an IP literal, default loopback) and `--local`.
    public var bindHost: String
    public var localPort: UInt16
    public var maxConnections: Int

    public init(name: String? = nil, serverKeyHex: String, remotePort: UInt16, localPort: UInt16,
                bindHost: String = defaultBindHost, maxConnections: Int = defaultMaxConnections) {
        self.name = name ?? "fwd-\(localPort)"
        self.serverKeyHex = serverKeyHex
        self.remotePort = remotePort
        self.bindHost = bindHost
        self.localPort = localPort
        self.maxConnections = maxConnections
    }
}

/// The resolving proxy (`resolver up`): a SOCKS5 listener where `<pk>.skynet:PORT` reaches that
/// visor's SkyNet port, `skywire.skynet:PORT` this visor's, and every other name `upstream` (if set).
public struct SkynetResolverOptions: Sendable, Equatable {
    public static let defaultListen = HostPort(host: "127.0.0.1", port: 4446)
    public static let defaultMaxConnections = 1024

    public var listen: HostPort
    public var upstream: HostPort?
    public var maxConnections: Int

    public init(listen: HostPort = defaultListen, upstream: HostPort? = nil, maxConnections: Int = defaultMaxConnections) {
        self.listen = listen
        self.upstream = upstream
        self.maxConnections = maxConnections
    }
}

/// The `skynet` app's options (config `args`, docs/skynet.md): any number of `srv ...` and
/// `client ...` groups and at most one `resolver ...`, e.g.
/// `["srv", "--port", "8080", "--wl", "PK", "client", "--pk", "PK", "--remote", "80", "--local", "9000"]`.
/// No groups: the app runs and exposes nothing.
public struct SkynetOptions: Sendable, Equatable {
    public var servers: [SkynetServerForward] = []
    public var clients: [SkynetClientForward] = []
    public var resolver: SkynetResolverOptions?

    public init(servers: [SkynetServerForward] = [], clients: [SkynetClientForward] = [],
                resolver: SkynetResolverOptions? = nil) {
        self.servers = servers
        self.clients = clients
        self.resolver = resolver
    }

    /// Longest forward name; names are letters, digits, `.`, `_` and `-`.
    public static let maxNameLength = 64
    static let verbs: Set<String> = ["srv", "client", "resolver"]

    /// Whom the app admits, over every server forward: `any` if one forward is open to every key,
    /// else the union of the listed keys (empty: nobody). Nil when nothing is exposed (only client
    /// forwards or the resolver: the app serves no other visor).
    public var whitelist: AppWhitelist? {
        guard !servers.isEmpty else { return nil }
        var keys = Set<PublicKey>()
        for forward in servers {
            switch forward.whitelist {
            case .anyone: return .anyone
            case .keys(let k): keys.formUnion(k)
            }
        }
        return .keys(keys)
    }

    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkynetOptions {
        var options = SkynetOptions()
        for (verb, rest) in try groups(arguments) {
            switch verb {
            case "srv": try options.add(server: try SkynetServerForward.parse(rest))
            case "client": try options.add(client: try SkynetClientForward.parse(rest))
            default:
                guard options.resolver == nil else { throw SkysocksArgumentError("skynet: more than one resolver group") }
                options.resolver = try SkynetResolverOptions.parse(rest)
            }
        }
        return options
    }

    /// Adds a server forward; its name and port must be new.
    public mutating func add(server: SkynetServerForward) throws(SkysocksArgumentError) {
        if servers.contains(where: { $0.name == server.name }) { throw SkysocksArgumentError("skynet: a server forward is already named \"\(server.name)\"") }
        if servers.contains(where: { $0.port == server.port }) { throw SkysocksArgumentError("skynet: port \(server.port) is already exposed") }
        servers.append(server)
    }

    /// Adds a client forward; its name and local address must be new.
    public mutating func add(client: SkynetClientForward) throws(SkysocksArgumentError) {
        if clients.contains(where: { $0.name == client.name }) { throw SkysocksArgumentError("skynet: a client forward is already named \"\(client.name)\"") }
        if clients.contains(where: { $0.localPort == client.localPort && $0.bindHost == client.bindHost }) {
            throw SkysocksArgumentError("skynet: \(client.bindHost):\(client.localPort) is already forwarded")
        }
        clients.append(client)
    }

    /// The argument form (`apps ls` shows it): `parse` of it gives these options back.
    public var arguments: [String] {
        servers.flatMap(\.arguments) + clients.flatMap(\.arguments) + (resolver?.arguments ?? [])
    }

    /// Splits at the verbs: a verb stands where an option name is expected (every option takes a value).
    static func groups(_ arguments: [String]) throws(SkysocksArgumentError) -> [(String, [String])] {
        var out: [(String, [String])] = []
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            if verbs.contains(word) {
                out.append((word, []))
                index += 1
                continue
            }
            guard !out.isEmpty else {
                throw SkysocksArgumentError("skynet: arguments start with srv, client or resolver, not '\(word)'")
            }
            let width = word.hasPrefix("--") && word.contains("=") ? 1 : 2
            out[out.count - 1].1 += arguments[index..<min(index + width, arguments.count)]
            index += width
        }
        return out
    }

    static func name(_ value: String, option: String) throws(SkysocksArgumentError) -> String {
        let allowed = value.utf8.allSatisfy { c in
            (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x2E || c == 0x5F || c == 0x2D
        }
        guard !value.isEmpty, value.utf8.count <= maxNameLength, allowed else {
            throw SkysocksArgumentError("\(option): '\(value)' is not a name (1-\(maxNameLength) letters, digits, '.', '_', '-')")
        }
        return value
    }

    static func port(_ value: String, option: String) throws(SkysocksArgumentError) -> UInt16 {
        guard let port = UInt16(value), port > 0 else { throw SkysocksArgumentError("\(option) needs a port 1-65535, got '\(value)'") }
        return port
    }

    static func hostPort(_ value: String, option: String) throws(SkysocksArgumentError) -> HostPort {
        switch HostPort.parse(value) {
        case .success(let hp) where hp.port != 0: return hp
        case .success: throw SkysocksArgumentError("\(option): '\(value)' needs a port 1-65535")
        case .failure(let e): throw SkysocksArgumentError("\(option): '\(value)': \(e)")
        }
    }

    static func render(_ hp: HostPort) -> String { hp.host.contains(":") ? "[\(hp.host)]:\(hp.port)" : "\(hp.host):\(hp.port)" }
}

extension SkynetServerForward {
    /// `--port N` (required), `--name NAME`, `--target HOST:PORT`, `--wl PK,...|any` (also
    /// `--whitelist`, `-w`; repeatable; none: nobody), `--max-connections N`.
    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkynetServerForward {
        var scanner = SkysocksArgumentScanner(arguments)
        var name: String?, port: UInt16?, target: HostPort?, whitelist: [String] = []
        var cap = defaultMaxConnections
        while let (option, value) = try scanner.next() {
            switch option {
            case "--port": port = try SkynetOptions.port(value, option: option)
            case "--name": name = try SkynetOptions.name(value, option: option)
            case "--target": target = try SkynetOptions.hostPort(value, option: option)
            case "--wl", "--whitelist", "-w": whitelist.append(value)
            case "--max-connections": cap = try SkysocksArgumentScanner.count(value, option: option)
            default: throw SkysocksArgumentError("unknown skynet srv option '\(option)'")
            }
        }
        guard let port else { throw SkysocksArgumentError("skynet srv needs --port N") }
        let admitted: AppWhitelist
        do { admitted = try AppWhitelist(parsing: whitelist, option: "--wl") } catch { throw SkysocksArgumentError(error.message) }
        return SkynetServerForward(name: name, port: port, target: target, whitelist: admitted, maxConnections: cap)
    }

    public var arguments: [String] {
        var a = ["srv", "--port", "\(port)", "--name", name]
        if target != HostPort(host: Self.defaultTargetHost, port: port) { a += ["--target", SkynetOptions.render(target)] }
        switch whitelist {
        case .anyone: a += ["--wl", AppWhitelist.anyToken]
        case .keys(let keys) where !keys.isEmpty: a += ["--wl", whitelist.sortedKeys.map(\.hex).joined(separator: ",")]
        case .keys: break
        }
        if maxConnections != Self.defaultMaxConnections { a += ["--max-connections", "\(maxConnections)"] }
        return a
    }
}

extension SkynetClientForward {
    /// `--pk PK`, `--remote N`, `--local N` (required), `--bind ADDR` (an IP literal, default
    /// 127.0.0.1), `--name NAME`, `--max-connections N`.
    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkynetClientForward {
        var scanner = SkysocksArgumentScanner(arguments)
        var name: String?, key: String?, remote: UInt16?, local: UInt16?
        var bind = defaultBindHost, cap = defaultMaxConnections
        while let (option, value) = try scanner.next() {
            switch option {
            case "--pk", "-k": key = try SkysocksArgumentScanner.publicKey(value, option: option)
            case "--remote": remote = try SkynetOptions.port(value, option: option)
            case "--local": local = try SkynetOptions.port(value, option: option)
            case "--bind":
                let host = value.hasPrefix("[") && value.hasSuffix("]") ? String(value.dropFirst().dropLast()) : value
                guard Socks5Address(ipLiteral: host) != nil else { throw SkysocksArgumentError("--bind: '\(value)' is not an IP address") }
                bind = host
            case "--name": name = try SkynetOptions.name(value, option: option)
            case "--max-connections": cap = try SkysocksArgumentScanner.count(value, option: option)
            default: throw SkysocksArgumentError("unknown skynet client option '\(option)'")
            }
        }
        guard let key, let remote, let local else { throw SkysocksArgumentError("skynet client needs --pk PK --remote N --local N") }
        return SkynetClientForward(name: name, serverKeyHex: key, remotePort: remote, localPort: local, bindHost: bind,
                                   maxConnections: cap)
    }

    public var arguments: [String] {
        var a = ["client", "--pk", serverKeyHex, "--remote", "\(remotePort)", "--local", "\(localPort)", "--name", name]
        if bindHost != Self.defaultBindHost { a += ["--bind", bindHost] }
        if maxConnections != Self.defaultMaxConnections { a += ["--max-connections", "\(maxConnections)"] }
        return a
    }
}

extension SkynetResolverOptions {
    /// `--addr HOST:PORT` (an IP literal, default 127.0.0.1:4446), `--upstream HOST:PORT`, `--max-connections N`.
    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkynetResolverOptions {
        var scanner = SkysocksArgumentScanner(arguments)
        var options = SkynetResolverOptions()
        while let (option, value) = try scanner.next() {
            switch option {
            case "--addr", "-a":
                let (host, port) = try SkysocksClientOptions.parseHostPort(value, option: option)
                options.listen = HostPort(host: host, port: UInt16(port))
            case "--upstream": options.upstream = try SkynetOptions.hostPort(value, option: option)
            case "--max-connections": options.maxConnections = try SkysocksArgumentScanner.count(value, option: option)
            default: throw SkysocksArgumentError("unknown skynet resolver option '\(option)'")
            }
        }
        return options
    }

    public var arguments: [String] {
        var a = ["resolver"]
        if listen != Self.defaultListen { a += ["--addr", SkynetOptions.render(listen)] }
        if let upstream { a += ["--upstream", SkynetOptions.render(upstream)] }
        if maxConnections != Self.defaultMaxConnections { a += ["--max-connections", "\(maxConnections)"] }
        return a
    }
}
