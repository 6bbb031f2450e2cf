/// Which addresses are not the public internet, for destination policies: skysocks' `--secure`
/// (docs/socks.md), and for the VPN and later apps to share. Pure: an address in, a verdict out.

/// A range of addresses an exit must not reach on behalf of a remote client: its own host, its
/// LANs, link-local services (cloud metadata at 169.254.169.254), multicast and broadcast.
public struct NonPublicRange: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// 0.0.0.0/8 (RFC 1122 §3.2.1.3; Linux connects 0.0.0.0 to the host itself), `::` (RFC 4291 §2.5.2).
        case thisNetwork = "this network"
        /// 127.0.0.0/8 (RFC 1122 §3.2.1.3), ::1 (RFC 4291 §2.5.3).
        case loopback
        /// 169.254.0.0/16 (RFC 3927), fe80::/10 (RFC 4291 §2.5.6).
        case linkLocal = "link-local"
        /// 10/8, 172.16/12, 192.168/16 (RFC 1918).
        case privateNetwork = "private"
        /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
        case sharedAddressSpace = "shared address space (CGNAT)"
        /// fc00::/7 (RFC 4193).
        case uniqueLocal = "unique local"
        /// fec0::/10, deprecated site-local (RFC 3879), still routed like a private range.
        case siteLocal = "site-local"
        /// 224.0.0.0/4 (RFC 5771), ff00::/8 (RFC 4291 §2.7).
        case multicast
        /// 240.0.0.0/4 (RFC 1112 §4), which holds the limited broadcast 255.255.255.255 (RFC 919).
        case reserved = "reserved/broadcast"
    }

    public let kind: Kind
    /// The range the (embedded) address lies in, e.g. 127.0.0.0/8.
    public let prefix: IPPrefix
    /// How an IPv6 address carried the IPv4 address that lies in `prefix`; nil when it lies there itself.
    public let embedding: IPv4Embedding?

    public var description: String {
        guard let embedding else { return "\(kind.rawValue) \(prefix)" }
        return "\(kind.rawValue) \(prefix) in \(embedding)"
    }

    /// The IPv4 ranges, each with its kind.
    public static let ipv4Ranges: [(kind: Kind, prefix: IPPrefix)] = [
        (.thisNetwork, IPPrefix(constant: IPAddress(v4: 0x0000_0000), 8)),
        (.privateNetwork, IPPrefix(constant: IPAddress(v4: 0x0A00_0000), 8)),
        (.sharedAddressSpace, IPPrefix(constant: IPAddress(v4: 0x6440_0000), 10)),
        (.loopback, IPPrefix(constant: IPAddress(v4: 0x7F00_0000), 8)),
        (.linkLocal, IPPrefix(constant: IPAddress(v4: 0xA9FE_0000), 16)),
        (.privateNetwork, IPPrefix(constant: IPAddress(v4: 0xAC10_0000), 12)),
        (.privateNetwork, IPPrefix(constant: IPAddress(v4: 0xC0A8_0000), 16)),
        (.multicast, IPPrefix(constant: IPAddress(v4: 0xE000_0000), 4)),
        (.reserved, IPPrefix(constant: IPAddress(v4: 0xF000_0000), 4)),
    ]

    /// The IPv6 ranges, each with its kind (IPv4 carried in IPv6: `IPv4Embedding`).
    public static let ipv6Ranges: [(kind: Kind, prefix: IPPrefix)] = [
        (.thisNetwork, IPPrefix(constant: IPAddress(v6High: 0, low: 0), IPAddress.v6Length * 8)),
        (.loopback, IPPrefix(constant: IPAddress(v6High: 0, low: 1), IPAddress.v6Length * 8)),
        (.uniqueLocal, IPPrefix(constant: IPAddress(v6High: 0xFC00 << 48, low: 0), 7)),
        (.linkLocal, IPPrefix(constant: IPAddress(v6High: 0xFE80 << 48, low: 0), 10)),
        (.siteLocal, IPPrefix(constant: IPAddress(v6High: 0xFEC0 << 48, low: 0), 10)),
        (.multicast, IPPrefix(constant: IPAddress(v6High: 0xFF00 << 48, low: 0), 8)),
    ]
}

/// An IPv6 form that carries an IPv4 address in its last 32 bits. A kernel, a NAT64 gateway or a
/// tunnel may deliver such an address to the IPv4 address inside, so a policy judges that one.
public enum IPv4Embedding: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// ::ffff:0:0/96 (RFC 4291 §2.5.5.2): a dual-stack socket sends these as IPv4.
    case mapped = "IPv4-mapped IPv6"
    /// ::/96 (RFC 4291 §2.5.5.1, deprecated); `::` and `::1` themselves are IPv6 ranges.
    case compatible = "IPv4-compatible IPv6"
    /// 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052 §2.1).
    case nat64 = "NAT64"

    /// The /96 whose last 32 bits are the IPv4 address.
    public var prefix: IPPrefix {
        switch self {
        case .mapped: return IPPrefix(constant: IPAddress(v6High: 0, low: 0xFFFF_0000_0000), Self.prefixLength)
        case .compatible: return IPPrefix(constant: IPAddress(v6High: 0, low: 0), Self.prefixLength)
        case .nat64: return IPPrefix(constant: IPAddress(v6High: 0x0064_FF9B << 32, low: 0), Self.prefixLength)
        }
    }

    public var description: String { "\(rawValue) (\(prefix))" }

    /// Bits before the embedded IPv4 address.
    static let prefixLength = (IPAddress.v6Length - IPAddress.v4Length) * 8
}

extension IPAddress {
    /// IPv6 from its high and low 64 bits (`IPAddress(v6High: 0, low: 1)` is ::1).
    public init(v6High high: UInt64, low: UInt64) {
        var out = [UInt8](repeating: 0, count: Self.v6Length)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        bytes = out
    }

    /// The IPv4 address an IPv6 address carries (`IPv4Embedding`) and how; nil for IPv4 addresses,
    /// other IPv6 addresses, and `::` and `::1` (IPv6's own unspecified and loopback addresses).
    public var embeddedIPv4: (address: IPAddress, form: IPv4Embedding)? {
        guard family == .v6 else { return nil }
        for form in IPv4Embedding.allCases where form.prefix.matches(self) {
            let v4 = IPAddress(bytes: Array(bytes[(Self.v6Length - Self.v4Length)...]))
            guard let v4 else { return nil }
            if form == .compatible, (v4.v4Value ?? 0) <= 1 { return nil }  // :: and ::1
            return (v4, form)
        }
        return nil
    }

    /// The non-public range this address lies in, looking through the IPv6 forms of IPv4
    /// (`::ffff:127.0.0.1` is loopback); nil for a public address.
    public var nonPublicRange: NonPublicRange? {
        if let (v4, form) = embeddedIPv4 {
            guard let inner = v4.nonPublicRange else { return nil }
            return NonPublicRange(kind: inner.kind, prefix: inner.prefix, embedding: form)
        }
        let ranges = family == .v4 ? NonPublicRange.ipv4Ranges : NonPublicRange.ipv6Ranges
        for range in ranges where range.prefix.matches(self) {
            return NonPublicRange(kind: range.kind, prefix: range.prefix, embedding: nil)
        }
        return nil
    }
}

extension IPPrefix {
    /// A prefix from constants known to be valid (`length` within the family's bits).
    init(constant address: IPAddress, _ length: Int) {
        self.address = address
        self.length = min(max(length, 0), address.bitCount)
    }

    /// `contains(_:)` without allocating: the first `length` bits are equal.
    func matches(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var remaining = length
        var index = 0
        while remaining >= 8 {
            if other.bytes[index] != address.bytes[index] { return false }
            index += 1
            remaining -= 8
        }
        guard remaining > 0 else { return true }
        let mask = UInt8(0xFF) << UInt8(8 - remaining)
        return other.bytes[index] & mask == address.bytes[index] & mask
    }
}
