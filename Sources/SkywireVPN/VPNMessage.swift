import SkywireSystem

/// VPN control-stream messages (docs/vpn.md §2). Every message is
/// `type (1) | length (2, big-endian) | body (length bytes)`.
public enum VPNMessage: Equatable, Sendable {
    case clientHello(VPNClientHello)
    case serverOK(VPNServerOK)
    case forbidden(String)
    case error(String)
    /// IPV6_LEASE (docs/vpn.md §2.1): sent by the server right after SERVER_OK; a v1 client
    /// ignores it (an unknown type after the answer).
    case ipv6Lease(VPNIPv6Offer)
    /// A type this version does not know; ignored after the handshake (forward compatibility).
    case unknown(type: UInt8, body: [UInt8])

    public enum Kind: UInt8, Sendable {
        case clientHello = 0x01, serverOK = 0x02, forbidden = 0x03, error = 0x04, ipv6Lease = 0x05
    }

    public static let version: UInt8 = 1
    public static let headerLength = 3
    /// Largest body a peer may send.
    public static let maxBodyLength = 1024
    /// Senders cut reasons to this many bytes (at a character boundary).
    public static let maxReasonLength = 200
    /// At most this many local networks in a CLIENT_HELLO.
    public static let maxClientNetworks = 32
    /// At most this many DNS servers in a SERVER_OK.
    public static let maxDNSServers = 4
    /// Tunnel MTU bounds: the IPv4 minimum (RFC 791) and a jumbo frame.
    public static let mtuRange: ClosedRange<UInt16> = 576...9000

    static let networkEntryLength = 5
    static let helloFixedLength = 2
    static let okFixedLength = 13
    static let ipv4Length = 4
    static let ipv6Length = 16
    /// IPV6_LEASE: version, status; a lease adds client (16), prefix length (1), server (16),
    /// DNS count (1).
    static let leaseFixedLength = 2
    static let leaseAddressesLength = 2 * ipv6Length + 2
    /// The version of the IPV6_LEASE body.
    public static let ipv6LeaseVersion: UInt8 = 1
    static let ipv6Leased: UInt8 = 0
    static let ipv6Unavailable: UInt8 = 1
    /// Lease prefix lengths (the client and server addresses differ).
    static let ipv6PrefixRange: ClosedRange<Int> = 1...127

    /// The encoded message, header included.
    public func encoded() -> [UInt8] {
        let (type, body): (UInt8, [UInt8])
        switch self {
        case .clientHello(let h):
            var b: [UInt8] = [h.version, UInt8(h.networks.count)]
            for n in h.networks {
                b += n.address.bytes
                b.append(UInt8(n.length))
            }
            (type, body) = (Kind.clientHello.rawValue, b)
        case .serverOK(let ok):
            var b: [UInt8] = [ok.version]
            b += ok.clientAddress.address.bytes
            b.append(UInt8(ok.clientAddress.length))
            b += ok.serverAddress.bytes
            b += [UInt8(ok.mtu >> 8), UInt8(truncatingIfNeeded: ok.mtu)]
            b.append(UInt8(ok.dns.count))
            for d in ok.dns { b += d.bytes }
            (type, body) = (Kind.serverOK.rawValue, b)
        case .ipv6Lease(let offer):
            var b: [UInt8] = [Self.ipv6LeaseVersion]
            switch offer {
            case .leased(let lease):
                b.append(Self.ipv6Leased)
                b += lease.clientAddress.address.bytes
                b.append(UInt8(lease.clientAddress.length))
                b += lease.serverAddress.bytes
                b.append(UInt8(lease.dns.count))
                for d in lease.dns { b += d.bytes }
            case .unavailable(let reason):
                b.append(Self.ipv6Unavailable)
                b += Self.cut(reason)
            }
            (type, body) = (Kind.ipv6Lease.rawValue, b)
        case .forbidden(let reason):
            (type, body) = (Kind.forbidden.rawValue, Self.cut(reason))
        case .error(let reason):
            (type, body) = (Kind.error.rawValue, Self.cut(reason))
        case .unknown(let t, let b):
            (type, body) = (t, b)
        }
        return [type, UInt8(body.count >> 8), UInt8(truncatingIfNeeded: body.count)] + body
    }

    /// UTF-8 bytes of `reason`, at most `maxReasonLength`, cut at a character boundary.
    static func cut(_ reason: String) -> [UInt8] {
        var out: [UInt8] = []
        for ch in reason {
            let bytes = Array(String(ch).utf8)
            if out.count + bytes.count > maxReasonLength { break }
            out += bytes
        }
        return out
    }

    /// Decodes one message body of type `type` (the header already removed).
    static func decode(type: UInt8, body: ArraySlice<UInt8>) throws(VPNProtocolError) -> VPNMessage {
        let body = Array(body)
        guard let kind = Kind(rawValue: type) else { return .unknown(type: type, body: body) }
        switch kind {
        case .clientHello:
            guard body.count >= helloFixedLength else { throw .malformed("CLIENT_HELLO shorter than 2 bytes") }
            let count = Int(body[1])
            guard count <= maxClientNetworks else { throw .malformed("CLIENT_HELLO lists \(count) networks (at most \(maxClientNetworks))") }
            guard body.count == helloFixedLength + networkEntryLength * count else {
                throw .malformed("CLIENT_HELLO is \(body.count) bytes, expected \(helloFixedLength + networkEntryLength * count)")
            }
            var networks: [IPPrefix] = []
            for i in 0..<count {
                let at = helloFixedLength + networkEntryLength * i
                let addr = IPAddress(bytes: Array(body[at..<at + ipv4Length]))!
                guard let p = IPPrefix(addr, Int(body[at + ipv4Length])) else {
                    throw .malformed("CLIENT_HELLO network \(i) has prefix length \(body[at + ipv4Length]) > 32")
                }
                networks.append(p)
            }
            return .clientHello(VPNClientHello(version: body[0], networks: networks))
        case .serverOK:
            guard body.count >= okFixedLength else { throw .malformed("SERVER_OK shorter than \(okFixedLength) bytes") }
            guard body[0] == version else { throw .unsupportedVersion(body[0]) }
            let count = Int(body[12])
            guard count <= maxDNSServers else { throw .malformed("SERVER_OK lists \(count) DNS servers (at most \(maxDNSServers))") }
            guard body.count == okFixedLength + ipv4Length * count else {
                throw .malformed("SERVER_OK is \(body.count) bytes, expected \(okFixedLength + ipv4Length * count)")
            }
            let client = IPAddress(bytes: Array(body[1..<5]))!
            guard let prefix = IPPrefix(client, Int(body[5])), (1...30).contains(prefix.length) else {
                throw .malformed("SERVER_OK client prefix length \(body[5]) is not 1...30")
            }
            let server = IPAddress(bytes: Array(body[6..<10]))!
            guard prefix.contains(server), server != client else {
                throw .malformed("SERVER_OK server address \(server) is not another address of \(prefix.network)")
            }
            let mtu = UInt16(body[10]) << 8 | UInt16(body[11])
            guard mtuRange.contains(mtu) else { throw .malformed("SERVER_OK MTU \(mtu) is not in \(mtuRange)") }
            let dns = (0..<count).map { i in IPAddress(bytes: Array(body[okFixedLength + 4 * i..<okFixedLength + 4 * i + 4]))! }
            return .serverOK(VPNServerOK(clientAddress: prefix, serverAddress: server, mtu: mtu, dns: dns))
        case .ipv6Lease:
            return .ipv6Lease(try decodeIPv6Lease(body))
        case .forbidden, .error:
            guard body.count <= maxReasonLength else {
                throw .malformed("reason of \(body.count) bytes (at most \(maxReasonLength))")
            }
            let shown = try shownReason(body)
            return kind == .forbidden ? .forbidden(shown) : .error(shown)
        }
    }
}

extension VPNMessage {
    /// A reason as shown in errors, logs and terminals: valid UTF-8, control characters (escape
    /// sequences, line breaks) become spaces.
    static func shownReason(_ body: [UInt8]) throws(VPNProtocolError) -> String {
        guard let text = String(validating: body, as: UTF8.self) else { throw .malformed("reason is not valid UTF-8") }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 }))
    }

    /// The IPV6_LEASE body: `version | status | (client, length, server, DNS count, DNS…) or
    /// reason`. A lease's client address is a global or unique-local unicast address (not
    /// link-local, loopback, multicast, unspecified, an IPv4 form), its prefix 1...127 long and
    /// holding the server's, another address.
    static func decodeIPv6Lease(_ body: [UInt8]) throws(VPNProtocolError) -> VPNIPv6Offer {
        guard body.count >= leaseFixedLength else { throw .malformed("IPV6_LEASE shorter than \(leaseFixedLength) bytes") }
        guard body[0] == ipv6LeaseVersion else {
            throw .malformed("IPV6_LEASE version \(body[0]) (this visor speaks \(ipv6LeaseVersion))")
        }
        switch body[1] {
        case ipv6Unavailable:
            let rest = Array(body[leaseFixedLength...])
            guard rest.count <= maxReasonLength else { throw .malformed("IPV6_LEASE reason of \(rest.count) bytes (at most \(maxReasonLength))") }
            return .unavailable(try shownReason(rest))
        case ipv6Leased:
            let fixed = leaseFixedLength + leaseAddressesLength
            guard body.count >= fixed else { throw .malformed("IPV6_LEASE lease shorter than \(fixed) bytes") }
            let count = Int(body[fixed - 1])
            guard count <= maxDNSServers else { throw .malformed("IPV6_LEASE lists \(count) DNS servers (at most \(maxDNSServers))") }
            guard body.count == fixed + ipv6Length * count else {
                throw .malformed("IPV6_LEASE is \(body.count) bytes, expected \(fixed + ipv6Length * count)")
            }
            let at = leaseFixedLength
            let client = IPAddress(bytes: Array(body[at..<at + ipv6Length]))!
            let length = Int(body[at + ipv6Length])
            guard ipv6PrefixRange.contains(length), let prefix = IPPrefix(client, length) else {
                throw .malformed("IPV6_LEASE prefix length \(length) is not \(ipv6PrefixRange)")
            }
            if let range = client.nonPublicRange, range.kind != .uniqueLocal {
                throw .malformed("IPV6_LEASE client address \(client) is \(range)")
            }
            let serverAt = at + ipv6Length + 1
            let server = IPAddress(bytes: Array(body[serverAt..<serverAt + ipv6Length]))!
            guard prefix.contains(server), server != client else {
                throw .malformed("IPV6_LEASE server address \(server) is not another address of \(prefix.network)")
            }
            let dns = (0..<count).map { i in IPAddress(bytes: Array(body[fixed + ipv6Length * i..<fixed + ipv6Length * (i + 1)]))! }
            return .leased(VPNIPv6Lease(clientAddress: prefix, serverAddress: server, dns: dns))
        default:
            throw .malformed("IPV6_LEASE status \(body[1]) (0 leased, 1 unavailable)")
        }
    }
}

/// What the exit says about IPv6 (IPV6_LEASE), or why the client has no IPv6 lease.
public enum VPNIPv6Offer: Equatable, Sendable {
    case leased(VPNIPv6Lease)
    /// No IPv6 through the tunnel, and why (the exit has no IPv6 uplink, sent no lease, ...).
    case unavailable(String)

    /// The lease, if any.
    public var lease: VPNIPv6Lease? {
        if case .leased(let l) = self { return l }
        return nil
    }
}

/// The client's IPv6 tunnel address and prefix, the server's, and IPv6 DNS servers (maybe none).
public struct VPNIPv6Lease: Equatable, Sendable {
    public var clientAddress: IPPrefix
    public var serverAddress: IPAddress
    public var dns: [IPAddress]

    public init(clientAddress: IPPrefix, serverAddress: IPAddress, dns: [IPAddress]) {
        self.clientAddress = clientAddress
        self.serverAddress = serverAddress
        self.dns = dns
    }
}

/// CLIENT_HELLO: the protocol version and the client's local IPv4 networks, which the server's
/// address pool avoids.
public struct VPNClientHello: Equatable, Sendable {
    public var version: UInt8
    public var networks: [IPPrefix]

    public init(version: UInt8 = VPNMessage.version, networks: [IPPrefix]) {
        self.version = version
        self.networks = networks
    }
}

/// SERVER_OK: the client's tunnel address and prefix, the server's tunnel address, the tunnel
/// MTU and DNS servers the client may use (possibly none).
public struct VPNServerOK: Equatable, Sendable {
    public var version: UInt8 = VPNMessage.version
    public var clientAddress: IPPrefix
    public var serverAddress: IPAddress
    public var mtu: UInt16
    public var dns: [IPAddress]
    /// IPv6, from the IPV6_LEASE that follows SERVER_OK (not part of the SERVER_OK bytes).
    public var ipv6: VPNIPv6Offer

    public init(clientAddress: IPPrefix, serverAddress: IPAddress, mtu: UInt16, dns: [IPAddress],
                ipv6: VPNIPv6Offer = .unavailable(VPNServerOK.noIPv6Lease)) {
        self.clientAddress = clientAddress
        self.serverAddress = serverAddress
        self.mtu = mtu
        self.dns = dns
        self.ipv6 = ipv6
    }

    /// Why IPv6 stays blocked when the exit sent no IPV6_LEASE.
    public static let noIPv6Lease = "the exit sent no IPv6 lease (an exit without IPv6 support)"
}

public enum VPNProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case tooLong(Int)
    case unsupportedVersion(UInt8)
    case unexpected(String)

    public var description: String {
        switch self {
        case .malformed(let s): return "malformed VPN message: \(s)"
        case .tooLong(let n): return "VPN message body of \(n) bytes (at most \(VPNMessage.maxBodyLength))"
        case .unsupportedVersion(let v): return "unsupported VPN protocol version \(v) (this visor speaks \(VPNMessage.version))"
        case .unexpected(let s): return "unexpected VPN message: \(s)"
        }
    }
}

/// Splits control-stream bytes into messages (bytes in, messages out). Consumed bytes are
/// skipped with a read index and dropped once per `append`, so a chunk of many small messages
/// costs time linear in its size (not a copy of the rest per message).
public struct VPNMessageDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    /// Bytes waiting for the rest of their message.
    public var pending: Int { buffer.count - start }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws(VPNProtocolError) -> VPNMessage? {
        guard pending >= VPNMessage.headerLength else { return nil }
        let length = Int(buffer[start + 1]) << 8 | Int(buffer[start + 2])
        guard length <= VPNMessage.maxBodyLength else { throw .tooLong(length) }
        guard pending >= VPNMessage.headerLength + length else { return nil }
        let bodyStart = start + VPNMessage.headerLength, end = bodyStart + length
        let message = try VPNMessage.decode(type: buffer[start], body: buffer[bodyStart..<end])
        start = end
        return message
    }
}
