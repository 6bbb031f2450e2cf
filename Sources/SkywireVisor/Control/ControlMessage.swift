import SkywireConfig

/// One request on the control socket: a single line of JSON (docs/cli.md).
public struct ControlRequest: Sendable {
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
public struct ControlResponse: Sendable {
    public var id: Int
    public var result: ControlValue?
    public var error: ControlErrorBody?

    public init(id: Int, result: ControlValue) {
        self.id = id
        self.result = result
        self.error = nil
    }

    public init(id: Int, error: ControlError) {
        self.init(id: id, errorBody: ControlErrorBody(code: error.code.rawValue, message: error.message))
    }

    /// An error as the visor sent it (its code may be one this CLI does not know).
    init(id: Int, errorBody: ControlErrorBody) {
        self.id = id
        self.result = nil
        self.error = errorBody
    }
}

public struct ControlErrorBody: Sendable, Equatable {
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
public enum ControlValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([ControlValue])
    case object([String: ControlValue])

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
    /// Maximum length of one request line (what the visor reads from a client).
    static let maxLineBytes = 1 << 20
    /// Maximum length of one response line the CLI reads from its visor: `tp ls` lists every
    /// transport in one line (~420 B each, so 1 MiB stopped at ~2,500 transports; 10,000 are
    /// ~4.2 MB: docs/scale.md).
    static let maxResponseBytes = 64 << 20

    /// One line: compact JSON (SkywireConfig's writer, object members sorted) and a newline.
    static func encodeLine<T: ControlJSONCodable>(_ value: T) throws -> [UInt8] {
        var bytes = Array(value.json.compact().utf8)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// One line without its newline, parsed with SkywireConfig's JSON parser.
    static func decode<T: ControlJSONCodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            throw ControlError(.badRequest, "not JSON: line \(error.line), column \(error.column): \(error.message)")
        }
        return try T(json: value)
    }
}
