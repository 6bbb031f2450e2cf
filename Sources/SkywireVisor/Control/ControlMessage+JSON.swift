import SkywireConfig

/// The control socket's messages as JSON (docs/cli.md), read and written with SkywireConfig's
/// JSON implementation (`JSONParser`, `JSONValue`): the one the config and discovery use.
protocol ControlJSONCodable {
    init(json: JSONValue) throws
    var json: JSONValue { get }
}

extension ControlValue: ControlJSONCodable {
    /// Numbers without a fraction or exponent that fit in Int64 become `int`, other numbers
    /// `double`; an object's repeated member name keeps its last value.
    public init(json: JSONValue) throws {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let literal):
            if let i = Int64(literal) {
                self = .int(i)
            } else if let d = Double(literal), d.isFinite {
                self = .double(d)
            } else {
                throw ControlError(.badRequest, "the number \(literal) is out of range")
            }
        case .string(let s): self = .string(s)
        case .array(let items): self = .array(try items.map { try ControlValue(json: $0) })
        case .object(let members):
            var o: [String: ControlValue] = [:]
            for m in members { o[m.name] = try ControlValue(json: m.value) }
            self = .object(o)
        }
    }

    /// Object members sorted by name, so the same value is always the same text. A double
    /// that is not finite (JSON has no such number) is written as null.
    public var json: JSONValue {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .int(let i): .number(String(i))
        case .double(let d): d.isFinite ? .number(Self.literal(d)) : .null
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(\.json))
        case .object(let o):
            .object(o.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { JSONValue.Member(name: $0, value: o[$0]?.json ?? .null) })
        }
    }

    /// Swift's shortest round-trip text of `d` (`0.25`, `1e-05`, `1e+20`): a JSON number as it is.
    static func literal(_ d: Double) -> String { d.description }

    /// Pretty-printed JSON (two-space indentation, sorted keys, a trailing newline): `--json`.
    public var prettyPrinted: String { json.prettyPrinted() }
}

extension ControlRequest: ControlJSONCodable {
    init(json: JSONValue) throws {
        let o = try Self.object(json)
        guard let id = o["id"]?.intValue, let idInt = Int(exactly: id) else {
            throw ControlError(.badRequest, "member \"id\" must be an integer")
        }
        guard let method = o["method"]?.stringValue else { throw ControlError(.badRequest, "member \"method\" must be a string") }
        var params: [String: ControlValue] = [:]
        if let p = o["params"], p != .null {
            guard let obj = p.objectValue else { throw ControlError(.badRequest, "member \"params\" must be an object") }
            params = obj
        }
        self.init(id: idInt, method: method, params: params)
    }

    var json: JSONValue {
        ControlValue.object(["id": .int(Int64(id)), "method": .string(method), "params": .object(params)]).json
    }

    static func object(_ json: JSONValue) throws -> [String: ControlValue] {
        guard case .object(let o) = try ControlValue(json: json) else {
            throw ControlError(.badRequest, "expected a JSON object, got \(json.typeName)")
        }
        return o
    }
}

extension ControlResponse: ControlJSONCodable {
    init(json: JSONValue) throws {
        let o = try ControlRequest.object(json)
        let id = o["id"]?.intValue.flatMap { Int(exactly: $0) } ?? 0
        if let e = o["error"], e != .null {
            guard let code = e["code"]?.stringValue, let message = e["message"]?.stringValue else {
                throw ControlError(.failed, "malformed error in the visor's response")
            }
            self.init(id: id, errorBody: ControlErrorBody(code: code, message: message))
        } else {
            self.init(id: id, result: o["result"] ?? .null)
        }
    }

    var json: JSONValue {
        var o: [String: ControlValue] = ["id": .int(Int64(id))]
        if let error { o["error"] = .object(["code": .string(error.code), "message": .string(error.message)]) }
        if let result { o["result"] = result }
        return ControlValue.object(o).json
    }
}
