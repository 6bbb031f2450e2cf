import SkywireConfig
import SkywireCrypto
import SkywireSystem

/// The exit's IPv6 network for its clients (docs/vpn.md §8): a /64, either a unique local
/// prefix of this exit (RFC 4193, NATed to the exit's address: NAT66) or a prefix routed to the
/// exit (`--ipv6-prefix`, forwarded as it is). The server is `prefix::1`; a client's address is
/// the prefix with its IPv4 tunnel address in the low 32 bits (`prefix::a4d:2` for
/// 10.77.0.2), so the IPv4 lease makes the IPv6 one unique and the datapath finds a session
/// by the same 32-bit key for both families.
public struct VPNIPv6Network: Equatable, Sendable {
    public let prefix: IPPrefix
    /// True for a routed prefix (no NAT66).
    public let routed: Bool
    /// The prefix's high 64 bits (host order), compared per packet.
    public let high: UInt64

    static let serverInterfaceID: UInt64 = 1
    /// The bits between the prefix and the embedded IPv4 address, zero in every client address.
    static let embeddedMask: UInt64 = 0xFFFF_FFFF_0000_0000
    /// RFC 4193 §3.1: the L bit set, FC00::/7 → FD00::/8.
    static let ulaFirstByte: UInt8 = 0xFD
    /// RFC 4193 §3.1: the Global ID is 40 bits.
    static let globalIDLength = 5
    public static let ulaFileName = "vpn-server.ula"

    public init?(prefix: IPPrefix, routed: Bool) {
        guard prefix.family == .v6, prefix.length == VPNServerArguments.ipv6PrefixLength else { return nil }
        self.prefix = prefix.network
        self.routed = routed
        high = prefix.network.address.bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
    }

    public var serverAddress: IPAddress { IPAddress(v6High: high, low: Self.serverInterfaceID) }
    public var serverPrefix: IPPrefix { IPPrefix(serverAddress, prefix.length)! }

    /// The client address that goes with the IPv4 tunnel address `v4`.
    public func clientAddress(v4: UInt32) -> IPPrefix { IPPrefix(IPAddress(v6High: high, low: UInt64(v4)), prefix.length)! }

    /// The 32-bit session key of an address of this network given as (high, low), or nil when
    /// it is not a client address of it.
    @inline(__always)
    public func key(_ address: (UInt64, UInt64)) -> UInt32? {
        guard address.0 == high, address.1 & Self.embeddedMask == 0 else { return nil }
        return UInt32(truncatingIfNeeded: address.1)
    }

    /// A unique local /64 (RFC 4193 §3.1): FD, a 40-bit Global ID (§3.2: pseudo-
    /// random; the SHA-1 method of §3.2.2 is only a suggestion), subnet ID 0.
    public static func ula(globalID: [UInt8]) -> IPPrefix? {
        guard globalID.count == globalIDLength else { return nil }
        let bytes = [ulaFirstByte] + globalID + [UInt8](repeating: 0, count: IPAddress.v6Length - 1 - globalIDLength)
        return IPAddress(bytes: bytes).flatMap { IPPrefix($0, VPNServerArguments.ipv6PrefixLength) }
    }

    /// This exit's ULA /64: read from `directory/name` (`vpn-server.ula`), or made and stored
    /// there, so clients keep their IPv6 addresses across restarts (the gateway role keeps its
    /// LAN's in `vpn-gateway.ula`).
    public static func storedULA(directory: String, name: String = ulaFileName) throws -> IPPrefix {
        let path = directory + "/" + name
        if let bytes = try FileIO.read(path) {
            let text = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
            guard let p = IPPrefix(text), p.family == .v6, p.length == VPNServerArguments.ipv6PrefixLength,
                  p.address.nonPublicRange?.kind == .uniqueLocal else {
                throw VPNError("\(path) holds \"\(text.prefix(60))\", not a unique local /\(VPNServerArguments.ipv6PrefixLength): remove it to make a new one")
            }
            return p.network
        }
        guard let p = ula(globalID: SecureRandom.bytes(globalIDLength)) else { throw VPNError("cannot make a ULA prefix") }
        try FileIO.makeDirectories(directory)
        try AtomicFile.write(Array("\(p)\n".utf8), to: path, replace: false)
        return p
    }
}
