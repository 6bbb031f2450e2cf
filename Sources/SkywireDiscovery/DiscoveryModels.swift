import SkywireConfig
import SkywireCrypto

/// Body of `PUT /v1/transports/{pk}`: `{"stcpr": ["host:port", …], "sudph": true, "dmsg": ["relay pk", …]}`
/// (`dmsg` optional: the relay servers the visor is reachable through, docs/discovery.md).
public struct TransportRegistration: Equatable, Sendable {
    public var stcpr: [String]
    public var sudph: Bool
    public var dmsg: [PublicKey]

    public init(stcpr: [String], sudph: Bool, dmsg: [PublicKey] = []) {
        self.stcpr = stcpr
        self.sudph = sudph
        self.dmsg = dmsg
    }

    /// `dmsg`: at most `DiscoveryAPI.maxDmsgRelays` distinct valid keys (`what` names the body in errors).
    static func relayKeys(_ items: [JSONValue]?, what: String) throws(DiscoveryError) -> [PublicKey] {
        guard let items else { return [] }
        guard items.count <= DiscoveryAPI.maxDmsgRelays else {
            throw .badRequest("\(what): \(items.count) dmsg relays, at most \(DiscoveryAPI.maxDmsgRelays)")
        }
        var keys: [PublicKey] = []
        for item in items {
            guard case .string(let s) = item else { throw .badRequest("\(what): dmsg items must be strings, got \(item.typeName)") }
            guard let key = try? PublicKey(hex: s) else {
                throw .badRequest("\(what): dmsg relay \"\(s.prefix(80))\" is not a public key (64 lowercase hex characters)")
            }
            guard !keys.contains(key) else { throw .badRequest("\(what): duplicate dmsg relay \(key.hex)") }
            keys.append(key)
        }
        return keys
    }

    public static func decode(_ body: [UInt8]) throws(DiscoveryError) -> TransportRegistration {
        let r = try DiscoveryJSONReader(bytes: body, what: "transport registration", allowed: ["stcpr", "sudph", "dmsg"])
        var addrs: [String] = []
        for item in try r.array("stcpr") ?? [] {
            guard case .string(let s) = item else { throw .badRequest("transport registration: \"stcpr\" items must be strings, got \(item.typeName)") }
            guard case .success = HostPort.parse(s) else {
                throw .badRequest("transport registration: stcpr address \"\(s.prefix(80))\" is not host:port")
            }
            addrs.append(s)
        }
        guard addrs.count <= DiscoveryAPI.maxStcprAddresses else {
            throw .badRequest("transport registration: \(addrs.count) stcpr addresses, at most \(DiscoveryAPI.maxStcprAddresses)")
        }
        guard Set(addrs).count == addrs.count else { throw .badRequest("transport registration: duplicate stcpr address") }
        return TransportRegistration(stcpr: addrs, sudph: try r.bool("sudph", default: false),
                                     dmsg: try relayKeys(r.array("dmsg"), what: "transport registration"))
    }

    /// `dmsg` only when the visor has relays (a body without it is what older services accept).
    public func json() -> JSONValue {
        var m: [JSONValue.Member] = [.init(name: "stcpr", value: .array(stcpr.map { .string($0) })),
                                     .init(name: "sudph", value: .bool(sudph))]
        if !dmsg.isEmpty { m.append(.init(name: "dmsg", value: .array(dmsg.map { .string($0.hex) }))) }
        return .object(m)
    }
}

/// Body of `PUT /v1/services/{type}/{pk}`.
public struct ServiceRegistration: Equatable, Sendable {
    public var version: String
    public var country: String
    public var label: String?
    public var stats: [String: Int64]?

    public init(version: String, country: String, label: String? = nil, stats: [String: Int64]? = nil) {
        self.version = version
        self.country = country
        self.label = label
        self.stats = stats
    }

    public static func decode(_ body: [UInt8]) throws(DiscoveryError) -> ServiceRegistration {
        let r = try DiscoveryJSONReader(bytes: body, what: "service registration",
                                        allowed: ["version", "country", "label", "stats"])
        let version = try r.string("version")
        try DiscoveryValidation.checkVersion(version)
        let country = try r.string("country")
        try DiscoveryValidation.checkCountry(country)
        let label = try r.optionalString("label")
        if let label { try DiscoveryValidation.checkLabel(label) }
        var stats: [String: Int64]? = nil
        if let raw = r.raw("stats") {
            stats = try DiscoveryValidation.stats(raw)
        }
        return ServiceRegistration(version: version, country: country, label: label, stats: stats)
    }

    public func json() -> JSONValue {
        var m: [JSONValue.Member] = [.init(name: "version", value: .string(version)),
                                     .init(name: "country", value: .string(country))]
        if let label { m.append(.init(name: "label", value: .string(label))) }
        if let stats { m.append(.init(name: "stats", value: DiscoveryValidation.statsJSON(stats))) }
        return .object(m)
    }
}

/// A live transport entry (`GET /v1/transports/{pk}`).
public struct TransportEntry: Equatable, Sendable {
    public var pk: String
    public var stcpr: [String]
    /// The sudph address the rendezvous observed, when the visor has a live binding.
    public var sudph: String?
    /// The dmsg relay servers the visor is reachable through (empty: none listed).
    public var dmsg: [PublicKey]
    public var expiresMs: Int64

    public init(pk: String, stcpr: [String], sudph: String?, dmsg: [PublicKey] = [], expiresMs: Int64) {
        self.pk = pk
        self.stcpr = stcpr
        self.sudph = sudph
        self.dmsg = dmsg
        self.expiresMs = expiresMs
    }

    public func json() -> JSONValue {
        .object(["pk": .string(pk), "stcpr": .array(stcpr.map { .string($0) }),
                 "sudph": sudph.map { .string($0) } ?? .null, "dmsg": .array(dmsg.map { .string($0.hex) }),
                 "expires_ms": .int(expiresMs)])
    }

    /// An entry from a service before `dmsg` has none.
    public static func decode(_ body: [UInt8]) throws(DiscoveryError) -> TransportEntry {
        let r = try DiscoveryJSONReader(bytes: body, what: "transport entry", allowed: ["pk", "stcpr", "sudph", "dmsg", "expires_ms"])
        var addrs: [String] = []
        for item in try r.array("stcpr") ?? [] {
            guard case .string(let s) = item else { throw .badRequest("transport entry: stcpr items must be strings") }
            addrs.append(s)
        }
        return TransportEntry(pk: try r.string("pk"), stcpr: addrs, sudph: try r.optionalString("sudph"),
                              dmsg: try TransportRegistration.relayKeys(r.array("dmsg"), what: "transport entry"),
                              expiresMs: try r.int("expires_ms")!)
    }
}

/// A live service entry (`GET /v1/services/{type}`).
public struct ServiceEntry: Equatable, Sendable {
    public var pk: String
    public var type: DiscoveryServiceType
    public var registration: ServiceRegistration
    public var expiresMs: Int64

    public init(pk: String, type: DiscoveryServiceType, registration: ServiceRegistration, expiresMs: Int64) {
        self.pk = pk
        self.type = type
        self.registration = registration
        self.expiresMs = expiresMs
    }

    public func json() -> JSONValue {
        .object(["pk": .string(pk), "type": .string(type.rawValue), "version": .string(registration.version),
                 "country": .string(registration.country),
                 "label": registration.label.map { .string($0) } ?? .null,
                 "stats": registration.stats.map { DiscoveryValidation.statsJSON($0) } ?? .null,
                 "expires_ms": .int(expiresMs)])
    }

    static func decode(_ value: JSONValue) throws(DiscoveryError) -> ServiceEntry {
        let r = try DiscoveryJSONReader(value, what: "service entry",
                                        allowed: ["pk", "type", "version", "country", "label", "stats", "expires_ms"])
        let typeName = try r.string("type")
        guard let type = DiscoveryServiceType(rawValue: typeName) else { throw .badRequest("service entry: unknown type \"\(typeName)\"") }
        var stats: [String: Int64]? = nil
        if let raw = r.raw("stats") { stats = try DiscoveryValidation.stats(raw) }
        return ServiceEntry(pk: try r.string("pk"), type: type,
                            registration: ServiceRegistration(version: try r.string("version"), country: try r.string("country"),
                                                              label: try r.optionalString("label"), stats: stats),
                            expiresMs: try r.int("expires_ms")!)
    }

    /// Decodes a `{"services": [...]}` listing (the answer without `limit`).
    public static func decodeList(_ body: [UInt8]) throws(DiscoveryError) -> [ServiceEntry] {
        try decodePage(body).entries
    }

    /// Decodes one page `{"services": [...], "next": "PK" | null}`; `next` is the `after` of the
    /// following page, nil on the last.
    public static func decodePage(_ body: [UInt8]) throws(DiscoveryError) -> (entries: [ServiceEntry], next: String?) {
        let r = try DiscoveryJSONReader(bytes: body, what: "service list", allowed: ["services", "next"])
        var out: [ServiceEntry] = []
        for item in try r.array("services") ?? [] { out.append(try decode(item)) }
        let next = try r.optionalString("next")
        if let next, !DiscoveryValidation.isPublicKeyHex(next) { throw .badRequest("service list: \"next\" is not a public key") }
        return (out, next)
    }
}

/// Field rules shared by the service and its clients.
public enum DiscoveryValidation {
    /// ISO 3166-1 alpha-2 form: two uppercase ASCII letters.
    public static func checkCountry(_ s: String) throws(DiscoveryError) {
        let u = Array(s.utf8)
        guard u.count == 2, u.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            throw .badRequest("country \"\(s.prefix(16))\" is not an ISO 3166-1 alpha-2 code (two uppercase letters, e.g. DE)")
        }
    }

    /// 1–32 characters of `[0-9A-Za-z.+-]`.
    public static func checkVersion(_ s: String) throws(DiscoveryError) {
        let u = Array(s.utf8)
        guard (1...32).contains(u.count), u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }) else {
            throw .badRequest("version \"\(s.prefix(40))\" must be 1-32 characters of 0-9 A-Z a-z . + -")
        }
    }

    /// At most 64 characters, no control characters.
    public static func checkLabel(_ s: String) throws(DiscoveryError) {
        guard s.count <= DiscoveryAPI.maxLabelCharacters else { throw .badRequest("label has \(s.count) characters, at most \(DiscoveryAPI.maxLabelCharacters)") }
        guard !s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw .badRequest("label contains a control character")
        }
    }

    /// `stats`: an object of at most 16 members, names 1–32 of `[a-z0-9_]`, values integers ≥ 0.
    public static func stats(_ value: JSONValue) throws(DiscoveryError) -> [String: Int64] {
        guard case .object(let members) = value else { throw .badRequest("\"stats\" must be an object, got \(value.typeName)") }
        guard members.count <= 16 else { throw .badRequest("\"stats\" has \(members.count) members, at most 16") }
        var out: [String: Int64] = [:]
        for m in members {
            let u = Array(m.name.utf8)
            guard (1...32).contains(u.count), u.allSatisfy({ ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "_") }) else {
                throw .badRequest("stats name \"\(m.name.prefix(40))\" must be 1-32 characters of a-z 0-9 _")
            }
            guard out[m.name] == nil else { throw .badRequest("stats name \"\(m.name)\" appears twice") }
            guard case .number(let n) = m.value, let v = Int64(n), v >= 0 else {
                throw .badRequest("stats \"\(m.name)\" must be an integer >= 0")
            }
            out[m.name] = v
        }
        return out
    }

    public static func statsJSON(_ stats: [String: Int64]) -> JSONValue {
        .object(stats.keys.sorted().map { JSONValue.Member(name: $0, value: .int(stats[$0]!)) })
    }

    /// 64 lowercase hex characters.
    public static func isPublicKeyHex(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return u.count == 64 && u.allSatisfy(isLowerHex)
    }

    static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }

    static func isAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
            || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }
}
