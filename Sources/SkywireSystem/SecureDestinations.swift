/// Why a `--secure` exit refuses a destination.
public enum DestinationRefusal: Sendable, Hashable, CustomStringConvertible {
    /// A non-public range (`IPAddress.nonPublicRange`), directly or in an IPv6 form of IPv4.
    case nonPublic(NonPublicRange)
    /// One of the exit host's own addresses (`HostAddresses`), given as the host has it.
    case hostAddress(IPAddress)

    /// Names the rule, for logs: "loopback 127.0.0.0/8", "an address of this host (203.0.113.1)".
    public var description: String {
        switch self {
        case .nonPublic(let range): return range.description
        case .hostAddress(let address): return "an address of this host (\(address))"
        }
    }
}

/// The destination check of a `--secure` exit (skysocks; meant for the VPN and SkyNet `--target`
/// as well): refuses every non-public range and every address of the exit host itself, also in
/// their IPv4-mapped, IPv4-compatible and NAT64 IPv6 forms. Checks addresses, so names are
/// checked by what they resolve to. Costs per check: a few byte comparisons and one
/// `HostAddresses` lookup (a mutex and a non-blocking recv(2)).
public struct SecureDestinations: Sendable {
    public let hostAddresses: HostAddresses

    public init(hostAddresses: HostAddresses = .shared) {
        self.hostAddresses = hostAddresses
    }

    /// Why `address` is refused; nil when the exit may connect to it.
    public func refusal(for address: IPAddress) -> DestinationRefusal? {
        if let range = address.nonPublicRange { return .nonPublic(range) }
        if hostAddresses.contains(address) { return .hostAddress(address) }
        if let (v4, _) = address.embeddedIPv4, hostAddresses.contains(v4) { return .hostAddress(v4) }
        return nil
    }
}
