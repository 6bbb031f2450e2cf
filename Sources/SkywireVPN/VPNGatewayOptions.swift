import SkywireSystem

/// The LAN side of `vpn-client` in the gateway role (docs/gateway.md): `--lan IFACE` turns it
/// on, `--lan-subnet ADDR/LEN` is the gateway's own address on that LAN (default
/// 192.168.50.1/24), `--bypass MAC|IP,...` lists devices that go out of the uplink directly,
/// `--uplink IFACE` picks the default route bypassing devices use (default: the only one),
/// `--dhcp-range FIRST-LAST` the addresses dnsmasq hands out (default: every host address of
/// the subnet but the gateway's).
public struct VPNGatewayOptions: Equatable, Sendable {
    public var lan: String
    public var lanAddress: IPPrefix
    public var bypassMACs: [String] = []
    public var bypassIPs: [IPAddress] = []
    public var uplink: String?
    public var dhcpFirst: IPAddress
    public var dhcpLast: IPAddress

    public static let defaultSubnet = IPPrefix("192.168.50.1/24")!

    public init(lan: String, lanAddress: IPPrefix = Self.defaultSubnet) throws(VPNArgumentError) {
        try Self.checkInterface(lan, option: "--lan")
        try Self.checkSubnet(lanAddress)
        self.lan = lan
        self.lanAddress = lanAddress
        (dhcpFirst, dhcpLast) = Self.defaultRange(lanAddress)
    }

    /// The LAN's network (`192.168.50.0/24`).
    public var lanNetwork: IPPrefix { lanAddress.network }

    public var hasBypass: Bool { !bypassMACs.isEmpty || !bypassIPs.isEmpty }

    static func checkInterface(_ name: String, option: String) throws(VPNArgumentError) {
        try VPNArgumentError.checkInterface(name, option: option, reserved: [VPNClient.tunName])
    }

    static func checkSubnet(_ p: IPPrefix) throws(VPNArgumentError) {
        guard p.family == .v4, (8...30).contains(p.length) else {
            throw VPNArgumentError("--lan-subnet: \"\(p)\" must be an IPv4 ADDR/LEN with LEN 8...30")
        }
        let v = p.address.v4Value!, net = p.network.address.v4Value!
        let broadcast = net | (UInt32.max >> UInt32(p.length))
        guard v != net, v != broadcast else {
            throw VPNArgumentError("--lan-subnet: \(p.address) is the network or broadcast address of \(p.network); give the gateway's own address, e.g. \(IPAddress(v4: net + 1))/\(p.length)")
        }
    }

    /// Every host address of the subnet except the gateway's: the larger side of it.
    static func defaultRange(_ p: IPPrefix) -> (IPAddress, IPAddress) {
        let v = p.address.v4Value!, net = p.network.address.v4Value!
        let last = (net | (UInt32.max >> UInt32(p.length))) - 1
        if last - v >= v - (net + 1) { return (IPAddress(v4: v + 1), IPAddress(v4: last)) }
        return (IPAddress(v4: net + 1), IPAddress(v4: v - 1))
    }

    /// Lower-case `aa:bb:cc:dd:ee:ff`, or nil.
    static func normalizedMAC(_ s: String) -> String? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }) else { return nil }
        return parts.map { $0.lowercased() }.joined(separator: ":")
    }

    /// Parses the `--bypass` list; every entry is a MAC or an IPv4 address inside the LAN.
    mutating func parseBypass(_ value: String) throws(VPNArgumentError) {
        for item in value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            if let mac = Self.normalizedMAC(item) {
                if !bypassMACs.contains(mac) { bypassMACs.append(mac) }
            } else if let ip = IPAddress(item), ip.family == .v4 {
                guard lanNetwork.contains(ip), ip != lanAddress.address else {
                    throw VPNArgumentError("--bypass: \(ip) is not a device address in the LAN \(lanNetwork)")
                }
                if !bypassIPs.contains(ip) { bypassIPs.append(ip) }
            } else {
                throw VPNArgumentError("--bypass: \"\(item)\" is neither a MAC (aa:bb:cc:dd:ee:ff) nor an IPv4 address")
            }
        }
    }

    mutating func parseRange(_ value: String) throws(VPNArgumentError) {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, let a = IPAddress(parts[0]), let b = IPAddress(parts[1]),
              let av = a.v4Value, let bv = b.v4Value else {
            throw VPNArgumentError("--dhcp-range: \"\(value)\" is not FIRST-LAST (two IPv4 addresses)")
        }
        let net = lanNetwork.address.v4Value!, broadcast = net | (UInt32.max >> UInt32(lanAddress.length))
        guard av <= bv, av > net, bv < broadcast else {
            throw VPNArgumentError("--dhcp-range: \(value) must be an ascending range of host addresses in \(lanNetwork)")
        }
        let gw = lanAddress.address.v4Value!
        guard !(av...bv).contains(gw) else {
            throw VPNArgumentError("--dhcp-range: \(value) contains the gateway's own address \(lanAddress.address)")
        }
        dhcpFirst = a
        dhcpLast = b
    }

    /// Builds the options from the raw gateway flags (nil when `--lan` is absent; the other
    /// flags then are an error).
    static func from(lan: String?, subnet: String?, bypass: [String], uplink: String?,
                     range: String?) throws(VPNArgumentError) -> VPNGatewayOptions? {
        guard let lan else {
            if subnet != nil || !bypass.isEmpty || uplink != nil || range != nil {
                throw VPNArgumentError("--lan-subnet, --bypass, --uplink and --dhcp-range need --lan IFACE (the gateway role)")
            }
            return nil
        }
        var prefix = defaultSubnet
        if let subnet {
            guard let p = IPPrefix(subnet), subnet.contains("/") else {
                throw VPNArgumentError("--lan-subnet: \"\(subnet)\" is not ADDR/LEN (the gateway's LAN address, e.g. 192.168.50.1/24)")
            }
            prefix = p
        }
        var o = try VPNGatewayOptions(lan: lan, lanAddress: prefix)
        if let uplink {
            try checkInterface(uplink, option: "--uplink")
            guard uplink != lan else { throw VPNArgumentError("--uplink and --lan are both \"\(lan)\"") }
            o.uplink = uplink
        }
        for b in bypass { try o.parseBypass(b) }
        if let range { try o.parseRange(range) }
        return o
    }
}
