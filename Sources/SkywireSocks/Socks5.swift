import NIOCore

/// SOCKS protocol version 5 constants (RFC 1928 §3–§6).
public enum Socks5 {
    /// VER field of every SOCKS5 message (RFC 1928 §3).
    public static let version: UInt8 = 0x05
    /// VER field of the username/password sub-negotiation (RFC 1929 §2).
    public static let authVersion: UInt8 = 0x01
    /// RFC 1929 §2 STATUS: success; any other value is a failure.
    public static let authStatusSuccess: UInt8 = 0x00
    /// The failure STATUS this implementation sends (RFC 1929 §2: any non-zero value).
    public static let authStatusFailure: UInt8 = 0x01
    /// RSV field value (RFC 1928 §4, §6, §7).
    public static let reserved: UInt8 = 0x00
    /// Largest length a one-byte length field can carry (NMETHODS, ULEN, PLEN, domain length).
    public static let maxShortLength = 255
}

/// Authentication METHOD values (RFC 1928 §3).
public enum Socks5Method: UInt8, Sendable {
    case noAuthentication = 0x00
    case gssapi = 0x01
    case usernamePassword = 0x02
    case noAcceptableMethods = 0xFF
}

/// CMD field of a request (RFC 1928 §4).
public enum Socks5Command: UInt8, Sendable, CustomStringConvertible {
    case connect = 0x01
    case bind = 0x02
    case udpAssociate = 0x03

    public var description: String {
        switch self {
        case .connect: return "CONNECT"
        case .bind: return "BIND"
        case .udpAssociate: return "UDP ASSOCIATE"
        }
    }
}

/// ATYP field (RFC 1928 §4, §5).
public enum Socks5AddressType: UInt8, Sendable {
    case ipv4 = 0x01
    case domainName = 0x03
    case ipv6 = 0x04

    /// Bytes of DST.ADDR for a fixed-size type.
    static let ipv4Length = 4
    static let ipv6Length = 16
}

/// REP field of a reply (RFC 1928 §6).
public enum Socks5ReplyCode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case succeeded = 0x00
    case generalFailure = 0x01
    case connectionNotAllowed = 0x02
    case networkUnreachable = 0x03
    case hostUnreachable = 0x04
    case connectionRefused = 0x05
    case ttlExpired = 0x06
    case commandNotSupported = 0x07
    case addressTypeNotSupported = 0x08

    public var description: String {
        switch self {
        case .succeeded: return "succeeded"
        case .generalFailure: return "general SOCKS server failure"
        case .connectionNotAllowed: return "connection not allowed by ruleset"
        case .networkUnreachable: return "network unreachable"
        case .hostUnreachable: return "host unreachable"
        case .connectionRefused: return "connection refused"
        case .ttlExpired: return "TTL expired"
        case .commandNotSupported: return "command not supported"
        case .addressTypeNotSupported: return "address type not supported"
        }
    }
}

/// A parsed SOCKS5 request (RFC 1928 §4).
public struct Socks5Request: Equatable, Sendable {
    public var command: Socks5Command
    public var address: Socks5Address
    public var port: UInt16

    public init(command: Socks5Command, address: Socks5Address, port: UInt16) {
        self.command = command
        self.address = address
        self.port = port
    }

    /// Writes `VER CMD RSV ATYP DST.ADDR DST.PORT` (RFC 1928 §4).
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(Socks5.version)
        buffer.writeInteger(command.rawValue)
        buffer.writeInteger(Socks5.reserved)
        address.write(to: &buffer)
        buffer.writeInteger(port)
    }
}

/// A parsed SOCKS5 reply (RFC 1928 §6).
public struct Socks5Reply: Equatable, Sendable {
    public var code: UInt8
    public var boundAddress: Socks5Address
    public var boundPort: UInt16

    public init(code: UInt8, boundAddress: Socks5Address, boundPort: UInt16) {
        self.code = code
        self.boundAddress = boundAddress
        self.boundPort = boundPort
    }

    /// Fixed part before BND.ADDR: VER, REP, RSV, ATYP.
    static let headerLength = 4

    /// Writes `VER REP RSV ATYP BND.ADDR BND.PORT` (RFC 1928 §6).
    public static func write(code: Socks5ReplyCode, boundAddress: Socks5Address = .ipv4(0),
                             boundPort: UInt16 = 0, to buffer: inout ByteBuffer) {
        buffer.writeInteger(Socks5.version)
        buffer.writeInteger(code.rawValue)
        buffer.writeInteger(Socks5.reserved)
        boundAddress.write(to: &buffer)
        buffer.writeInteger(boundPort)
    }

    /// A reply as a new buffer; failures carry `0.0.0.0:0` as bound address.
    public static func encode(code: Socks5ReplyCode, boundAddress: Socks5Address = .ipv4(0),
                              boundPort: UInt16 = 0,
                              allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerLength + boundAddress.encodedLength + 2)
        write(code: code, boundAddress: boundAddress, boundPort: boundPort, to: &buffer)
        return buffer
    }
}
