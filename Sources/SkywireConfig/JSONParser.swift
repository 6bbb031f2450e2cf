/// A strict RFC 8259 JSON parser over UTF-8 bytes. Errors carry the 1-based line and column
/// (in characters) where parsing stopped. Nesting is bounded so hostile input cannot
/// exhaust the stack.
public struct JSONParser {
    /// Deepest array/object nesting accepted (a visor config needs 5).
    static let maxDepth = 64

    public struct SyntaxError: Error, Equatable {
        public var line: Int
        public var column: Int
        public var message: String
    }

    private let bytes: [UInt8]
    private var pos = 0

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Parses one complete JSON text; trailing non-whitespace is an error.
    /// A leading UTF-8 byte order mark is ignored (RFC 8259 §8.1 allows that).
    public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> JSONValue {
        var p = JSONParser(bytes: bytes)
        if let bad = firstInvalidUTF8Offset(bytes) {
            throw p.error("the file is not valid UTF-8", at: bad)
        }
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        if bytes.starts(with: bom) { p.pos = bom.count }
        p.skipWhitespace()
        let value = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.pos < bytes.count {
            throw p.error("unexpected \(p.describeCurrent()) after the end of the JSON value")
        }
        return value
    }

    public static func parse(_ text: String) throws(SyntaxError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    // MARK: Values

    private mutating func parseValue(depth: Int) throws(SyntaxError) -> JSONValue {
        guard pos < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected \(describeCurrent()), expected a value")
        }
    }

    private mutating func parseObject(depth: Int) throws(SyntaxError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) levels") }
        pos += 1  // {
        var members: [JSONValue.Member] = []
        skipWhitespace()
        if peek(UInt8(ascii: "}")) { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else {
                throw error("unexpected \(describeCurrent()), expected a member name in double quotes")
            }
            let name = try parseString()
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error("unexpected \(describeCurrent()), expected ':'") }
            pos += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append(.init(name: name, value: value))
            skipWhitespace()
            if peek(UInt8(ascii: ",")) { pos += 1; continue }
            if peek(UInt8(ascii: "}")) { pos += 1; return .object(members) }
            throw error("unexpected \(describeCurrent()), expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws(SyntaxError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth) levels") }
        pos += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            if peek(UInt8(ascii: ",")) { pos += 1; continue }
            if peek(UInt8(ascii: "]")) { pos += 1; return .array(items) }
            throw error("unexpected \(describeCurrent()), expected ',' or ']'")
        }
    }

    /// RFC 8259 §7: escapes, \uXXXX with UTF-16 surrogate pairs, no raw control characters.
    private mutating func parseString() throws(SyntaxError) -> String {
        let start = pos
        pos += 1  // opening quote
        var out = [UInt8]()
        while true {
            guard pos < bytes.count else { throw error("unterminated string", at: start) }
            let c = bytes[pos]
            switch c {
            case UInt8(ascii: "\""):
                pos += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                pos += 1
                guard pos < bytes.count else { throw error("unterminated string", at: start) }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try parseUnicodeEscape()
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw error("invalid escape sequence in string", at: pos - 2)
                }
            default:
                guard c >= 0x20 else {
                    throw error("raw control character in string (write it as an escape)")
                }
                out.append(c)
                pos += 1
            }
        }
    }

    /// After `\u`: four hex digits, or a surrogate pair `\uD8xx\uDCxx`.
    private mutating func parseUnicodeEscape() throws(SyntaxError) -> Unicode.Scalar {
        let escapeStart = pos - 2
        let high = try parseHex4()
        switch high {
        case 0xD800...0xDBFF:
            guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                throw error("unpaired UTF-16 surrogate in \\u escape", at: escapeStart)
            }
            pos += 2
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else {
                throw error("unpaired UTF-16 surrogate in \\u escape", at: escapeStart)
            }
            let value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            guard let scalar = Unicode.Scalar(value) else { throw error("invalid \\u escape", at: escapeStart) }
            return scalar
        case 0xDC00...0xDFFF:
            throw error("unpaired UTF-16 surrogate in \\u escape", at: escapeStart)
        default:
            guard let scalar = Unicode.Scalar(high) else { throw error("invalid \\u escape", at: escapeStart) }
            return scalar
        }
    }

    private mutating func parseHex4() throws(SyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard pos < bytes.count, let d = hexDigit(bytes[pos]) else {
                throw error("\\u must be followed by four hex digits")
            }
            value = value << 4 | UInt32(d)
            pos += 1
        }
        return value
    }

    private func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`; returns the literal.
    private mutating func parseNumber() throws(SyntaxError) -> String {
        let start = pos
        if peek(UInt8(ascii: "-")) { pos += 1 }
        if peek(UInt8(ascii: "0")) {
            pos += 1
            if pos < bytes.count, isDigit(bytes[pos]) { throw error("numbers must not have leading zeros", at: start) }
        } else {
            guard try digits() > 0 else { throw error("invalid number", at: start) }
        }
        if peek(UInt8(ascii: ".")) {
            pos += 1
            guard try digits() > 0 else { throw error("invalid number: digits must follow '.'", at: start) }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            pos += 1
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { pos += 1 }
            guard try digits() > 0 else { throw error("invalid number: digits must follow the exponent", at: start) }
        }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    private mutating func digits() throws(SyntaxError) -> Int {
        var n = 0
        while pos < bytes.count, isDigit(bytes[pos]) { pos += 1; n += 1 }
        return n
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private mutating func expectLiteral(_ word: String) throws(SyntaxError) {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else {
            throw error("unexpected \(describeCurrent()), expected a value")
        }
        pos += w.count
    }

    // MARK: Helpers

    private func peek(_ c: UInt8) -> Bool { pos < bytes.count && bytes[pos] == c }

    /// RFC 8259 §2: space, tab, line feed, carriage return.
    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private func describeCurrent() -> String {
        guard pos < bytes.count else { return "end of input" }
        let c = bytes[pos]
        if c >= 0x21 && c < 0x7F { return "character '\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + String(c, radix: 16)
    }

    private func error(_ message: String, at offset: Int? = nil) -> SyntaxError {
        let (line, column) = Self.lineAndColumn(of: min(offset ?? pos, bytes.count), in: bytes)
        return SyntaxError(line: line, column: column, message: message)
    }

    /// 1-based line and column (counting characters, i.e. UTF-8 lead bytes) of a byte offset.
    static func lineAndColumn(of offset: Int, in bytes: [UInt8]) -> (Int, Int) {
        var line = 1
        var column = 1
        for c in bytes[..<offset] {
            if c == 0x0A {
                line += 1
                column = 1
            } else if c & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    /// Offset of the first byte that is not part of well-formed UTF-8, or nil.
    static func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int? {
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let s):
                offset += UTF8.width(s)
            case .emptyInput:
                return nil
            case .error:
                return offset
            }
        }
    }
}
