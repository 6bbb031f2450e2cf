import SkywireConfig

/// Strict reading of one JSON object: duplicate or unknown members, and members of the wrong
/// type, are errors naming the member (400).
struct DiscoveryJSONReader {
    private var members: [String: JSONValue] = [:]
    private let what: String

    init(_ value: JSONValue, what: String, allowed: Set<String>) throws(DiscoveryError) {
        self.what = what
        guard case .object(let list) = value else { throw .badRequest("\(what): expected an object, got \(value.typeName)") }
        for m in list {
            guard allowed.contains(m.name) else {
                throw .badRequest("\(what): unknown field \"\(m.name)\" (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard members[m.name] == nil else { throw .badRequest("\(what): field \"\(m.name)\" appears twice") }
            members[m.name] = m.value
        }
    }

    /// Parses `bytes` as one JSON object.
    init(bytes: [UInt8], what: String, allowed: Set<String>) throws(DiscoveryError) {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            throw .badRequest("\(what): malformed JSON at line \(error.line), column \(error.column): \(error.message)")
        }
        try self.init(value, what: what, allowed: allowed)
    }

    func has(_ name: String) -> Bool { members[name] != nil && members[name] != .null }

    /// A required string field: missing or null is an error.
    func string(_ name: String) throws(DiscoveryError) -> String {
        guard let s = try optionalString(name) else { throw .badRequest("\(what): missing field \"\(name)\"") }
        return s
    }

    /// An optional string field: nil when missing or null.
    func optionalString(_ name: String) throws(DiscoveryError) -> String? {
        switch members[name] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        case let v?: throw .badRequest("\(what): \"\(name)\" must be a string, got \(v.typeName)")
        }
    }

    func bool(_ name: String, default def: Bool) throws(DiscoveryError) -> Bool {
        switch members[name] {
        case nil, .null?: return def
        case .bool(let b)?: return b
        case let v?: throw .badRequest("\(what): \"\(name)\" must be a boolean, got \(v.typeName)")
        }
    }

    func int(_ name: String, required: Bool = true) throws(DiscoveryError) -> Int64? {
        switch members[name] {
        case nil, .null?:
            if required { throw .badRequest("\(what): missing field \"\(name)\"") }
            return nil
        case .number(let n)?:
            guard let v = Int64(n) else { throw .badRequest("\(what): \"\(name)\" must be an integer, got \(n)") }
            return v
        case let v?: throw .badRequest("\(what): \"\(name)\" must be an integer, got \(v.typeName)")
        }
    }

    func array(_ name: String) throws(DiscoveryError) -> [JSONValue]? {
        switch members[name] {
        case nil, .null?: return nil
        case .array(let a)?: return a
        case let v?: throw .badRequest("\(what): \"\(name)\" must be an array, got \(v.typeName)")
        }
    }

    func raw(_ name: String) -> JSONValue? {
        if case .null? = members[name] { return nil }
        return members[name]
    }
}
