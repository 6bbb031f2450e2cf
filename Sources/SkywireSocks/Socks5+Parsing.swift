import NIOCore

/// Outcome of parsing one SOCKS5 message from the front of a buffer.
public enum Socks5ParseResult<Value: Equatable & Sendable>: Equatable, Sendable {
    /// More bytes are needed; nothing was consumed.
    case incomplete
    /// The message, and how many bytes it occupied.
    case complete(Value, length: Int)
    /// The bytes cannot be this message; `reply` is the REP code a server answers with (RFC 1928 §6).
    case invalid(Socks5ReplyCode, reason: String)
}

/// Client greeting: `VER NMETHODS METHODS` (RFC 1928 §3).
public struct Socks5Greeting: Equatable, Sendable {
    public var methods: [UInt8]
}

/// Username/password request: `VER ULEN UNAME PLEN PASSWD` (RFC 1929 §2).
public struct Socks5Credentials: Equatable, Sendable {
    public var username: [UInt8]
    public var password: [UInt8]

    public init(username: [UInt8], password: [UInt8]) {
        self.username = username
        self.password = password
    }

    public init(username: String, password: String) {
        self.init(username: Array(username.utf8), password: Array(password.utf8))
    }

    /// Compares in time independent of where the first difference is.
    func matches(_ other: Socks5Credentials) -> Bool {
        guard username.count == other.username.count, password.count == other.password.count else {
            return false
        }
        var diff: UInt8 = 0
        for i in 0..<username.count { diff |= username[i] ^ other.username[i] }
        for i in 0..<password.count { diff |= password[i] ^ other.password[i] }
        return diff == 0
    }
}

/// Stateless parsers for each SOCKS5 message. They read at `buffer.readerIndex` without consuming.
public enum Socks5Parser {
    /// RFC 1928 §3 greeting.
    public static func parseGreeting(_ buffer: ByteBuffer) -> Socks5ParseResult<Socks5Greeting> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == Socks5.version else {
            return .invalid(.generalFailure, reason: "greeting version \(version), expected 5")
        }
        guard let count = buffer.getInteger(at: base + 1, as: UInt8.self) else { return .incomplete }
        guard count > 0 else { return .invalid(.generalFailure, reason: "greeting offers no methods") }
        guard let methods = buffer.getBytes(at: base + 2, length: Int(count)) else { return .incomplete }
        return .complete(Socks5Greeting(methods: methods), length: 2 + Int(count))
    }

    /// RFC 1929 §2 username/password request. ULEN or PLEN of zero is malformed.
    public static func parseCredentials(_ buffer: ByteBuffer) -> Socks5ParseResult<Socks5Credentials> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == Socks5.authVersion else {
            return .invalid(.generalFailure, reason: "auth version \(version), expected 1")
        }
        guard let ulen = buffer.getInteger(at: base + 1, as: UInt8.self) else { return .incomplete }
        guard ulen > 0 else { return .invalid(.generalFailure, reason: "empty username") }
        let plenAt = base + 2 + Int(ulen)
        guard let plen = buffer.getInteger(at: plenAt, as: UInt8.self) else { return .incomplete }
        guard plen > 0 else { return .invalid(.generalFailure, reason: "empty password") }
        guard let password = buffer.getBytes(at: plenAt + 1, length: Int(plen)),
              let username = buffer.getBytes(at: base + 2, length: Int(ulen)) else { return .incomplete }
        return .complete(Socks5Credentials(username: username, password: password),
                         length: 3 + Int(ulen) + Int(plen))
    }

    /// RFC 1928 §4 request. Reports unsupported commands and address types as soon as the header shows them.
    public static func parseRequest(_ buffer: ByteBuffer) -> Socks5ParseResult<Socks5Request> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == Socks5.version else {
            return .invalid(.generalFailure, reason: "request version \(version), expected 5")
        }
        guard let cmd = buffer.getInteger(at: base + 1, as: UInt8.self) else { return .incomplete }
        guard let command = Socks5Command(rawValue: cmd) else {
            return .invalid(.commandNotSupported, reason: "unknown command \(cmd)")
        }
        guard let rsv = buffer.getInteger(at: base + 2, as: UInt8.self) else { return .incomplete }
        guard rsv == Socks5.reserved else { return .invalid(.generalFailure, reason: "RSV \(rsv) is not 0") }
        switch parseAddressAndPort(buffer, at: base + 3) {
        case .incomplete:
            return .incomplete
        case .invalid(let code, let reason):
            return .invalid(code, reason: reason)
        case .complete(let target, let length):
            return .complete(Socks5Request(command: command, address: target.address, port: target.port),
                             length: 3 + length)
        }
    }

    /// RFC 1928 §6 reply (parsed by the client app's snooper).
    public static func parseReply(_ buffer: ByteBuffer) -> Socks5ParseResult<Socks5Reply> {
        let base = buffer.readerIndex
        guard let version = buffer.getInteger(at: base, as: UInt8.self) else { return .incomplete }
        guard version == Socks5.version else {
            return .invalid(.generalFailure, reason: "reply version \(version), expected 5")
        }
        guard let rep = buffer.getInteger(at: base + 1, as: UInt8.self),
              buffer.getInteger(at: base + 2, as: UInt8.self) != nil else { return .incomplete }
        switch parseAddressAndPort(buffer, at: base + 3) {
        case .incomplete:
            return .incomplete
        case .invalid(let code, let reason):
            return .invalid(code, reason: reason)
        case .complete(let bound, let length):
            return .complete(Socks5Reply(code: rep, boundAddress: bound.address, boundPort: bound.port),
                             length: 3 + length)
        }
    }

    /// `ATYP ADDR PORT` at `offset` (RFC 1928 §4, §5); the length counts all three.
    public static func parseAddressAndPort(_ buffer: ByteBuffer, at offset: Int)
        -> Socks5ParseResult<AddressAndPort> {
        guard let atyp = buffer.getInteger(at: offset, as: UInt8.self) else { return .incomplete }
        let address: Socks5Address
        let addressLength: Int
        switch Socks5AddressType(rawValue: atyp) {
        case .ipv4:
            guard let a = buffer.getInteger(at: offset + 1, as: UInt32.self) else { return .incomplete }
            address = .ipv4(a)
            addressLength = Socks5AddressType.ipv4Length
        case .ipv6:
            guard let hi = buffer.getInteger(at: offset + 1, as: UInt64.self),
                  let lo = buffer.getInteger(at: offset + 9, as: UInt64.self) else { return .incomplete }
            address = .ipv6(hi, lo)
            addressLength = Socks5AddressType.ipv6Length
        case .domainName:
            guard let length = buffer.getInteger(at: offset + 1, as: UInt8.self) else { return .incomplete }
            guard length > 0 else { return .invalid(.generalFailure, reason: "empty domain name") }
            guard let view = buffer.viewBytes(at: offset + 2, length: Int(length)) else { return .incomplete }
            // Host names are printable ASCII (IDNs arrive as punycode); reject control bytes and spaces.
            guard view.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                return .invalid(.generalFailure, reason: "domain name has non-printable bytes")
            }
            address = .domain(String(decoding: view, as: UTF8.self))
            addressLength = 1 + Int(length)
        case nil:
            return .invalid(.addressTypeNotSupported, reason: "unknown address type \(atyp)")
        }
        guard let port = buffer.getInteger(at: offset + 1 + addressLength, as: UInt16.self) else {
            return .incomplete
        }
        return .complete(AddressAndPort(address: address, port: port), length: 1 + addressLength + 2)
    }

    public struct AddressAndPort: Equatable, Sendable {
        public var address: Socks5Address
        public var port: UInt16
    }
}
