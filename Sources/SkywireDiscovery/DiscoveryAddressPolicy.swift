import SkywireConfig
#if canImport(Glibc)
import Glibc
#endif

/// Which transport addresses a public discovery service accepts (docs/discovery.md "Address
/// policy"): other visors dial what is registered, so a registration must not point them at
/// their own loopback, their LAN or link-local services. `--allow-private-addresses` turns
/// the check off for private deployments.
public enum DiscoveryAddressPolicy {
    /// Why `host` (an IP literal or a DNS name) is not a public address; nil when it is.
    /// Names are not resolved (the service never does DNS); only `localhost` and `*.localhost`
    /// (RFC 6761 §6.3) are refused by name.
    public static func nonPublicReason(host: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return reason(ipv4: withUnsafeBytes(of: &v4) { Array($0) })
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return reason(ipv6: withUnsafeBytes(of: &v6) { Array($0) })
        }
        let name = host.lowercased()
        if name == "localhost" || name.hasSuffix(".localhost") || name == "localhost." || name.hasSuffix(".localhost.") {
            return "a loopback name"
        }
        return nil
    }

    /// The reason for an address of 4 (IPv4) or 16 (IPv6) bytes, network order.
    public static func nonPublicReason(address: [UInt8]) -> String? {
        address.count == 4 ? reason(ipv4: address) : reason(ipv6: address)
    }

    /// RFC 6890 special-purpose IPv4 blocks a visor must not be sent to.
    static func reason(ipv4 a: [UInt8]) -> String? {
        switch (a[0], a[1]) {
        case (0, _): return "an unspecified/\"this network\" address (0.0.0.0/8)"
        case (127, _): return "a loopback address (127.0.0.0/8)"
        case (10, _): return "a private address (RFC 1918, 10.0.0.0/8)"
        case (172, 16...31): return "a private address (RFC 1918, 172.16.0.0/12)"
        case (192, 168): return "a private address (RFC 1918, 192.168.0.0/16)"
        case (100, 64...127): return "a shared CGNAT address (RFC 6598, 100.64.0.0/10)"
        case (169, 254): return "a link-local address (169.254.0.0/16)"
        case (224...239, _): return "a multicast address (224.0.0.0/4)"
        case (240...255, _): return "a reserved or broadcast address (240.0.0.0/4)"
        default: return nil
        }
    }

    /// RFC 4291 / RFC 4193 special IPv6 blocks; IPv4-mapped addresses are judged as IPv4.
    static func reason(ipv6 a: [UInt8]) -> String? {
        if a[0..<15].allSatisfy({ $0 == 0 }) {
            return a[15] == 1 ? "a loopback address (::1)" : "the unspecified address (::)"
        }
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff {
            return reason(ipv4: Array(a[12..<16])).map { "an IPv4-mapped form of " + $0 }
        }
        if a[0] & 0xfe == 0xfc { return "a unique local address (RFC 4193, fc00::/7)" }
        if a[0] == 0xfe && a[1] & 0xc0 == 0x80 { return "a link-local address (fe80::/10)" }
        if a[0] == 0xff { return "a multicast address (ff00::/8)" }
        return nil
    }
}
