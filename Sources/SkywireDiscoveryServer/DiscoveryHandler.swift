import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireWire

/// One HTTP request as the handler sees it: no I/O types.
public struct DiscoveryRequest: Sendable {
    public var method: String
    /// Path with query, exactly as sent (the signed PATH).
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The client's IP address (4 or 16 bytes, network order) for the per-IP write limit; nil: not limited.
    public var remoteAddress: [UInt8]?

    public init(method: String, target: String, headers: [(name: String, value: String)], body: [UInt8],
                remoteAddress: [UInt8]? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
    }

    /// The value of a header (case-insensitive name); nil when absent. Several copies: an error.
    func header(_ name: String) throws(DiscoveryError) -> String? {
        let values = headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        guard values.count <= 1 else { throw .badRequest("header \(name) appears \(values.count) times") }
        return values.first
    }
}

/// What the handler answers, and what the server must do besides.
public struct DiscoveryResponse: Sendable, Equatable {
    public var status: Int
    /// JSON text; empty for 204.
    public var body: String
    /// A PUNCH datagram to send from the rendezvous socket (`POST /v1/punch`).
    public var punch: PunchAction?
    /// Seconds for a `Retry-After` header (429).
    public var retryAfter: Int? = nil

    public struct PunchAction: Sendable, Equatable {
        public var to: RendezvousAddress
        public var datagram: [UInt8]
    }

    static func json(_ status: Int, _ value: JSONValue) -> DiscoveryResponse {
        DiscoveryResponse(status: status, body: value.compact(), punch: nil)
    }

    static func error(_ e: DiscoveryError) -> DiscoveryResponse {
        var r = DiscoveryResponse.json(e.status, .object(["error": .string(e.message)]))
        r.retryAfter = e.retryAfter
        return r
    }
}

/// The HTTP API of docs/discovery.md over a `DiscoveryStore`: routing, signature and replay
/// checks, validation. Pure apart from the store: the clock is a parameter.
public struct DiscoveryHandler: Sendable {
    public let store: any DiscoveryStore
    public let ttlSeconds: Int
    /// The UDP rendezvous address for `GET /v1/info` ("HOST:PORT").
    public let udpAddress: String
    /// Write limits per key and per client address (429).
    public let limits: DiscoveryRateLimits
    /// Accept loopback, private and link-local transport addresses (`--allow-private-addresses`).
    public let allowPrivateAddresses: Bool

    public init(store: any DiscoveryStore, ttlSeconds: Int, udpAddress: String,
                limits: DiscoveryRateLimits = DiscoveryRateLimits(), allowPrivateAddresses: Bool = false) {
        self.store = store
        self.ttlSeconds = ttlSeconds
        self.udpAddress = udpAddress
        self.limits = limits
        self.allowPrivateAddresses = allowPrivateAddresses
    }

    var ttlMs: Int64 { Int64(ttlSeconds) * 1000 }

    public func handle(_ req: DiscoveryRequest, nowMs: Int64) -> DiscoveryResponse {
        do {
            return try route(req, nowMs: nowMs)
        } catch let e as DiscoveryError {
            return .error(e)
        } catch let e as StoreError {
            return .error(DiscoveryError(500, "storage failure: \(e.description)"))
        } catch {
            return .error(DiscoveryError(500, "internal error: \(error)"))
        }
    }

    private func route(_ req: DiscoveryRequest, nowMs: Int64) throws -> DiscoveryResponse {
        guard req.body.count <= DiscoveryAPI.maxBodyBytes else {
            throw DiscoveryError.tooLarge("body of \(req.body.count) bytes, at most \(DiscoveryAPI.maxBodyBytes)")
        }
        let (path, query) = try Self.splitTarget(req.target)
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // parts[0] is "" (the path starts with '/').
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "v1" else { throw DiscoveryError.notFound("no such resource: \(path.prefix(100))") }
        let rest = Array(parts[2...])
        if let ip = req.remoteAddress {
            let reads = req.method == "GET"
            let table = reads ? limits.readsPerIP : limits.perIP
            if let wait = table.take(DiscoveryRateLimits.ipKey(ip), nowMs: nowMs) {
                throw DiscoveryError.tooManyRequests("too many \(reads ? "reads" : "writes") from this address (at most \(table.limit)); retry in \(wait) s",
                                                     retryAfter: wait)
            }
        }
        switch (req.method, rest.count, rest[0]) {
        case ("GET", 1, "info"):
            try Self.noQuery(query)
            return .json(200, .object(["version": .string(DiscoveryAPI.version), "udp": .string(udpAddress), "ttl": .int(Int64(ttlSeconds)),
                                       "private_addresses": .bool(allowPrivateAddresses)]))
        case ("GET", 2, "transports"):
            try Self.noQuery(query)
            let pk = try Self.pathKey(rest[1])
            guard let e = try store.transport(pk: pk, nowMs: nowMs) else { throw DiscoveryError.notFound("unknown key") }
            return .json(200, e.json())
        case ("PUT", 2, "transports"):
            try Self.noQuery(query)
            let pk = try Self.pathKey(rest[1])
            try authenticate(req, pathKey: pk, nowMs: nowMs)
            let reg = try TransportRegistration.decode(req.body)
            if !allowPrivateAddresses {
                for a in reg.stcpr {
                    guard case .success(let hp) = HostPort.parse(a), let why = DiscoveryAddressPolicy.nonPublicReason(host: hp.host) else { continue }
                    throw DiscoveryError.badRequest("transport registration: stcpr address \(a.prefix(80)) is \(why); this service takes public addresses only")
                }
            }
            try store.putTransport(pk: pk, registration: reg, expiresMs: nowMs + ttlMs)
            // What was written, not a second read: a DELETE may run in between.
            let entry = TransportEntry(pk: pk, stcpr: reg.stcpr, sudph: try store.binding(pk: pk, nowMs: nowMs)?.address,
                                       dmsg: reg.dmsg, expiresMs: nowMs + ttlMs)
            return .json(200, entry.json())
        case ("DELETE", 2, "transports"):
            try Self.noQuery(query)
            let pk = try Self.pathKey(rest[1])
            try authenticate(req, pathKey: pk, nowMs: nowMs)
            try Self.emptyBody(req)
            _ = try store.deleteTransport(pk: pk, nowMs: nowMs)
            return DiscoveryResponse(status: 204, body: "", punch: nil)
        case ("GET", 2, "services"):
            let type = try Self.serviceType(rest[1])
            let q = try ServiceQuery(query)
            let pageSize = q.limit ?? DiscoveryAPI.maxPageEntries
            // One more than the page: whether there is a next page.
            let list = try store.services(type: type, country: q.country, version: q.version, after: q.after,
                                          limit: pageSize + 1, nowMs: nowMs)
            let page = list.prefix(pageSize)
            guard q.limit != nil else {
                // A client from before paging: the first page, in the shape it knows.
                return .json(200, .object(["services": .array(page.map { $0.json() })]))
            }
            let next: JSONValue = list.count > pageSize ? .string(page.last?.pk ?? "") : .null
            return .json(200, .object(["services": .array(page.map { $0.json() }), "next": next]))
        case ("PUT", 3, "services"):
            try Self.noQuery(query)
            let type = try Self.serviceType(rest[1])
            let pk = try Self.pathKey(rest[2])
            try authenticate(req, pathKey: pk, nowMs: nowMs)
            let reg = try ServiceRegistration.decode(req.body)
            try store.putService(type: type, pk: pk, registration: reg, expiresMs: nowMs + ttlMs)
            return .json(200, ServiceEntry(pk: pk, type: type, registration: reg, expiresMs: nowMs + ttlMs).json())
        case ("DELETE", 3, "services"):
            try Self.noQuery(query)
            let type = try Self.serviceType(rest[1])
            let pk = try Self.pathKey(rest[2])
            try authenticate(req, pathKey: pk, nowMs: nowMs)
            try Self.emptyBody(req)
            _ = try store.deleteService(type: type, pk: pk, nowMs: nowMs)
            return DiscoveryResponse(status: 204, body: "", punch: nil)
        case ("POST", 2, "punch"):
            try Self.noQuery(query)
            let target = try Self.pathKey(rest[1])
            // The caller is the signer, not the path's key: no 403 here.
            let caller = try authenticate(req, pathKey: nil, nowMs: nowMs)
            try Self.emptyBody(req)
            guard caller != target else { throw DiscoveryError.badRequest("cannot punch to your own key") }
            guard let callerAddr = try store.binding(pk: caller, nowMs: nowMs) else {
                throw DiscoveryError.notFound("no live sudph binding for the caller (send BIND first)")
            }
            guard let targetAddr = try store.binding(pk: target, nowMs: nowMs) else {
                throw DiscoveryError.notFound("no live sudph binding for the target key")
            }
            guard let callerRA = Self.rendezvousAddress(callerAddr.address), let targetRA = Self.rendezvousAddress(targetAddr.address),
                  let targetToken = HexCoding.decode(targetAddr.token), targetToken.count == SudphRendezvous.tokenSize,
                  let callerKey = HexCoding.decode(caller) else {
                throw DiscoveryError(500, "stored binding is not an IP:port with a token")
            }
            let datagram = SudphRendezvous.punch(token: targetToken, peerKey: callerKey, peer: callerRA).encoded()
            var resp = DiscoveryResponse.json(200, .object(["target": .string(targetAddr.address)]))
            resp.punch = .init(to: targetRA, datagram: datagram)
            return resp
        default:
            if ["info", "transports", "services", "punch"].contains(rest[0]) {
                throw DiscoveryError(405, "method \(req.method.prefix(16)) not allowed on \(path.prefix(100))")
            }
            throw DiscoveryError.notFound("no such resource: \(path.prefix(100))")
        }
    }

    // MARK: Signed writes

    /// Checks the four signature headers (docs/discovery.md "Signed writes") and returns the
    /// signer's key. Order: well-formed (400), clock (401), signature (401), path key (403),
    /// key rate (429), nonce replay (401) — a nonce is only remembered for a valid signature.
    @discardableResult
    func authenticate(_ req: DiscoveryRequest, pathKey: String?, nowMs: Int64) throws -> String {
        func required(_ name: String) throws -> String {
            guard let v = try req.header(name) else { throw DiscoveryError.unauthorized("missing header \(name) (writes must be signed)") }
            return v
        }
        let pkHex = try required(DiscoveryAPI.headerPK)
        let tsText = try required(DiscoveryAPI.headerTimestamp)
        let nonceHex = try required(DiscoveryAPI.headerNonce)
        let sigHex = try required(DiscoveryAPI.headerSignature)
        guard DiscoveryValidation.isPublicKeyHex(pkHex), let pk = try? PublicKey(hex: pkHex) else {
            throw DiscoveryError.badRequest("\(DiscoveryAPI.headerPK) must be 64 lowercase hex characters of a valid Ed25519 key")
        }
        guard (1...15).contains(tsText.utf8.count), tsText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let ts = Int64(tsText) else {
            throw DiscoveryError.badRequest("\(DiscoveryAPI.headerTimestamp) must be Unix milliseconds in decimal")
        }
        guard nonceHex.utf8.count == 32, HexCoding.decode(nonceHex) != nil else {
            throw DiscoveryError.badRequest("\(DiscoveryAPI.headerNonce) must be 32 lowercase hex characters")
        }
        guard sigHex.utf8.count == 128, let sig = HexCoding.decode(sigHex) else {
            throw DiscoveryError.badRequest("\(DiscoveryAPI.headerSignature) must be 128 lowercase hex characters")
        }
        guard abs(ts - nowMs) <= DiscoveryAPI.maxClockSkewMs else {
            throw DiscoveryError.unauthorized("timestamp \(ts) is \((ts - nowMs) / 1000) s from the service clock (at most \(DiscoveryAPI.maxClockSkewMs / 1000) s)")
        }
        let msg = DiscoverySigning.signedBytes(method: req.method, target: req.target, publicKeyHex: pkHex,
                                               timestampMs: ts, nonceHex: nonceHex, body: req.body)
        guard pk.verify(signature: sig, message: msg) else { throw DiscoveryError.unauthorized("bad signature") }
        if let pathKey, pathKey != pkHex {
            throw DiscoveryError.forbidden("a write for key \(pathKey.prefix(8))… signed by \(pkHex.prefix(8))…")
        }
        // After the signature, so nobody can spend another key's tokens.
        if let wait = limits.perKey.take(pkHex, nowMs: nowMs) {
            throw DiscoveryError.tooManyRequests("too many writes for key \(pkHex.prefix(8))… (at most \(limits.perKey.limit)); retry in \(wait) s",
                                                 retryAfter: wait)
        }
        guard try store.recordNonce(pk: pkHex, nonce: nonceHex, expiresMs: nowMs + DiscoveryAPI.nonceWindowMs, nowMs: nowMs) else {
            throw DiscoveryError.unauthorized("nonce already used (replayed request)")
        }
        return pkHex
    }

    // MARK: Rendezvous

    /// A rendezvous datagram from `source`: a valid BIND is stored and answered with BIND_OK;
    /// anything else (other types, bad signature, stale or replayed timestamp) gets no answer.
    /// Returns the reply, or the reason it was dropped.
    public func handleDatagram(_ bytes: [UInt8], from source: RendezvousAddress, nowMs: Int64) -> Result<[UInt8], DatagramDrop> {
        // Before parsing and the signature check: a flood from one address costs at most its bucket.
        if limits.readsPerIP.take(DiscoveryRateLimits.ipKey(source.address), nowMs: nowMs) != nil {
            return .failure(.rateLimited("more than \(limits.readsPerIP.limit) datagrams from \(source.address.count == 4 ? "this address" : "this /64")"))
        }
        let msg: SudphRendezvous
        do { msg = try SudphRendezvous.parse(bytes) } catch { return .failure(.malformed(error.description)) }
        guard case .bind(let pkBytes, let ts, let token, let sig) = msg else { return .failure(.malformed("only BIND is accepted by the service")) }
        guard let pk = try? PublicKey(bytes: pkBytes) else { return .failure(.malformed("invalid public key")) }
        guard ts <= UInt64(Int64.max), abs(Int64(ts) - nowMs) <= DiscoveryAPI.maxClockSkewMs else {
            return .failure(.rejected("timestamp more than \(DiscoveryAPI.maxClockSkewMs / 1000) s from the service clock"))
        }
        guard pk.verify(signature: sig, message: SudphRendezvous.bindSignedBytes(publicKey: pkBytes, timestampMs: ts, token: token)) else {
            return .failure(.rejected("bad BIND signature"))
        }
        if !allowPrivateAddresses, let why = DiscoveryAddressPolicy.nonPublicReason(address: source.address) {
            return .failure(.rejected("BIND from \(source), \(why); this service takes public addresses only"))
        }
        do {
            guard try store.bind(pk: pk.hex, address: source.description, token: HexCoding.encode(token), timestampMs: Int64(ts),
                                 expiresMs: nowMs + ttlMs) else {
                return .failure(.rejected("BIND timestamp not newer than the last one (replay)"))
            }
        } catch {
            return .failure(.rejected("storage failure: \(error.description)"))
        }
        return .success(SudphRendezvous.bindOK(token: token, observed: source).encoded())
    }

    public enum DatagramDrop: Error, Equatable, Sendable, CustomStringConvertible {
        case malformed(String)
        case rejected(String)
        case rateLimited(String)
        public var description: String {
            switch self {
            case .malformed(let m): "malformed: \(m)"
            case .rejected(let m): "rejected: \(m)"
            case .rateLimited(let m): "rate limited: \(m)"
            }
        }
    }

    // MARK: Parsing helpers

    static func splitTarget(_ target: String) throws(DiscoveryError) -> (String, [(String, String)]) {
        guard target.hasPrefix("/"), target.utf8.count <= 1024 else { throw .badRequest("request target must be an absolute path of at most 1024 bytes") }
        guard let q = target.firstIndex(of: "?") else { return (target, []) }
        let path = String(target[..<q])
        var pairs: [(String, String)] = []
        for item in target[target.index(after: q)...].split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw .badRequest("query item \"\(item.prefix(40))\" is not name=value") }
            // Values are plain tokens (country codes, versions): percent-escapes are refused.
            guard !kv[1].contains("%") else {
                throw .badRequest("query value of \(kv[0].prefix(40)) must not be percent-encoded")
            }
            pairs.append((String(kv[0]), String(kv[1])))
        }
        return (path, pairs)
    }

    /// The query of `GET /v1/services/{type}`: filters and paging, each at most once.
    struct ServiceQuery {
        var country: String?
        var version: String?
        /// Paging: page size (1...maxPageEntries) and the last pk of the previous page.
        var limit: Int?
        var after: String?

        init(_ query: [(String, String)]) throws(DiscoveryError) {
            var seen = Set<String>()
            for (k, v) in query {
                guard seen.insert(k).inserted else { throw .badRequest("query parameter \(k.prefix(40)) appears twice") }
                switch k {
                case "country": try DiscoveryValidation.checkCountry(v); country = v
                case "version": try DiscoveryValidation.checkVersion(v); version = v
                case "limit":
                    guard v.utf8.count <= 4, let n = Int(v), (1...DiscoveryAPI.maxPageEntries).contains(n) else {
                        throw .badRequest("limit \"\(v.prefix(16))\" must be 1...\(DiscoveryAPI.maxPageEntries)")
                    }
                    limit = n
                case "after":
                    guard DiscoveryValidation.isPublicKeyHex(v) else { throw .badRequest("after must be a public key (64 lowercase hex characters)") }
                    after = v
                default: throw .badRequest("unknown query parameter \"\(k.prefix(40))\" (allowed: country, version, limit, after)")
                }
            }
        }
    }

    static func noQuery(_ q: [(String, String)]) throws(DiscoveryError) {
        guard q.isEmpty else { throw .badRequest("this resource takes no query parameters") }
    }

    static func emptyBody(_ req: DiscoveryRequest) throws(DiscoveryError) {
        guard req.body.isEmpty else { throw .badRequest("\(req.method) takes an empty body") }
    }

    static func pathKey(_ s: String) throws(DiscoveryError) -> String {
        guard DiscoveryValidation.isPublicKeyHex(s), (try? PublicKey(hex: s)) != nil else {
            throw .badRequest("\"\(s.prefix(80))\" in the path is not a public key (64 lowercase hex characters)")
        }
        return s
    }

    static func serviceType(_ s: String) throws(DiscoveryError) -> DiscoveryServiceType {
        guard let t = DiscoveryServiceType(rawValue: s) else {
            throw .badRequest("unknown service type \"\(s.prefix(40))\" (vpn, proxy or dmsg)")
        }
        return t
    }

    /// Parses "a.b.c.d:port" / "[v6]:port" as written by `RendezvousAddress.description`.
    static func rendezvousAddress(_ s: String) -> RendezvousAddress? {
        guard case .success(let hp) = HostPort.parse(s) else { return nil }
        if let v4 = parseIPv4(hp.host) { return RendezvousAddress(address: v4, port: hp.port) }
        if let v6 = parseIPv6Full(hp.host) { return RendezvousAddress(address: v6, port: hp.port) }
        return nil
    }

    static func parseIPv4(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts { guard let v = UInt8(p) else { return nil }; out.append(v) }
        return out
    }

    /// Eight colon-separated groups (the form `RendezvousAddress` writes).
    static func parseIPv6Full(_ s: String) -> [UInt8]? {
        let groups = s.split(separator: ":", omittingEmptySubsequences: false)
        guard groups.count == 8 else { return nil }
        var out: [UInt8] = []
        for g in groups {
            guard let v = UInt16(g, radix: 16) else { return nil }
            out.append(UInt8(v >> 8)); out.append(UInt8(v & 0xff))
        }
        return out
    }
}
