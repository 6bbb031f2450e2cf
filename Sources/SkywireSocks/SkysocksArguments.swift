import NIOCore
import SkywireConfig

/// A bad app argument, with a message fit for the user.
public struct SkysocksArgumentError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Splits `--name value`, `--name=value` and `-k value` arguments.
struct SkysocksArgumentScanner {
    private var arguments: [String]
    private var index = 0

    init(_ arguments: [String]) { self.arguments = arguments }

    /// Options that take their value only as `--name=value`; alone they mean `--name=true`.
    static let flags: Set<String> = ["--secure"]

    /// The next option name and its value; nil at the end.
    mutating func next() throws(SkysocksArgumentError) -> (name: String, value: String)? {
        guard index < arguments.count else { return nil }
        let argument = arguments[index]
        index += 1
        guard argument.hasPrefix("-"), argument.count > 1 else {
            throw SkysocksArgumentError("unexpected argument '\(argument)'")
        }
        if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
            return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
        }
        if Self.flags.contains(argument) { return (argument, "true") }
        guard index < arguments.count else { throw SkysocksArgumentError("option \(argument) needs a value") }
        let value = arguments[index]
        index += 1
        return (argument, value)
    }

    static func seconds(_ value: String, option: String) throws(SkysocksArgumentError) -> TimeAmount {
        guard let seconds = Double(value), seconds > 0, seconds <= 3600 else {
            throw SkysocksArgumentError("\(option) needs a number of seconds between 0 and 3600, got '\(value)'")
        }
        return .nanoseconds(Int64(seconds * 1_000_000_000))
    }

    /// `true` or `false` (the VPN's `--secure` spelling).
    static func boolean(_ value: String, option: String) throws(SkysocksArgumentError) -> Bool {
        guard let flag = Bool(value) else {
            throw SkysocksArgumentError("\(option) takes true or false, not '\(value)'")
        }
        return flag
    }

    static func count(_ value: String, option: String) throws(SkysocksArgumentError) -> Int {
        guard let count = Int(value), count > 0, count <= 1_000_000 else {
            throw SkysocksArgumentError("\(option) needs a positive count, got '\(value)'")
        }
        return count
    }

    /// A visor public key: 64 hex characters, returned lowercased.
    static func publicKey(_ value: String, option: String) throws(SkysocksArgumentError) -> String {
        let key = value.lowercased()
        guard key.utf8.count == 64, key.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw SkysocksArgumentError("\(option): '\(value)' is not a visor public key (64 hex characters)")
        }
        return key
    }
}

extension SkysocksServerOptions {
    /// Parses the `skysocks` arguments:
    /// `--whitelist PK[,PK...]` or `--whitelist any` (repeatable; missing or empty: nobody, `AppWhitelist`), `--user NAME --pass PASSWORD`, `--handshake-timeout SECONDS`,
    /// `--connect-timeout SECONDS`, `--max-sessions N`, `--secure[=true|false]` (default true: refuse
    /// destinations in the exit's own, private, link-local, multicast and reserved ranges and the
    /// exit's own addresses, docs/socks.md; `--secure=false` allows them).
    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkysocksServerOptions {
        var options = SkysocksServerOptions()
        var scanner = SkysocksArgumentScanner(arguments)
        var user: String?
        var pass: String?
        var whitelist: [String] = []
        while let (name, value) = try scanner.next() {
            switch name {
            case "--whitelist", "-w": whitelist.append(value)
            case "--user", "-u": user = value
            case "--pass", "-p": pass = value
            case "--handshake-timeout": options.handshakeTimeout = try SkysocksArgumentScanner.seconds(value, option: name)
            case "--connect-timeout": options.connectTimeout = try SkysocksArgumentScanner.seconds(value, option: name)
            case "--max-sessions": options.maxSessions = try SkysocksArgumentScanner.count(value, option: name)
            case "--secure": options.secure = try SkysocksArgumentScanner.boolean(value, option: name)
            default: throw SkysocksArgumentError("unknown skysocks option '\(name)'")
            }
        }
        do { options.whitelist = try AppWhitelist(parsing: whitelist) } catch { throw SkysocksArgumentError(error.message) }
        switch (user, pass) {
        case (nil, nil):
            break
        case (let user?, let pass?):
            let u = Array(user.utf8), p = Array(pass.utf8)
            guard (1...Socks5.maxShortLength).contains(u.count), (1...Socks5.maxShortLength).contains(p.count) else {
                throw SkysocksArgumentError("--user and --pass must each be 1 to 255 bytes (RFC 1929)")
            }
            options.credentials = Socks5Credentials(username: u, password: p)
        default:
            throw SkysocksArgumentError("--user and --pass go together")
        }
        return options
    }
}

extension SkysocksClientOptions {
    /// Parses the `skysocks-client` arguments: `-k/--pk SERVER_PK` (required), `--addr HOST:PORT`
    /// (default 127.0.0.1:1080; IPv6 as `[::1]:1080`), `--server-port N` (default 3),
    /// `--max-connections N`, `--handshake-timeout SECONDS`.
    public static func parse(_ arguments: [String]) throws(SkysocksArgumentError) -> SkysocksClientOptions {
        var scanner = SkysocksArgumentScanner(arguments)
        var key: String?
        var options = SkysocksClientOptions(serverKeyHex: "")
        while let (name, value) = try scanner.next() {
            switch name {
            case "-k", "--pk", "--srv":
                key = try SkysocksArgumentScanner.publicKey(value, option: name)
            case "--addr", "-a":
                (options.listenHost, options.listenPort) = try parseHostPort(value, option: name)
            case "--server-port":
                guard let port = UInt16(value), port > 0 else {
                    throw SkysocksArgumentError("\(name) needs a port 1-65535, got '\(value)'")
                }
                options.serverPort = port
            case "--max-connections":
                options.maxConnections = try SkysocksArgumentScanner.count(value, option: name)
            case "--handshake-timeout":
                options.handshakeTimeout = try SkysocksArgumentScanner.seconds(value, option: name)
            default:
                throw SkysocksArgumentError("unknown skysocks-client option '\(name)'")
            }
        }
        guard let key else { throw SkysocksArgumentError("skysocks-client needs the server visor's key: -k PK") }
        options.serverKeyHex = key
        return options
    }

    /// The options `proxy.start` gives (docs/cli.md): the server's key and, optionally, the
    /// listen address, each checked as `parse` checks `-k` and `--addr`.
    public init(server: String, addr: String? = nil) throws(SkysocksArgumentError) {
        self.init(serverKeyHex: try SkysocksArgumentScanner.publicKey(server, option: "-k"))
        if let addr { (listenHost, listenPort) = try Self.parseHostPort(addr, option: "--addr") }
    }

    /// The argument form of these options (`apps ls` shows it): `parse` of it gives them back.
    public var arguments: [String] {
        var a = ["-k", serverKeyHex]
        if listenHost != Self.defaultListenHost || listenPort != Self.defaultListenPort {
            let host = listenHost.contains(":") ? "[\(listenHost)]" : listenHost
            a += ["--addr", "\(host):\(listenPort)"]
        }
        if serverPort != SkysocksServerOptions.defaultAppPort { a += ["--server-port", "\(serverPort)"] }
        if maxConnections != Self.defaultMaxConnections { a += ["--max-connections", "\(maxConnections)"] }
        if handshakeTimeout != SkysocksServerOptions.defaultHandshakeTimeout {
            a += ["--handshake-timeout", "\(Double(handshakeTimeout.nanoseconds) / Self.nanosecondsPerSecond)"]
        }
        return a
    }

    static let nanosecondsPerSecond = 1e9

    /// `HOST:PORT` or `[IPv6]:PORT`; HOST must be an IP literal or `localhost`.
    static func parseHostPort(_ value: String, option: String) throws(SkysocksArgumentError) -> (String, Int) {
        let host: Substring
        let portText: Substring
        if value.hasPrefix("[") {
            guard let close = value.firstIndex(of: "]"), value[value.index(after: close)...].hasPrefix(":") else {
                throw SkysocksArgumentError("\(option): '\(value)' is not [IPv6]:PORT")
            }
            host = value[value.index(after: value.startIndex)..<close]
            portText = value[value.index(close, offsetBy: 2)...]
        } else {
            guard let colon = value.lastIndex(of: ":") else {
                throw SkysocksArgumentError("\(option): '\(value)' is not HOST:PORT")
            }
            host = value[..<colon]
            portText = value[value.index(after: colon)...]
        }
        guard let port = UInt16(portText) else {
            throw SkysocksArgumentError("\(option): bad port in '\(value)'")
        }
        let hostString = host == "localhost" ? "127.0.0.1" : String(host)
        guard Socks5Address(ipLiteral: hostString) != nil else {
            throw SkysocksArgumentError("\(option): '\(host)' is not an IP address")
        }
        return (hostString, Int(port))
    }
}
