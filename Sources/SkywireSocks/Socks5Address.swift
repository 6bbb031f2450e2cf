import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// DST.ADDR / BND.ADDR of RFC 1928 §4–§7: an IPv4 address, an IPv6 address or a domain name.
/// IP addresses are stored as integers so parsing a datagram header allocates nothing.
public enum Socks5Address: Hashable, Sendable, CustomStringConvertible {
    /// IPv4 address; the integer's big-endian bytes are the dotted quad.
    case ipv4(UInt32)
    /// IPv6 address as its high and low 64 bits.
    case ipv6(UInt64, UInt64)
    /// Fully qualified domain name, 1–255 bytes, resolved by the exit.
    case domain(String)

    public var addressType: Socks5AddressType {
        switch self {
        case .ipv4: return .ipv4
        case .ipv6: return .ipv6
        case .domain: return .domainName
        }
    }

    /// Bytes of `ATYP || ADDR` (without the port).
    public var encodedLength: Int {
        switch self {
        case .ipv4: return 1 + Socks5AddressType.ipv4Length
        case .ipv6: return 1 + Socks5AddressType.ipv6Length
        case .domain(let name): return 2 + min(name.utf8.count, Socks5.maxShortLength)
        }
    }

    /// Writes `ATYP || ADDR`. Domain names longer than 255 bytes are truncated (never produced by
    /// this implementation: parsed names are at most 255 bytes).
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(self.addressType.rawValue)
        switch self {
        case .ipv4(let a):
            buffer.writeInteger(a)
        case .ipv6(let hi, let lo):
            buffer.writeInteger(hi)
            buffer.writeInteger(lo)
        case .domain(let name):
            let bytes = name.utf8.prefix(Socks5.maxShortLength)
            buffer.writeInteger(UInt8(bytes.count))
            buffer.writeBytes(bytes)
        }
    }

    /// True for `0.0.0.0` and `::` (RFC 1928 §6: "unspecified" client address in UDP ASSOCIATE).
    public var isUnspecified: Bool {
        switch self {
        case .ipv4(let a): return a == 0
        case .ipv6(let hi, let lo): return hi == 0 && lo == 0
        case .domain: return false
        }
    }

    public var description: String {
        switch self {
        case .ipv4(let a):
            return "\(a >> 24).\((a >> 16) & 0xFF).\((a >> 8) & 0xFF).\(a & 0xFF)"
        case .ipv6(let hi, let lo):
            let groups = (0..<8).map { i -> String in
                let word = i < 4 ? hi >> (48 - 16 * UInt64(i)) : lo >> (48 - 16 * UInt64(i - 4))
                return String(UInt16(truncatingIfNeeded: word), radix: 16)
            }
            return "[" + groups.joined(separator: ":") + "]"
        case .domain(let name):
            return name
        }
    }

    /// The address of an IPv4 or IPv6 socket address; nil for Unix sockets.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            self = .ipv4(UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            var storage = v6.address.sin6_addr
            let (hi, lo) = withUnsafeBytes(of: &storage) { raw -> (UInt64, UInt64) in
                var hi: UInt64 = 0
                var lo: UInt64 = 0
                for i in 0..<8 { hi = hi << 8 | UInt64(raw[i]) }
                for i in 8..<16 { lo = lo << 8 | UInt64(raw[i]) }
                return (hi, lo)
            }
            // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is reported as IPv4.
            if hi == 0, lo >> 32 == 0xFFFF {
                self = .ipv4(UInt32(truncatingIfNeeded: lo))
            } else {
                self = .ipv6(hi, lo)
            }
        case .unixDomainSocket:
            return nil
        }
    }

    /// The socket address for an IP address and port; nil for a domain name.
    public func socketAddress(port: UInt16) -> SocketAddress? {
        switch self {
        case .ipv4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = a.bigEndian
            return SocketAddress(sin, host: "")
        case .ipv6(let hi, let lo):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) }
                for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i))) }
            }
            return SocketAddress(sin6, host: "")
        case .domain:
            return nil
        }
    }

    /// Parses a textual IPv4/IPv6 literal (no brackets); nil when it is neither.
    public init?(ipLiteral text: String) {
        guard let address = try? SocketAddress(ipAddress: text, port: 0), let parsed = Socks5Address(address) else {
            return nil
        }
        self = parsed
    }
}
