extension JSONValue {
    /// One-line JSON text (RFC 8259), members in the order given.
    public func compact() -> String {
        var out = ""
        writeCompact(into: &out)
        return out
    }

    private func writeCompact(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): out += "\"" + JSONValue.escaped(s) + "\""
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeCompact(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += "," }
                out += "\"" + JSONValue.escaped(m.name) + "\":"
                m.value.writeCompact(into: &out)
            }
            out += "}"
        }
    }

    /// An object from name/value pairs.
    public static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(pairs.map { Member(name: $0.key, value: $0.value) })
    }

    public static func int(_ v: Int64) -> JSONValue { .number(String(v)) }
}
