import NIOConcurrencyHelpers
import SkywireConfig
import SkywireCrypto
import SkywireSystem

/// The web UI's request handler (docs/ui.md): static pages, login, and a JSON API whose every
/// route is one control-socket operation, run through the same `ControlServer.Handler` the
/// socket uses (one implementation). Checks, in order: Host, Origin, session, CSRF token,
/// content type, route, parameters.
public final class UIHandler: Sendable {
    /// The session cookie's name.
    public static let cookieName = "skw_session"
    /// The header carrying the session's CSRF token on state-changing requests.
    public static let csrfHeader = "x-csrf-token"

    let auth: UIAuthenticator
    let control: ControlServer.Handler
    /// The stored Argon2id hash, nil when no password is set.
    let storedPassword: @Sendable () -> String?
    let clock: @Sendable () -> Double
    /// Argon2id checks running now: one at a time (each takes 64 MiB and a core for ~0.2 s).
    private let verifying = NIOLockedValueBox(0)
    static let maxConcurrentVerifications = 1

    public init(auth: UIAuthenticator, control: @escaping ControlServer.Handler,
                storedPassword: @escaping @Sendable () -> String?, clock: @escaping @Sendable () -> Double) {
        self.auth = auth
        self.control = control
        self.storedPassword = storedPassword
        self.clock = clock
    }

    /// One API route: an HTTP method and path mapped onto one control method, with the
    /// parameters it may carry (from the JSON body, or for GET from the query) and fixed ones.
    struct Route {
        let method: String
        let path: String
        let control: String
        var params: [String] = []
        var fixed: [String: ControlValue] = [:]
    }

    /// Every API route (docs/ui.md §API). Parameters not listed are refused, so the UI cannot
    /// reach a control method or parameter this table does not name.
    static let routes: [Route] = [
        Route(method: "GET", path: "/api/status", control: "visor.info"),
        Route(method: "GET", path: "/api/transports", control: "tp.ls"),
        Route(method: "GET", path: "/api/apps", control: "apps.ls"),
        Route(method: "POST", path: "/api/apps/start", control: "apps.start", params: ["name"]),
        Route(method: "POST", path: "/api/apps/stop", control: "apps.stop", params: ["name"]),
        Route(method: "GET", path: "/api/vpn", control: "vpn.status"),
        Route(method: "POST", path: "/api/vpn/start", control: "vpn.start", params: ["pk", "killswitch", "dns", "timeout"]),
        Route(method: "POST", path: "/api/vpn/stop", control: "vpn.stop"),
        Route(method: "GET", path: "/api/vpn/exits", control: "discovery.services", params: ["country"], fixed: ["type": "vpn"]),
        Route(method: "GET", path: "/api/vpn-server", control: "vpn.server.status"),
        Route(method: "POST", path: "/api/vpn-server/start", control: "vpn.server.start", params: ["whitelist", "secure"]),
        Route(method: "POST", path: "/api/vpn-server/stop", control: "vpn.server.stop"),
        Route(method: "GET", path: "/api/socks", control: "proxy.status"),
        Route(method: "POST", path: "/api/socks/start", control: "proxy.start", params: ["pk", "addr"]),
        Route(method: "POST", path: "/api/socks/stop", control: "proxy.stop"),
        Route(method: "GET", path: "/api/socks/servers", control: "discovery.services", params: ["country"], fixed: ["type": "proxy"]),
        Route(method: "GET", path: "/api/chat", control: "skychat.ls"),
        Route(method: "GET", path: "/api/chat/show", control: "skychat.show", params: ["id", "limit"], fixed: ["mark_read": .bool(false)]),
        Route(method: "POST", path: "/api/chat/read", control: "skychat.read", params: ["id"]),
        Route(method: "POST", path: "/api/chat/send", control: "skychat.send", params: ["to", "text"], fixed: ["wait": .int(0)]),
        Route(method: "GET", path: "/api/chat/groups", control: "skychat.group.ls"),
        Route(method: "POST", path: "/api/chat/groups/create", control: "skychat.group.create", params: ["name", "members"]),
        Route(method: "POST", path: "/api/chat/groups/add", control: "skychat.group.add", params: ["group", "pk"]),
        Route(method: "GET", path: "/api/chat/access", control: "skychat.access"),
        Route(method: "POST", path: "/api/chat/allow", control: "skychat.allow", params: ["pk"]),
        Route(method: "POST", path: "/api/chat/disallow", control: "skychat.disallow", params: ["pk"]),
        Route(method: "POST", path: "/api/chat/block", control: "skychat.block", params: ["pk"]),
        Route(method: "POST", path: "/api/chat/unblock", control: "skychat.unblock", params: ["pk"]),
    ]

    public func respond(to request: UIHTTPRequest, source: String) async -> UIHTTPResponse {
        guard let host = request.headers["host"], Self.isAcceptedHost(host) else {
            // A name other than localhost is what a DNS-rebinding page sends (docs/ui.md §Security).
            return Self.error(421, "bad_request", "the Host header must be an IP address or localhost")
        }
        if let origin = request.headers["origin"], origin != "http://" + host {
            return Self.error(403, "forbidden", "cross-origin request refused (Origin \(origin))")
        }
        if !request.path.hasPrefix("/api/") { return Self.asset(request) }
        let now = clock()
        if request.path == "/api/login" {
            guard request.method == "POST" else { return Self.error(405, "bad_request", "use POST") }
            return await login(request, source: source, now: now)
        }
        guard let id = request.cookie(Self.cookieName), let csrf = auth.session(id, now: now) else {
            return Self.error(401, "unauthorized", "log in first (skywire cli url prints a login link)")
        }
        let changesState = !(request.method == "GET" || request.method == "HEAD")
        if changesState {
            guard let sent = request.headers[Self.csrfHeader], UIAuthenticator.constantTimeEqual(sent, csrf) else {
                return Self.error(403, "forbidden", "missing or wrong X-CSRF-Token header")
            }
        }
        switch request.path {
        case "/api/session":
            return Self.json(200, ["csrf": .string(csrf), "expires_in_seconds": .int(Int64(auth.remaining(id, now: now)))])
        case "/api/logout":
            guard changesState else { return Self.error(405, "bad_request", "use POST") }
            auth.endSession(id)
            return Self.json(200, [:], headers: [("Set-Cookie", Self.cookie(value: "", maxAge: 0))])
        default:
            break
        }
        let candidates = Self.routes.filter { $0.path == request.path }
        guard !candidates.isEmpty else { return Self.error(404, "not_found", "no API route \(request.path)") }
        guard let route = candidates.first(where: { $0.method == request.method }) else {
            return Self.error(405, "bad_request", "\(request.path) takes \(candidates.map(\.method).joined(separator: ", "))")
        }
        let params: [String: ControlValue]
        switch Self.parameters(request, route: route) {
        case .success(let p): params = p
        case .failure(let e): return Self.error(e.status, "bad_request", e.message)
        }
        let response = await control(ControlRequest(id: 1, method: route.control, params: params))
        if let e = response.error { return Self.error(Self.status(forControlCode: e.code), e.code, e.message) }
        return Self.json(200, ["result": response.result ?? .null])
    }

    /// `POST /api/login` with `{"token": T}` or `{"password": P}`: rate-limited, then a session.
    private func login(_ request: UIHTTPRequest, source: String, now: Double) async -> UIHTTPResponse {
        guard auth.admitLogin(source: source, now: now) else {
            return Self.error(429, "rate_limited", "too many login attempts; wait and try again",
                              headers: [("Retry-After", String(Int(1 / UIRateLimiter.perSourceDefault.perSecond)))])
        }
        let body: [String: ControlValue]
        switch Self.jsonBody(request, allowed: ["token", "password"]) {
        case .success(let b): body = b
        case .failure(let e): return Self.error(e.status, "bad_request", e.message)
        }
        var ok = false
        if let token = body["token"] {
            guard let t = token.stringValue else { return Self.error(400, "bad_request", "\"token\" must be a string") }
            ok = auth.redeemToken(t, now: now)
        } else if let password = body["password"] {
            guard let p = password.stringValue else { return Self.error(400, "bad_request", "\"password\" must be a string") }
            guard let stored = storedPassword() else {
                return Self.error(401, "unauthorized", "no UI password is set (skywire cli ui password); use a login link from skywire cli url")
            }
            let admitted = verifying.withLockedValue { n -> Bool in
                guard n < Self.maxConcurrentVerifications else { return false }
                n += 1
                return true
            }
            guard admitted else { return Self.error(429, "rate_limited", "another login is being checked; try again") }
            // Argon2id takes 64 MiB and about half a second: on the blocking pool, not a Swift task thread.
            let candidate = Array(p.utf8)
            ok = await BlockingPool.shared.runOrInline { PasswordHash.verify(candidate, against: stored) }
            verifying.withLockedValue { $0 -= 1 }
        } else {
            return Self.error(400, "bad_request", "send {\"token\": ...} or {\"password\": ...}")
        }
        guard ok else { return Self.error(401, "unauthorized", "wrong or used login token, or wrong password") }
        let session = auth.createSession(now: now)
        return Self.json(200, ["csrf": .string(session.csrf)],
                         headers: [("Set-Cookie", Self.cookie(value: session.id, maxAge: Int(UIAuthenticator.sessionLifetime)))])
    }

    struct BadInput: Error { let status: Int; let message: String }

    /// The route's parameters from the body (JSON object) or, for GET, the query string.
    static func parameters(_ request: UIHTTPRequest, route: Route) -> Result<[String: ControlValue], BadInput> {
        var params = route.fixed
        if request.method == "GET" {
            for (k, v) in request.query {
                guard route.params.contains(k) else {
                    return .failure(BadInput(status: 400, message: "unknown query parameter \"\(k)\"" + allowedList(route)))
                }
                params[k] = .string(v)
            }
            return .success(params)
        }
        switch jsonBody(request, allowed: route.params) {
        case .success(let body):
            for (k, v) in body { params[k] = v }
            return .success(params)
        case .failure(let e):
            return .failure(BadInput(status: e.status, message: e.message + (e.status == 400 ? allowedList(route) : "")))
        }
    }

    static func allowedList(_ route: Route) -> String {
        route.params.isEmpty ? " (this route takes none)" : " (allowed: \(route.params.joined(separator: ", ")))"
    }

    /// An empty body is `{}`; otherwise `Content-Type: application/json` and a JSON object
    /// naming only `allowed` members.
    static func jsonBody(_ request: UIHTTPRequest, allowed: [String]) -> Result<[String: ControlValue], BadInput> {
        if request.body.isEmpty { return .success([:]) }
        let type = request.headers["content-type"]?.split(separator: ";").first?.trimmingSpaces.lowercased()
        guard type == "application/json" else {
            return .failure(BadInput(status: 415, message: "the body must be Content-Type: application/json"))
        }
        let value: ControlValue
        do {
            let json = try JSONParser.parse(request.body)
            value = try ControlValue(json: json)
        } catch let e as JSONParser.SyntaxError {
            return .failure(BadInput(status: 400, message: "the body is not JSON: line \(e.line), column \(e.column): \(e.message)"))
        } catch {
            return .failure(BadInput(status: 400, message: "the body is not usable JSON: \(error)"))
        }
        guard let object = value.objectValue else { return .failure(BadInput(status: 400, message: "the body must be a JSON object")) }
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            return .failure(BadInput(status: 400, message: "unknown member \"\(unknown)\""))
        }
        return .success(object)
    }

    /// IPv4 or bracketed IPv6 literal, or localhost, with an optional port.
    static func isAcceptedHost(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            let rest = name[name.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && isPort(rest.dropFirst())) else { return false }
            return HostPort.isIPv6(String(name[name.index(after: name.startIndex)..<close]))
        }
        if let colon = name.firstIndex(of: ":") {
            guard isPort(name[name.index(after: colon)...]) else { return false }
            name = name[..<colon]
        }
        return name == "localhost" || HostPort.isIPv4(String(name))
    }

    static func isPort(_ s: Substring) -> Bool {
        !s.isEmpty && s.count <= 5 && s.allSatisfy { $0.isASCII && $0.isNumber } && (Int(s) ?? 0) <= Int(UInt16.max)
    }

    /// The control socket's error codes as HTTP statuses.
    static func status(forControlCode code: String) -> Int {
        switch ControlError.Code(rawValue: code) {
        case .badRequest?: 400
        case .notFound?: 404
        case .conflict?: 409
        case .forbidden?: 403
        case .unavailable?: 503
        case .timeout?: 504
        case .failed?, nil: 500
        }
    }

    static func cookie(value: String, maxAge: Int) -> String {
        "\(cookieName)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
    }

    static func json(_ status: Int, _ object: [String: ControlValue], headers: [(String, String)] = []) -> UIHTTPResponse {
        UIHTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers,
                       body: Array(ControlValue.object(object).json.compact().utf8))
    }

    static func error(_ status: Int, _ code: String, _ message: String, headers: [(String, String)] = []) -> UIHTTPResponse {
        json(status, ["error": .object(["code": .string(code), "message": .string(message)])], headers: headers)
    }

    /// The page, its script and its style sheet (UIAssets); served without a session (they hold
    /// no data: everything comes from the API).
    static func asset(_ request: UIHTTPRequest) -> UIHTTPResponse {
        guard request.method == "GET" || request.method == "HEAD" else { return error(405, "bad_request", "use GET") }
        let file: (type: String, text: String)
        switch request.path {
        case "/", "/index.html": file = ("text/html; charset=utf-8", UIAssets.indexHTML)
        case "/app.js": file = ("text/javascript; charset=utf-8", UIAssets.appJS)
        case "/app.css": file = ("text/css; charset=utf-8", UIAssets.appCSS)
        default: return error(404, "not_found", "no page \(request.path)")
        }
        return UIHTTPResponse(status: 200, headers: [("Content-Type", file.type)],
                              body: request.method == "HEAD" ? [] : Array(file.text.utf8))
    }
}
