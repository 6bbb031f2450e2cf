/// The little HTTP/1.1 (RFC 9112) a discovery client needs: the base URL, request bytes and
/// response parsing. Pure; the caller owns the socket.
public struct DiscoveryURL: Equatable, Sendable {
    public var host: String
    public var port: UInt16

    /// `http://HOST[:PORT]` with an optional trailing `/` (no path, no https: the API is public
    /// data plus signed writes). IPv6 hosts in brackets.
    public init(_ text: String) throws(DiscoveryError) {
        guard text.hasPrefix("http://") else { throw .badRequest("discovery URL \"\(text.prefix(80))\" must start with http://") }
        var rest = Substring(text.dropFirst("http://".count))
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@"), !rest.contains("?") else {
            throw .badRequest("discovery URL \"\(text.prefix(80))\" must be http://HOST[:PORT] with no path")
        }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .badRequest("discovery URL: unclosed '['") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.isEmpty { port = 80 } else {
                guard after.hasPrefix(":"), let p = UInt16(after.dropFirst()), p > 0 else { throw .badRequest("discovery URL: bad port") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else { throw .badRequest("discovery URL: bad port \"\(rest[rest.index(after: colon)...].prefix(10))\"") }
            port = p
        } else {
            host = String(rest)
            port = 80
        }
        guard !host.isEmpty else { throw .badRequest("discovery URL: empty host") }
    }
}

public enum DiscoveryHTTP {
    /// Largest response a client accepts.
    public static let maxResponseBytes = 1 << 20

    /// Request bytes: `Connection: close`, `Content-Length` always.
    public static func request(method: String, target: String, host: String, headers: [(name: String, value: String)] = [],
                               body: [UInt8] = []) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { text += "Content-Type: application/json\r\n" }
        for h in headers { text += "\(h.name): \(h.value)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }

    /// Parses a complete response read until the server closed: status and body (by
    /// Content-Length, or everything after the header when absent). Chunked bodies are refused.
    public static func parseResponse(_ bytes: [UInt8]) throws(DiscoveryError) -> (status: Int, body: [UInt8]) {
        let sep: [UInt8] = [13, 10, 13, 10]
        var end: Int? = nil
        if bytes.count >= 4 {
            for i in 0...(bytes.count - 4) where bytes[i] == 13 && Array(bytes[i..<i + 4]) == sep { end = i; break }
        }
        guard let end else { throw DiscoveryError(502, "discovery answered with an incomplete HTTP header") }
        let head = String(decoding: bytes[..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw DiscoveryError(502, "discovery answered with a bad status line: \(lines[0].prefix(60))")
        }
        var length: Int? = nil
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces
            if name == "content-length" { length = Int(value) }
            if name == "transfer-encoding" { throw DiscoveryError(502, "discovery answered with Transfer-Encoding \(value), not supported") }
        }
        var body = Array(bytes[(end + 4)...])
        if let length {
            guard body.count >= length else { throw DiscoveryError(502, "discovery response truncated: \(body.count) of \(length) bytes") }
            body = Array(body.prefix(length))
        }
        return (status, body)
    }

    /// The `error` text of a `{"error": "…"}` body, or the body itself.
    public static func errorMessage(_ body: [UInt8]) -> String {
        if let r = try? DiscoveryJSONReader(bytes: body, what: "error", allowed: ["error"]), let s = try? r.string("error") { return s }
        return String(decoding: body.prefix(200), as: UTF8.self)
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
