import FoundationEssentials

/// One request on the control socket: a single line of JSON (docs/cli.md).
public struct ControlRequest: Codable, Sendable {
    public var id: Int
    public var method: String
    public var params: [String: ControlValue]

    public init(id: Int = 1, method: String, params: [String: ControlValue] = [:]) {
        self.id = id
        self.method = method
        self.params = params
    }
}

/// One response line: exactly one of `result` and `error` is set.
public struct ControlResponse: Codable, Sendable {
    public var id: Int
    public var result: ControlValue?
    public var error: ControlErrorBody?

    public init(id: Int, result: ControlValue) {
        self.id = id
        self.result = result
        self.error = nil
    }

    public init(id: Int, error: ControlError) {
        self.id = id
        self.result = nil
        self.error = ControlErrorBody(code: error.code.rawValue, message: error.message)
    }
}

public struct ControlErrorBody: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
}

/// An error a control method reports to the CLI.
public struct ControlError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case badRequest = "bad_request"
        case notFound = "not_found"
        case conflict = "conflict"
        case unavailable = "unavailable"
        case forbidden = "forbidden"
        case timeout = "timeout"
        case failed = "failed"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// An app's typed error as the control socket reports it: the code is the app's, mapped
    /// here once (docs/cli.md lists the codes).
    public init(_ error: AppError) {
        let code: Code
        switch error.code {
        case .invalidArguments: code = .badRequest
        case .forbidden: code = .forbidden
        case .notFound: code = .notFound
        case .conflict: code = .conflict
        case .failed: code = .failed
        }
        self.init(code, error.message)
    }

    /// The exit status of `skywire cli` for an error with this code (docs/cli.md): 2 for a bad
    /// request, 1 for every failed operation.
    public var exitStatus: Int32 {
        switch code {
        case .badRequest: ControlError.badRequestExitStatus
        case .notFound, .conflict, .unavailable, .forbidden, .timeout, .failed: ControlError.failedExitStatus
        }
    }

    public static let badRequestExitStatus: Int32 = 2
    public static let failedExitStatus: Int32 = 1
}

/// A JSON value, used for request parameters and results so that the wire format
/// is plain JSON that scripts can produce and read (`--json`).
public enum ControlValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([ControlValue])
    case object([String: ControlValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([ControlValue].self) { self = .array(a); return }
        if let o = try? c.decode([String: ControlValue].self) { self = .object(o); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded(): return Int64(exactly: d)
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [ControlValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: [String: ControlValue]? { if case .object(let o) = self { return o } else { return nil } }

    public subscript(key: String) -> ControlValue? { objectValue?[key] }
}

extension ControlValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: ControlValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, ControlValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension Dictionary where Key == String, Value == ControlValue {
    /// A required string parameter, or a `bad_request` error naming it.
    public func requiredString(_ name: String) throws -> String {
        guard let v = self[name] else { throw ControlError(.badRequest, "missing parameter \"\(name)\"") }
        guard let s = v.stringValue else { throw ControlError(.badRequest, "parameter \"\(name)\" must be a string") }
        return s
    }

    public func optionalString(_ name: String) throws -> String? {
        guard let v = self[name], v != .null else { return nil }
        guard let s = v.stringValue else { throw ControlError(.badRequest, "parameter \"\(name)\" must be a string") }
        return s
    }

    public func optionalInt(_ name: String) throws -> Int64? {
        guard let v = self[name], v != .null else { return nil }
        guard let i = v.intValue else { throw ControlError(.badRequest, "parameter \"\(name)\" must be an integer") }
        return i
    }

    public func optionalBool(_ name: String) throws -> Bool? {
        guard let v = self[name], v != .null else { return nil }
        guard let b = v.boolValue else { throw ControlError(.badRequest, "parameter \"\(name)\" must be true or false") }
        return b
    }
}

enum ControlCodec {
    /// Maximum length of one request or response line.
    static let maxLineBytes = 1 << 20

    static func encodeLine<T: Encodable>(_ value: T) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var bytes = [UInt8](try enc.encode(value))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
