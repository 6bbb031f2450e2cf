/// A parsed JSON document (RFC 8259). Objects keep their members in file order and keep
/// duplicate names, so validation can report them instead of silently picking one.
/// Numbers keep their literal text, so range checks never go through a lossy Double.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([Member])

    public struct Member: Equatable, Sendable {
        public var name: String
        public var value: JSONValue

        public init(name: String, value: JSONValue) {
            self.name = name
            self.value = value
        }
    }

    /// The JSON type name used in "expected X, got Y" messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

// MARK: - Writing

extension JSONValue {
    /// Indentation of one nesting level in the written form.
    static let indentUnit = "  "

    /// Pretty-printed text: two-space indentation, object members sorted by name (byte order),
    /// non-ASCII written as UTF-8, a trailing newline. The same value always gives the same text.
    public func prettyPrinted() -> String {
        var out = ""
        write(into: &out, indent: "")
        out.append("\n")
        return out
    }

    private func write(into out: inout String, indent: String) {
        switch self {
        case .null: out.append("null")
        case .bool(let b): out.append(b ? "true" : "false")
        case .number(let literal): out.append(literal)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let items):
            if items.isEmpty { out.append("[]"); return }
            let inner = indent + JSONValue.indentUnit
            out.append("[\n")
            for (i, item) in items.enumerated() {
                out.append(inner)
                item.write(into: &out, indent: inner)
                out.append(i == items.count - 1 ? "\n" : ",\n")
            }
            out.append(indent + "]")
        case .object(let members):
            if members.isEmpty { out.append("{}"); return }
            let inner = indent + JSONValue.indentUnit
            let sorted = members.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
            out.append("{\n")
            for (i, m) in sorted.enumerated() {
                out.append(inner)
                JSONValue.writeString(m.name, into: &out)
                out.append(": ")
                m.value.write(into: &out, indent: inner)
                out.append(i == sorted.count - 1 ? "\n" : ",\n")
            }
            out.append(indent + "}")
        }
    }

    /// RFC 8259 §7: escapes `"`, `\` and the control characters U+0000...U+001F.
    static func writeString(_ s: String, into out: inout String) {
        out.append("\"")
        out.append(escaped(s))
        out.append("\"")
    }

    public static func escaped(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append("\\\"")
            case "\\": out.append("\\\\")
            case "\n": out.append("\\n")
            case "\r": out.append("\\r")
            case "\t": out.append("\\t")
            case "\u{08}": out.append("\\b")
            case "\u{0C}": out.append("\\f")
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
