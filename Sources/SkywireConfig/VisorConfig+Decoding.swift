import SkywireCrypto

extension VisorConfig {
    /// Parses and validates a config text. Every problem is collected, so one
    /// `ConfigError.invalid` lists them all; `sk` values are never echoed in messages.
    public static func parse(_ text: String) throws(ConfigError) -> VisorConfig {
        try parse(bytes: Array(text.utf8))
    }

    /// Parses and validates config bytes (UTF-8 JSON).
    public static func parse(bytes: [UInt8]) throws(ConfigError) -> VisorConfig {
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw .syntax(line: error.line, column: error.column, message: error.message)
        }
        var reader = ConfigReader()
        let config = reader.readConfig(json)
        guard reader.problems.isEmpty, let config else {
            throw .invalid(reader.problems)
        }
        return config
    }

    /// Legal but probably unintended settings; the visor logs them at `warning` and
    /// `skywire config check` prints them.
    public func warnings() -> [FieldProblem] {
        var out: [FieldProblem] = []
        if transport.stcprPort == 0 && transport.sudphPort == 0 && transport.peers.isEmpty && transport.dmsgServers.isEmpty {
            out.append(FieldProblem(path: "transport", message:
                "both listeners are disabled (stcpr_port and sudph_port are 0) and there are no peers: "
                + "this visor can neither reach nor be reached by anyone"))
        }
        if !transport.discovery.isEmpty && !transport.discovery.hasPrefix("http://") {
            out.append(FieldProblem(path: "transport.discovery",
                                    message: "the visor registers only with http:// discovery services; this one is not used"))
        }
        if transport.publicAddr != nil && transport.discovery.isEmpty {
            out.append(FieldProblem(path: "transport.public_addr", message: "set, but transport.discovery is empty: it is not advertised"))
        }
        if transport.publicAddr != nil && transport.stcprPort == 0 {
            out.append(FieldProblem(path: "transport.public_addr", message: "set, but the stcpr listener is disabled (stcpr_port is 0)"))
        }
        if !transport.country.isEmpty && transport.discovery.isEmpty {
            out.append(FieldProblem(path: "transport.country", message: "set, but transport.discovery is empty: nothing is registered"))
        }
        out += ui.warnings()
        return out
    }
}

/// JSON member names, in one place so decoding and encoding cannot drift apart.
enum Key {
    static let version = "version"
    static let sk = "sk"
    static let pk = "pk"
    static let transport = "transport"
    static let launcher = "launcher"
    static let cliAddr = "cli_addr"
    static let logLevel = "log_level"
    static let stateDir = "state_dir"
    static let ui = "ui"
    static let uiListen = "listen"

    static let stcprPort = "stcpr_port"
    static let sudphPort = "sudph_port"
    static let listenAddr = "listen_addr"
    static let peers = "peers"
    static let discovery = "discovery"
    static let country = "country"
    static let publicAddr = "public_addr"
    static let stcpr = "stcpr"
    static let sudph = "sudph"

    static let apps = "apps"
    static let name = "name"
    static let args = "args"
    static let autoStart = "auto_start"
    static let port = "port"
}

/// Limits checked on paths and ports.
enum Limits {
    /// `sockaddr_un.sun_path` is 108 bytes including the terminating NUL.
    static let maxUnixSocketPathBytes = 107
    static let listenerPorts = 0...Int(UInt16.max)
    static let appPorts = 1...Int(UInt16.max)
    /// Unknown member names within this edit distance of a known one get a suggestion.
    static let suggestionDistance = 2
    static let secretKeyHexLength = 128
    static let publicKeyHexLength = 64
}

/// Walks the JSON tree, checks every field and records every problem with its path.
struct ConfigReader {
    private(set) var problems: [FieldProblem] = []

    mutating func report(_ path: String, _ message: String) {
        problems.append(FieldProblem(path: path.isEmpty ? "(root)" : path, message: message))
    }

    // MARK: Document

    mutating func readConfig(_ json: JSONValue) -> VisorConfig? {
        let required = [Key.version, Key.sk, Key.pk, Key.transport, Key.launcher, Key.cliAddr, Key.logLevel, Key.stateDir]
        guard let root = object(json, at: "", known: required + [Key.ui], required: required) else { return nil }

        if let v = root[Key.version], let version = string(v, at: Key.version),
           version != VisorConfig.formatVersion {
            report(Key.version, "\"\(JSONValue.escaped(version))\" is not supported "
                   + "(this skywire reads version \"\(VisorConfig.formatVersion)\")")
        }
        let publicKey = root[Key.pk].flatMap { v in string(v, at: Key.pk) }.flatMap { publicKeyValue($0, at: Key.pk) }
        let keyPair = root[Key.sk].flatMap { v in string(v, at: Key.sk) }.flatMap { readSecretKey($0, publicKey: publicKey) }
        let transport = root[Key.transport].flatMap { readTransport($0, own: publicKey) }
        let launcher = root[Key.launcher].flatMap { readLauncher($0) }
        let cliAddr = root[Key.cliAddr].flatMap { v in string(v, at: Key.cliAddr) }.flatMap { s in
            absolutePath(s, at: Key.cliAddr, maxBytes: Limits.maxUnixSocketPathBytes)
        }
        let logLevel = root[Key.logLevel].flatMap { v in string(v, at: Key.logLevel) }.flatMap { s -> LogLevel? in
            guard let level = LogLevel(rawValue: s) else {
                report(Key.logLevel, "\"\(JSONValue.escaped(s))\" is not one of "
                       + LogLevel.allCases.map(\.rawValue).joined(separator: ", "))
                return nil
            }
            return level
        }
        let stateDir = root[Key.stateDir].flatMap { v in string(v, at: Key.stateDir) }.flatMap { s in
            absolutePath(s, at: Key.stateDir, maxBytes: nil)
        }
        let ui = root[Key.ui].map { readUI($0) } ?? UIConfig()
        guard let keyPair, let transport, let launcher, let cliAddr, let logLevel, let stateDir, let ui else { return nil }
        return VisorConfig(keyPair: keyPair, transport: transport, launcher: launcher,
                           cliAddr: cliAddr, logLevel: logLevel, stateDir: stateDir, ui: ui)
    }

    /// `sk`: 128 lowercase hex that must belong to `pk`; its value is never printed.
    private mutating func readSecretKey(_ hex: String, publicKey: PublicKey?) -> KeyPair? {
        guard hex.utf8.count == Limits.secretKeyHexLength, isLowercaseHex(hex) else {
            report(Key.sk, "not a \(Limits.secretKeyHexLength)-hex secret key")
            return nil
        }
        guard let publicKey else { return nil }  // pk is already reported
        do {
            return try KeyPair(secretKeyHex: hex, publicKey: publicKey)
        } catch {
            report(Key.sk, "does not match pk")
            return nil
        }
    }

    // MARK: transport

    private mutating func readTransport(_ json: JSONValue, own: PublicKey?) -> TransportConfig? {
        let path = Key.transport
        guard let obj = object(json, at: path,
                               known: [Key.stcprPort, Key.sudphPort, Key.listenAddr, Key.peers, Key.discovery, Key.country, Key.publicAddr,
                                       Key.dmsgServers],
                               required: [Key.stcprPort, Key.sudphPort, Key.listenAddr]) else { return nil }
        let stcpr = obj[Key.stcprPort].flatMap { integer($0, at: join(path, Key.stcprPort), in: Limits.listenerPorts) }
        let sudph = obj[Key.sudphPort].flatMap { integer($0, at: join(path, Key.sudphPort), in: Limits.listenerPorts) }
        let listenPath = join(path, Key.listenAddr)
        let listen = obj[Key.listenAddr].flatMap { string($0, at: listenPath) }.flatMap { s -> String? in
            guard HostPort.isIPv4(s) || HostPort.isIPv6(s) else {
                report(listenPath, "\"\(JSONValue.escaped(s))\" is not an IP address (use 0.0.0.0, ::, or a local address)")
                return nil
            }
            return s
        }
        let peers: [PublicKey: PeerAddresses]? = obj[Key.peers].map { readPeers($0, at: join(path, Key.peers), own: own) } ?? [:]
        let discoveryPath = join(path, Key.discovery)
        let discovery = obj[Key.discovery].map { v -> String? in
            guard let s = string(v, at: discoveryPath) else { return nil }
            if !s.isEmpty, let problem = urlProblem(s) {
                report(discoveryPath, "\"\(JSONValue.escaped(s))\" is not an http:// or https:// URL (\(problem))")
                return nil
            }
            return s
        } ?? ""
        let countryPath = join(path, Key.country)
        let country = obj[Key.country].map { v -> String? in
            guard let s = string(v, at: countryPath) else { return nil }
            let u = Array(s.utf8)
            guard s.isEmpty || (u.count == 2 && u.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") })) else {
                report(countryPath, "\"\(JSONValue.escaped(s))\" is not an ISO 3166-1 alpha-2 code (two uppercase letters, e.g. DE)")
                return nil
            }
            return s
        } ?? ""
        let publicPath = join(path, Key.publicAddr)
        var publicAddr: HostPort? = nil
        var publicAddrValid = true
        if let v = obj[Key.publicAddr] {
            if let s = string(v, at: publicPath) {
                switch HostPort.parse(s) {
                case .success(let hp): publicAddr = hp
                case .failure(let e):
                    report(publicPath, "\"\(JSONValue.escaped(s))\" is not HOST:PORT (\(e))")
                    publicAddrValid = false
                }
            } else {
                publicAddrValid = false
            }
        }
        let dmsgServers = obj[Key.dmsgServers].map { readDmsgServers($0, at: join(path, Key.dmsgServers), own: own) } ?? []
        guard let stcpr, let sudph, let listen, let peers, let discovery, let country, publicAddrValid,
              let dmsgServers else { return nil }
        return TransportConfig(stcprPort: UInt16(stcpr), sudphPort: UInt16(sudph), listenAddr: listen,
                               peers: peers, discovery: discovery, country: country, publicAddr: publicAddr,
                               dmsgServers: dmsgServers)
    }

    private mutating func readPeers(_ json: JSONValue, at path: String, own: PublicKey?) -> [PublicKey: PeerAddresses]? {
        guard case .object(let members) = json else {
            report(path, "expected an object mapping public keys to addresses, got \(json.typeName)")
            return nil
        }
        var out: [PublicKey: PeerAddresses] = [:]
        var ok = true
        var seen = Set<String>()
        for m in members {
            let peerPath = path + "[\"" + JSONValue.escaped(m.name) + "\"]"
            guard seen.insert(m.name).inserted else {
                report(peerPath, "duplicate peer")
                ok = false
                continue
            }
            let key = publicKeyValue(m.name, at: peerPath)
            if let key, key == own {
                report(peerPath, "is this visor's own public key (pk)")
                ok = false
            }
            let addresses = readPeerAddresses(m.value, at: peerPath)
            if let key, let addresses { out[key] = addresses } else { ok = false }
        }
        return ok ? out : nil
    }

    private mutating func readPeerAddresses(_ json: JSONValue, at path: String) -> PeerAddresses? {
        guard let obj = object(json, at: path, known: [Key.stcpr, Key.sudph], required: []) else { return nil }
        if obj[Key.stcpr] == nil && obj[Key.sudph] == nil {
            report(path, "needs at least one of \(Key.stcpr), \(Key.sudph)")
            return nil
        }
        var ok = true
        func address(_ name: String, _ reader: inout ConfigReader) -> HostPort? {
            guard let v = obj[name] else { return nil }
            let p = reader.join(path, name)
            guard let s = reader.string(v, at: p) else { ok = false; return nil }
            switch HostPort.parse(s) {
            case .success(let hp): return hp
            case .failure(let e):
                reader.report(p, "\"\(JSONValue.escaped(s))\" is not host:port (\(e))")
                ok = false
                return nil
            }
        }
        let stcpr = address(Key.stcpr, &self)
        let sudph = address(Key.sudph, &self)
        return ok ? PeerAddresses(stcpr: stcpr, sudph: sudph) : nil
    }

    // MARK: launcher

    private mutating func readLauncher(_ json: JSONValue) -> LauncherConfig? {
        let path = Key.launcher
        guard let obj = object(json, at: path, known: [Key.apps], required: [Key.apps]),
              let appsJSON = obj[Key.apps] else { return nil }
        let appsPath = join(path, Key.apps)
        guard case .array(let items) = appsJSON else {
            report(appsPath, "expected an array, got \(appsJSON.typeName)")
            return nil
        }
        var apps: [AppConfig] = []
        var ok = true
        var nameOwner: [AppName: Int] = [:]
        var portOwner: [Int: String] = [:]
        for (i, item) in items.enumerated() {
            let p = "\(appsPath)[\(i)]"
            guard let app = object(item, at: p, known: [Key.name, Key.args, Key.autoStart, Key.port],
                                   required: [Key.name, Key.port]) else { ok = false; continue }
            let namePath = join(p, Key.name)
            let name = app[Key.name].flatMap { string($0, at: namePath) }.flatMap { s -> AppName? in
                guard let n = AppName(rawValue: s) else {
                    report(namePath, "unknown app \"\(JSONValue.escaped(s))\" (known: "
                           + AppName.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                    return nil
                }
                if let first = nameOwner[n] {
                    report(namePath, "duplicate app \"\(n)\" (also \(appsPath)[\(first)])")
                    return nil
                }
                nameOwner[n] = i
                return n
            }
            let portPath = join(p, Key.port)
            let port = app[Key.port].flatMap { integer($0, at: portPath, in: Limits.appPorts) }.flatMap { port -> Int? in
                if let owner = portOwner[port] {
                    report(portPath, "port \(port) already used by \(owner)")
                    return nil
                }
                portOwner[port] = name.map { "\"\($0)\"" } ?? "\(p)"
                return port
            }
            let argsPath = join(p, Key.args)
            let args: [String]? = app[Key.args].map { readArgs($0, at: argsPath) } ?? []
            let autoStart: Bool? = app[Key.autoStart].map { boolean($0, at: join(p, Key.autoStart)) } ?? false
            if let name, let port, let args, let autoStart {
                apps.append(AppConfig(name: name, args: args, autoStart: autoStart, port: UInt16(port)))
            } else {
                ok = false
            }
        }
        return ok ? LauncherConfig(apps: apps) : nil
    }

    private mutating func readArgs(_ json: JSONValue, at path: String) -> [String]? {
        guard case .array(let items) = json else {
            report(path, "expected an array of strings, got \(json.typeName)")
            return nil
        }
        var out: [String] = []
        var ok = true
        for (i, item) in items.enumerated() {
            if let s = string(item, at: "\(path)[\(i)]") { out.append(s) } else { ok = false }
        }
        return ok ? out : nil
    }

    // MARK: Typed accessors

    func join(_ parent: String, _ key: String) -> String {
        parent.isEmpty ? key : parent + "." + key
    }

    /// An object's members by name. Reports a non-object, duplicate names, unknown names
    /// (typos must not be silently ignored) and missing required names.
    mutating func object(_ json: JSONValue, at path: String, known: [String], required: [String]) -> [String: JSONValue]? {
        guard case .object(let members) = json else {
            report(path, "expected an object, got \(json.typeName)")
            return nil
        }
        var out: [String: JSONValue] = [:]
        for m in members {
            let p = join(path, m.name)
            if !known.contains(m.name) {
                var message = "unknown field \"\(JSONValue.escaped(m.name))\""
                if let guess = closest(to: m.name, in: known) { message += " (did you mean \"\(guess)\"?)" }
                report(p, message)
            } else if out[m.name] != nil {
                report(p, "duplicate field")
            } else {
                out[m.name] = m.value
            }
        }
        for name in required where out[name] == nil {
            report(join(path, name), "missing (required)")
        }
        return out
    }

    mutating func string(_ json: JSONValue, at path: String) -> String? {
        guard case .string(let s) = json else {
            report(path, "expected a string, got \(json.typeName)")
            return nil
        }
        return s
    }

    mutating func boolean(_ json: JSONValue, at path: String) -> Bool? {
        guard case .bool(let b) = json else {
            report(path, "expected true or false, got \(json.typeName)")
            return nil
        }
        return b
    }

    /// An integer literal within `range`; fractions and exponents are rejected.
    mutating func integer(_ json: JSONValue, at path: String, in range: ClosedRange<Int>) -> Int? {
        guard case .number(let literal) = json else {
            report(path, "expected an integer, got \(json.typeName)")
            return nil
        }
        guard literal.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: "-") }) else {
            report(path, "\(literal) is not an integer")
            return nil
        }
        guard let n = Int(literal), range.contains(n) else {
            report(path, "\(literal) is not in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return n
    }

    /// A 64-lowercase-hex Ed25519 public key.
    mutating func publicKeyValue(_ hex: String, at path: String) -> PublicKey? {
        guard hex.utf8.count == Limits.publicKeyHexLength, isLowercaseHex(hex) else {
            report(path, "not a \(Limits.publicKeyHexLength)-hex public key"
                   + (isHex(hex) && hex.utf8.count == Limits.publicKeyHexLength ? " (use lowercase hex)" : ""))
            return nil
        }
        guard let key = try? PublicKey(hex: hex) else {
            report(path, "not a valid Ed25519 public key")
            return nil
        }
        return key
    }

    /// An absolute path without NUL bytes, at most `maxBytes` long when given.
    mutating func absolutePath(_ s: String, at path: String, maxBytes: Int?) -> String? {
        guard s.hasPrefix("/") else {
            report(path, "must be an absolute path, got \"\(JSONValue.escaped(s))\"")
            return nil
        }
        guard !s.utf8.contains(0) else {
            report(path, "must not contain a NUL character")
            return nil
        }
        if let maxBytes, s.utf8.count > maxBytes {
            report(path, "\(s.utf8.count) bytes is longer than the \(maxBytes)-byte limit of a unix socket path")
            return nil
        }
        return s
    }

    /// Why `s` is not `http(s)://host[:port][/...]` (RFC 3986 §3), or nil.
    func urlProblem(_ s: String) -> String? {
        let schemes = ["http://", "https://"]
        guard let scheme = schemes.first(where: { s.hasPrefix($0) }) else { return "unsupported scheme" }
        let rest = s.dropFirst(scheme.count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.contains("@") { return "user information is not allowed" }
        if rest.contains(where: { $0 == " " || $0.asciiValue.map { $0 < 0x20 } == true }) {
            return "contains spaces or control characters"
        }
        switch HostPort.parse(String(authority), portRequired: false) {
        case .success: return nil
        case .failure(let e): return e.description
        }
    }

    private func isLowercaseHex(_ s: String) -> Bool {
        s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    private func isHex(_ s: String) -> Bool {
        s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) }
    }

    /// The known name nearest to `name` by Levenshtein distance, if close enough.
    private func closest(to name: String, in known: [String]) -> String? {
        var best: (String, Int)?
        for k in known {
            let d = levenshtein(Array(name.utf8), Array(k.utf8))
            if d <= Limits.suggestionDistance && d < (best?.1 ?? Int.max) { best = (k, d) }
        }
        return best?.0
    }

    private func levenshtein(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
