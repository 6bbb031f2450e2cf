/// The web UI's HTTP/1.1 (RFC 9112), reduced to what a browser sends to it: one request per
/// connection, a body only with Content-Length, no chunked bodies. Pure: bytes in, a request
/// or a refusal out, every size bounded before it is buffered.
public struct UIHTTPRequest: Sendable, Equatable {
    public var method: String
    /// The path without the query (`/api/status`).
    public var path: String
    /// Query parameters, percent-decoded (RFC 3986 §2.1), `+` as space.
    public var query: [String: String]
    /// Header names lowercased; a repeated header keeps its first value.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The cookie `name` from the Cookie header (RFC 6265 §5.4), if present.
    public func cookie(_ name: String) -> String? {
        guard let header = headers["cookie"] else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingSpaces
            guard let eq = pair.firstIndex(of: "=") else { continue }
            if pair[..<eq] == name { return String(pair[pair.index(after: eq)...]) }
        }
        return nil
    }
}

/// A response: status, headers, body. `Content-Length`, `Connection: close` and the security
/// headers are added when it is encoded.
public struct UIHTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: UIHTTPResponse, b: UIHTTPResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// Sent with every response: no framing by other sites, no MIME sniffing, no referrer
    /// (the login token sits in the fragment, never in a request, but keep it that way),
    /// nothing loaded from anywhere but the visor itself.
    static let securityHeaders: [(String, String)] = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy",
         "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    ]

    public func encoded() -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (k, v) in headers + Self.securityHeaders { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 421: "Misdirected Request"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}

/// Incremental request parser: feed bytes until it returns a request or a refusal.
public struct UIHTTPParser: Sendable {
    /// Request line and headers together (browsers send about 1 KiB).
    public static let maxHeadBytes = 8 * 1024
    public static let maxHeaderCount = 48
    /// Largest body: the API's JSON requests are a few hundred bytes.
    public static let maxBodyBytes = 16 * 1024

    public enum Outcome: Sendable, Equatable {
        case needMore
        case request(UIHTTPRequest)
        /// Refused: answer with this status and message, then close.
        case refused(Int, String)
    }

    private var buffer: [UInt8] = []
    private var head: UIHTTPRequest?
    private var bodyLength = 0

    public init() {}

    public mutating func feed(_ bytes: some Collection<UInt8>) -> Outcome {
        buffer.append(contentsOf: bytes)
        if head == nil {
            guard let end = Self.headEnd(buffer) else {
                return buffer.count > Self.maxHeadBytes ? .refused(431, "request head longer than \(Self.maxHeadBytes) bytes") : .needMore
            }
            guard end <= Self.maxHeadBytes else { return .refused(431, "request head longer than \(Self.maxHeadBytes) bytes") }
            switch Self.parseHead(Array(buffer[..<end])) {
            case .failure(let refusal): return .refused(refusal.status, refusal.message)
            case .success(let (request, length)):
                head = request
                bodyLength = length
                buffer.removeFirst(end + 4)
            }
        }
        guard var request = head else { return .needMore }
        guard buffer.count >= bodyLength else { return .needMore }
        request.body = Array(buffer.prefix(bodyLength))
        return .request(request)
    }

    struct Refusal: Error { let status: Int; let message: String }

    /// Index of the CRLFCRLF ending the head.
    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }

    static func parseHead(_ bytes: [UInt8]) -> Result<(UIHTTPRequest, Int), Refusal> {
        // Header values are visible ASCII, space and tab (RFC 9110 §5.5); anything else is refused.
        guard bytes.allSatisfy({ $0 == 9 || $0 == 10 || $0 == 13 || (0x20...0x7e).contains($0) }) else {
            return .failure(Refusal(status: 400, message: "non-ASCII or control bytes in the request head"))
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let requestLine = lines.first else { return .failure(Refusal(status: 400, message: "empty request")) }
        guard !requestLine.contains(where: { $0 == "\r" || $0 == "\n" }) else {
            return .failure(Refusal(status: 400, message: "a bare CR or LF in the request head"))
        }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            return .failure(Refusal(status: 400, message: "malformed request line"))
        }
        let method = String(parts[0])
        guard !method.isEmpty, method.allSatisfy({ $0.isUppercase }) else { return .failure(Refusal(status: 400, message: "malformed method")) }
        let target = parts[1]
        guard target.hasPrefix("/") else { return .failure(Refusal(status: 400, message: "the request target must be a path")) }
        var headers: [String: String] = [:]
        let fields = lines.dropFirst()
        guard fields.count <= maxHeaderCount else { return .failure(Refusal(status: 431, message: "more than \(maxHeaderCount) header fields")) }
        for line in fields {
            guard !line.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                return .failure(Refusal(status: 400, message: "a bare CR or LF in the request head"))
            }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                return .failure(Refusal(status: 400, message: "malformed header line"))
            }
            let name = line[..<colon].lowercased()
            // No whitespace before the colon (RFC 9112 §5.1) and no obsolete line folding.
            guard !name.contains(" "), !name.contains("\t") else { return .failure(Refusal(status: 400, message: "whitespace in a header name")) }
            let value = line[line.index(after: colon)...].trimmingSpaces
            if name == "content-length", let previous = headers[name], previous != value {
                return .failure(Refusal(status: 400, message: "conflicting Content-Length headers"))
            }
            if headers[name] == nil { headers[name] = String(value) }
        }
        if headers["transfer-encoding"] != nil {
            return .failure(Refusal(status: 501, message: "Transfer-Encoding is not supported; send Content-Length"))
        }
        var length = 0
        if let text = headers["content-length"] {
            guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text) else {
                return .failure(Refusal(status: 400, message: "malformed Content-Length"))
            }
            guard n <= maxBodyBytes else { return .failure(Refusal(status: 413, message: "body longer than \(maxBodyBytes) bytes")) }
            length = n
        }
        let (path, queryText) = target.firstIndex(of: "?").map { (target[..<$0], target[target.index(after: $0)...]) } ?? (target[...], "")
        guard let decodedPath = percentDecode(path, plusIsSpace: false) else {
            return .failure(Refusal(status: 400, message: "malformed percent-encoding in the path"))
        }
        var query: [String: String] = [:]
        for item in queryText.split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = percentDecode(kv[0], plusIsSpace: true), let v = percentDecode(kv.count > 1 ? kv[1] : "", plusIsSpace: true) else {
                return .failure(Refusal(status: 400, message: "malformed percent-encoding in the query"))
            }
            if query[k] == nil { query[k] = v }
        }
        return .success((UIHTTPRequest(method: method, path: decodedPath, query: query, headers: headers), length))
    }

    /// RFC 3986 §2.1; nil for a bad escape or bytes that are not UTF-8.
    static func percentDecode(_ s: Substring, plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it.removeFirst()), let lo = hexValue(it.removeFirst()) else { return nil }
                out.append(hi << 4 | lo)
            } else if c == UInt8(ascii: "+") && plusIsSpace {
                out.append(UInt8(ascii: " "))
            } else {
                out.append(c)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 65...70: c - 55
        case 97...102: c - 87
        default: nil
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
