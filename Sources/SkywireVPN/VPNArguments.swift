import SkywireConfig
import SkywireCrypto
import SkywireSystem

/// `vpn-server` arguments: `--whitelist PK1,PK2` or `--whitelist any` (repeatable; missing or
/// empty: nobody, `AppWhitelist`), `--secure=true|false` (default true), `-i/--netifc IFACE`
/// (default: the interface of the only default route; a plain interface name, `checkInterface`),
/// `--dns IP[,IP]` (announced to clients; default none), `--dns6 IP[,IP]` (IPv6 DNS servers
/// announced in IPV6_LEASE), `--ipv6-prefix PREFIX/64` (a prefix routed to the exit: clients get
/// addresses in it, forwarded without NAT66; default a ULA /64 of this exit, NAT66).
public struct VPNServerArguments: Equatable, Sendable {
    public var whitelist = AppWhitelist.nobody
    public var secure = true
    public var exitInterface: String?
    public var dns: [IPAddress] = []
    public var dns6: [IPAddress] = []
    /// A routed IPv6 prefix (a /64) for the clients instead of the ULA /64 with NAT66.
    public var ipv6Prefix: IPPrefix?
    /// The prefix length of the clients' IPv6 network (the ULA and a routed prefix).
    public static let ipv6PrefixLength = 64

    public init() {}

    public init(parsing args: [String]) throws(VPNArgumentError) {
        var it = ArgumentCursor(args)
        var whitelistValues: [String] = []
        var secure = true
        var netifc: String?, dns: String?, dns6: String?, prefix6: String?
        while let arg = it.next() {
            switch arg.name {
            case "--whitelist", "-w":
                whitelistValues.append(try it.value(for: arg))
            case "--secure":
                let value = arg.inline ?? "true"
                guard let b = Bool(value) else { throw VPNArgumentError("--secure takes true or false, not \"\(value)\"") }
                secure = b
            case "--netifc", "-i": netifc = try it.value(for: arg)
            case "--dns": dns = try it.value(for: arg)
            case "--dns6": dns6 = try it.value(for: arg)
            case "--ipv6-prefix": prefix6 = try it.value(for: arg)
            default:
                throw VPNArgumentError("unknown vpn-server argument \"\(arg.raw)\" (--whitelist, --secure, --netifc, --dns, --dns6, --ipv6-prefix)")
            }
        }
        try self.init(whitelist: whitelistValues, secure: secure, netifc: netifc, dns: dns, dns6: dns6, ipv6Prefix: prefix6)
    }

    /// The options from their values, as `vpn.server.start` gives them (docs/cli.md) and as
    /// `init(parsing:)` collects them: each value is checked here, once.
    public init(whitelist values: [String], secure: Bool = true, netifc: String? = nil, dns: String? = nil,
                dns6: String? = nil, ipv6Prefix: String? = nil) throws(VPNArgumentError) {
        if let netifc {
            try VPNArgumentError.checkInterface(netifc, option: "-i/--netifc", reserved: [VPNServer.tunName])
            exitInterface = netifc
        }
        if let dns { self.dns = try VPNArgumentError.addresses(dns, option: "--dns") }
        if let dns6 { self.dns6 = try VPNArgumentError.addresses(dns6, option: "--dns6", family: .v6) }
        if let ipv6Prefix {
            guard let p = IPPrefix(ipv6Prefix), p.family == .v6, p.length == Self.ipv6PrefixLength, p.network == p,
                  p.address.nonPublicRange == nil || p.address.nonPublicRange?.kind == .uniqueLocal else {
                throw VPNArgumentError("--ipv6-prefix: \"\(ipv6Prefix)\" is not a global or unique-local IPv6 network of length /\(Self.ipv6PrefixLength)")
            }
            self.ipv6Prefix = p
        }
        self.secure = secure
        do { whitelist = try AppWhitelist(parsing: values) } catch { throw VPNArgumentError(error.message) }
    }

    /// The argument form of these options (`apps ls` shows it): `init(parsing:)` of it gives them back.
    public var arguments: [String] {
        var a: [String] = []
        switch whitelist {
        case .anyone: a += [AppWhitelist.option, AppWhitelist.anyToken]
        case .keys(let keys) where !keys.isEmpty: a += [AppWhitelist.option, keys.map(\.hex).sorted().joined(separator: ",")]
        case .keys: break
        }
        if !secure { a.append("--secure=false") }
        if let exitInterface { a += ["--netifc", exitInterface] }
        if !dns.isEmpty { a += ["--dns", dns.map(\.description).joined(separator: ",")] }
        if !dns6.isEmpty { a += ["--dns6", dns6.map(\.description).joined(separator: ",")] }
        if let ipv6Prefix { a += ["--ipv6-prefix", ipv6Prefix.description] }
        return a
    }
}

/// `vpn-client` arguments: `-k/--pk PK` (required), `--killswitch[=true|false]`, `--dns IP`,
/// and the gateway role's `--lan IFACE [--lan-subnet ADDR/LEN] [--bypass MAC|IP,...]
/// [--uplink IFACE] [--dhcp-range FIRST-LAST]` (docs/gateway.md).
public struct VPNClientArguments: Equatable, Sendable {
    public var server: PublicKey
    public var killSwitch = false
    public var dns: [IPAddress] = []
    /// Set in the gateway role.
    public var gateway: VPNGatewayOptions?

    public init(server: PublicKey) { self.server = server }

    public init(parsing args: [String]) throws(VPNArgumentError) {
        var it = ArgumentCursor(args)
        var server: PublicKey?
        var killSwitch = false
        var dns: [IPAddress] = []
        var lan: String?, subnet: String?, uplink: String?, range: String?
        var bypass: [String] = []
        while let arg = it.next() {
            switch arg.name {
            case "--lan": lan = try it.value(for: arg)
            case "--lan-subnet": subnet = try it.value(for: arg)
            case "--bypass": bypass.append(try it.value(for: arg))
            case "--uplink": uplink = try it.value(for: arg)
            case "--dhcp-range": range = try it.value(for: arg)
            case "-k", "--pk", "--srv":
                let value = try it.value(for: arg)
                guard let pk = try? PublicKey(hex: value) else {
                    throw VPNArgumentError("-k: \"\(value)\" is not a public key (64 lowercase hex)")
                }
                server = pk
            case "--killswitch":
                let value = arg.inline ?? "true"
                guard let b = Bool(value) else { throw VPNArgumentError("--killswitch takes true or false, not \"\(value)\"") }
                killSwitch = b
            case "--dns":
                dns = try Self.dnsServers(try it.value(for: arg))
            default:
                throw VPNArgumentError("unknown vpn-client argument \"\(arg.raw)\" (-k, --killswitch, --dns, --lan, --lan-subnet, --bypass, --uplink, --dhcp-range)")
            }
        }
        guard let server else { throw VPNArgumentError("vpn-client needs -k PK (the server visor's public key)") }
        try self.init(server: server, killSwitch: killSwitch, dns: dns, lan: lan, lanSubnet: subnet,
                      bypass: bypass, uplink: uplink, dhcpRange: range)
    }

    /// The options from their values, as `vpn.start` gives them (docs/cli.md) and as
    /// `init(parsing:)` collects them: the gateway flags are checked here, once.
    public init(server: PublicKey, killSwitch: Bool = false, dns: [IPAddress] = [], lan: String? = nil,
                lanSubnet: String? = nil, bypass: [String] = [], uplink: String? = nil,
                dhcpRange: String? = nil) throws(VPNArgumentError) {
        self.server = server
        self.killSwitch = killSwitch
        self.dns = dns
        gateway = try VPNGatewayOptions.from(lan: lan, subnet: lanSubnet, bypass: bypass, uplink: uplink, range: dhcpRange)
    }

    /// `--dns IP[,IP]` as both edges take it.
    public static func dnsServers(_ value: String) throws(VPNArgumentError) -> [IPAddress] {
        try VPNArgumentError.addresses(value, option: "--dns")
    }

    /// The argument form of these options (`apps ls` shows it): `init(parsing:)` of it gives them back.
    public var arguments: [String] {
        var a = ["-k", server.hex]
        if killSwitch { a.append("--killswitch") }
        if !dns.isEmpty { a += ["--dns", dns.map(\.description).joined(separator: ",")] }
        if let g = gateway {
            a += ["--lan", g.lan, "--lan-subnet", g.lanAddress.description]
            if g.hasBypass { a += ["--bypass", (g.bypassMACs + g.bypassIPs.map(\.description)).joined(separator: ",")] }
            if let uplink = g.uplink { a += ["--uplink", uplink] }
            a += ["--dhcp-range", "\(g.dhcpFirst)-\(g.dhcpLast)"]
        }
        return a
    }
}

public struct VPNArgumentError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// Linux caps interface names at IFNAMSIZ - 1 bytes.
    static let maxInterfaceName = 15
    static let interfaceNamePunctuation = "-_.@"

    /// An interface name as the kernel takes it (`dev_valid_name`: 1...15 bytes, not `.` or
    /// `..`), narrowed to ASCII letters, digits and `-_.@`, so that it can be quoted into an nft
    /// script or a command line as it is; `lo` and the names in `reserved` (the app's own TUN)
    /// are refused too.
    static func checkInterface(_ name: String, option: String, reserved: [String]) throws(VPNArgumentError) {
        guard !name.isEmpty, name.utf8.count <= maxInterfaceName, name != ".", name != "..",
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || interfaceNamePunctuation.contains($0)) }) else {
            throw VPNArgumentError("\(option): \"\(name)\" is not an interface name (1...\(maxInterfaceName) of A-Z a-z 0-9 \(interfaceNamePunctuation.map(String.init).joined(separator: " ")))")
        }
        guard name != "lo", !reserved.contains(name) else {
            throw VPNArgumentError("\(option): \"\(name)\" cannot be used (it is \(name == "lo" ? "loopback" : "the tunnel"))")
        }
    }

    static func addresses(_ value: String, option: String, family: IPAddress.Family = .v4) throws(VPNArgumentError) -> [IPAddress] {
        var out: [IPAddress] = []
        for item in value.split(separator: ",") {
            guard let a = IPAddress(String(item)), a.family == family else {
                throw VPNArgumentError("\(option): \"\(item)\" is not an \(family == .v4 ? "IPv4" : "IPv6") address")
            }
            out.append(a)
        }
        guard (1...VPNMessage.maxDNSServers).contains(out.count) else {
            throw VPNArgumentError("\(option) takes 1...\(VPNMessage.maxDNSServers) addresses")
        }
        return out
    }
}

/// Walks `--name value`, `--name=value` and `-x value` arguments.
struct ArgumentCursor {
    struct Arg {
        var raw: String
        var name: String
        var inline: String?
    }

    private let args: [String]
    private var index = 0

    init(_ args: [String]) { self.args = args }

    mutating func next() -> Arg? {
        guard index < args.count else { return nil }
        let raw = args[index]
        index += 1
        if raw.hasPrefix("--"), let eq = raw.firstIndex(of: "=") {
            return Arg(raw: raw, name: String(raw[..<eq]), inline: String(raw[raw.index(after: eq)...]))
        }
        return Arg(raw: raw, name: raw, inline: nil)
    }

    mutating func value(for arg: Arg) throws(VPNArgumentError) -> String {
        if let inline = arg.inline { return inline }
        guard index < args.count else { throw VPNArgumentError("\(arg.name) needs a value") }
        index += 1
        return args[index - 1]
    }
}
