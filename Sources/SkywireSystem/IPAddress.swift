/// An IPv4 or IPv6 address as raw network-order bytes (4 or 16), for netlink and nftables.
/// Parsing and formatting follow inet_pton(3)/inet_ntop(3) via Glibc.
#if canImport(Glibc)
import Glibc
#endif

public struct IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    public enum Family: Sendable, Hashable { case v4, v6 }
    public static let v4Length = 4
    public static let v6Length = 16

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public let bytes: [UInt8]

    public var family: Family { bytes.count == Self.v4Length ? .v4 : .v6 }
    public var bitCount: Int { bytes.count * 8 }

    /// IPv4 from a host-order 32-bit value (`0x0A000001` is 10.0.0.1).
    public init(v4 value: UInt32) {
        bytes = [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
                 UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// From raw bytes; nil unless there are 4 or 16.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.v4Length || bytes.count == Self.v6Length else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted-quad IPv4 or RFC 4291 textual IPv6 (inet_pton).
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(v4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        self.init(bytes: withUnsafeBytes(of: &v6) { Array($0) })
    }

    /// The IPv4 value in host order; nil for IPv6.
    public var v4Value: UInt32? {
        guard bytes.count == Self.v4Length else { return nil }
        return UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])
    }

    public var description: String {
        if let v = v4Value { return "\(v >> 24).\((v >> 16) & 0xff).\((v >> 8) & 0xff).\(v & 0xff)" }
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &raw, &out, socklen_t(out.count)) != nil else { return "?" }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        a.bytes.count != b.bytes.count ? a.bytes.count < b.bytes.count : a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}

/// An address with a prefix length (`10.0.0.1/30`): an interface address or a route destination.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// nil when `length` exceeds the family's bit count.
    public init?(_ address: IPAddress, _ length: Int) {
        guard length >= 0, length <= address.bitCount else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses `ADDR/LEN`, or a bare address as a host prefix.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let addr = IPAddress(String(parts[0])) else { return nil }
        if parts.count == 2 {
            guard let len = Int(parts[1]) else { return nil }
            self.init(addr, len)
        } else {
            self.init(addr, addr.bitCount)
        }
    }

    public var family: IPAddress.Family { address.family }

    /// The prefix with host bits cleared (`10.0.0.1/30` → `10.0.0.0/30`).
    public var network: IPPrefix {
        var out = address.bytes
        for i in 0..<out.count {
            let bitsHere = max(0, min(8, length - i * 8))
            out[i] &= bitsHere == 8 ? 0xff : ~(UInt8(0xff) >> UInt8(bitsHere))
        }
        return IPPrefix(IPAddress(bytes: out)!, length)!
    }

    /// Whether `other` lies inside this prefix (same family).
    public func contains(_ other: IPAddress) -> Bool {
        guard other.family == address.family, let host = IPPrefix(other, length) else { return false }
        return host.network.address == network.address
    }

    /// Whether the two prefixes share any address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard other.family == family else { return false }
        return length <= other.length ? contains(other.address) : other.contains(address)
    }

    public var description: String { "\(address)/\(length)" }
}
