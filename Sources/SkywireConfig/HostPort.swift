#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dial address `host:port`: an IPv4 literal, a DNS name, or an IPv6 literal in brackets
/// (`[2001:db8::1]:7777`, RFC 3986 §3.2.2). The port is 1...65535.
public struct HostPort: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// IP literal (IPv6 without brackets) or DNS name.
    public var host: String
    public var port: UInt16

    /// Longest DNS name (RFC 1035 §2.3.4) and label.
    static let maxHostnameLength = 253
    static let maxLabelLength = 63

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; the error text says what is wrong.
    public static func parse(_ text: String) -> Result<HostPort, HostPortError> {
        parse(text, portRequired: true)
    }

    /// With `portRequired == false`, a bare host gives port 0 (used for URL authorities).
    static func parse(_ text: String, portRequired: Bool) -> Result<HostPort, HostPortError> {
        let host: String
        let portText: String?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("unclosed '[' in IPv6 address")) }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                portText = nil
            } else if rest.hasPrefix(":") {
                portText = String(rest.dropFirst())
            } else {
                return .failure(.init("unexpected text after ']'"))
            }
            guard isIPv6(host) else { return .failure(.init("\"\(host)\" is not an IPv6 address")) }
        } else {
            let colons = text.filter { $0 == ":" }.count
            if colons > 1 { return .failure(.init("IPv6 addresses must be written in brackets: [address]:port")) }
            if colons == 1, let colon = text.firstIndex(of: ":") {
                host = String(text[..<colon])
                portText = String(text[text.index(after: colon)...])
            } else {
                host = text
                portText = nil
            }
            if let problem = hostProblem(host) { return .failure(.init(problem)) }
        }
        guard let portText else {
            return portRequired ? .failure(.init("missing ':port'")) : .success(HostPort(host: host, port: 0))
        }
        guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let port = Int(portText), port >= 1, port <= Int(UInt16.max) else {
            return .failure(.init("port \"\(portText)\" is not in 1...65535"))
        }
        return .success(HostPort(host: host, port: UInt16(port)))
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Why `host` is not a usable IPv4 literal or DNS name (RFC 1123 §2.1), or nil.
    static func hostProblem(_ host: String) -> String? {
        if host.isEmpty { return "empty host" }
        let bytes = Array(host.utf8)
        if bytes.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: ".") }) {
            return isIPv4(host) ? nil : "\"\(host)\" is not an IPv4 address"
        }
        if bytes.count > maxHostnameLength { return "host name longer than \(maxHostnameLength) characters" }
        for label in host.split(separator: ".", omittingEmptySubsequences: false) {
            let l = Array(label.utf8)
            let ok = !l.isEmpty && l.count <= maxLabelLength
                && l.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") }
                && l.first != UInt8(ascii: "-") && l.last != UInt8(ascii: "-")
            if !ok { return "\"\(host)\" is not a valid host name" }
        }
        return nil
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    /// inet_pton(AF_INET): dotted quad.
    public static func isIPv4(_ s: String) -> Bool {
        var addr = in_addr()
        return inet_pton(AF_INET, s, &addr) == 1
    }

    /// inet_pton(AF_INET6), no brackets, no zone.
    public static func isIPv6(_ s: String) -> Bool {
        var addr = in6_addr()
        return inet_pton(AF_INET6, s, &addr) == 1
    }
}

/// Why a `host:port` string was rejected.
public struct HostPortError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String

    init(_ description: String) {
        self.description = description
    }
}
