import NIOConcurrencyHelpers
import SkywireCrypto
@testable import SkywireVisor
import XCTest

/// HTTP-level tests of every web UI endpoint against the handler (docs/ui.md): no session → 401,
/// bad or used token → 401, CSRF missing → 403, bad input → 400 with the reason, login rate
/// limit → 429, password login, and each route calling exactly its control method.
final class UIHandlerTests: XCTestCase {
    /// The control handler's stand-in: records requests, answers `{"ok": method}` or a set error.
    final class FakeControl: Sendable {
        let calls = NIOLockedValueBox<[ControlRequest]>([])
        let failure = NIOLockedValueBox<ControlError?>(nil)
        var handler: ControlServer.Handler {
            { [self] request in
                calls.withLockedValue { $0.append(request) }
                if let e = failure.withLockedValue({ $0 }) { return ControlResponse(id: request.id, error: e) }
                return ControlResponse(id: request.id, result: ["ok": .string(request.method)])
            }
        }
        var methods: [String] { calls.withLockedValue { $0.map(\.method) } }
    }

    final class Clock: Sendable {
        let now = NIOLockedValueBox<Double>(1000)
        func advance(_ s: Double) { now.withLockedValue { $0 += s } }
    }

    var control = FakeControl()
    var clock = Clock()
    let password = NIOLockedValueBox<String?>(nil)
    var auth = UIAuthenticator()
    var handler: UIHandler!

    override func setUp() {
        control = FakeControl()
        clock = Clock()
        auth = UIAuthenticator()
        let clock = self.clock, password = self.password
        handler = UIHandler(auth: auth, control: control.handler, storedPassword: { password.withLockedValue { $0 } },
                            clock: { clock.now.withLockedValue { $0 } })
    }

    // MARK: helpers

    let host = "127.0.0.1:8000"

    func request(_ method: String, _ target: String, body: String? = nil, cookie: String? = nil, csrf: String? = nil,
                 headers extra: [String: String] = [:]) -> UIHTTPRequest {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\r\n"
        if let cookie { text += "Cookie: \(UIHandler.cookieName)=\(cookie)\r\n" }
        if let csrf { text += "X-CSRF-Token: \(csrf)\r\n" }
        for (k, v) in extra { text += "\(k): \(v)\r\n" }
        if let body { text += "Content-Type: \(extra["Content-Type"] == nil ? "application/json" : "x")\r\nContent-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        var p = UIHTTPParser()
        guard case .request(let r) = p.feed(Array(text.utf8)) else { fatalError("test request does not parse: \(text)") }
        return r
    }

    func send(_ r: UIHTTPRequest, source: String = "127.0.0.1") async -> (Int, ControlValue) {
        let response = await handler.respond(to: r, source: source)
        let json = (try? ControlCodec.decode(ControlValue.self, from: response.body)) ?? .null
        return (response.status, json)
    }

    /// Logs in with a fresh token: (session id, csrf).
    func login() async throws -> (String, String) {
        let token = auth.issueToken(now: clock.now.withLockedValue { $0 })
        let response = await handler.respond(to: request("POST", "/api/login", body: "{\"token\":\"\(token)\"}"), source: "127.0.0.1")
        XCTAssertEqual(response.status, 200)
        let cookie = try XCTUnwrap(response.header("Set-Cookie"))
        XCTAssertTrue(cookie.contains("HttpOnly"), cookie)
        XCTAssertTrue(cookie.contains("SameSite=Strict"), cookie)
        XCTAssertTrue(cookie.contains("Max-Age=\(Int(UIAuthenticator.sessionLifetime))"), cookie)
        let id = String(cookie.dropFirst(UIHandler.cookieName.count + 1).prefix { $0 != ";" })
        XCTAssertEqual(id.count, 64, "256-bit session id in hex")
        let csrf = try XCTUnwrap(try ControlCodec.decode(ControlValue.self, from: response.body)["csrf"]?.stringValue)
        return (id, csrf)
    }

    func sample(_ route: UIHandler.Route) -> (target: String, body: String?) {
        switch route.path {
        case "/api/vpn/exits", "/api/socks/servers": return (route.path + "?country=DE", nil)
        case "/api/apps/start", "/api/apps/stop": return (route.path, "{\"name\":\"echo\"}")
        default: return (route.path, route.method == "POST" ? "{}" : nil)
        }
    }

    // MARK: tests

    func testEveryRouteNeedsASession() async {
        for route in UIHandler.routes + [UIHandler.Route(method: "GET", path: "/api/session", control: "")] {
            let (target, body) = sample(route)
            for cookie in [nil, "", "zz", String(repeating: "a", count: 64)] {
                let (status, json) = await send(request(route.method, target, body: body, cookie: cookie))
                XCTAssertEqual(status, 401, "\(route.method) \(route.path) cookie \(cookie ?? "none")")
                XCTAssertEqual(json["error"]?["code"]?.stringValue, "unauthorized")
            }
        }
        XCTAssertEqual(control.methods, [], "no control method runs without a session")
    }

    func testEveryRouteCallsItsControlMethodWithASession() async throws {
        let (id, csrf) = try await login()
        for route in UIHandler.routes {
            control.calls.withLockedValue { $0.removeAll() }
            let (target, body) = sample(route)
            let (status, json) = await send(request(route.method, target, body: body, cookie: id, csrf: route.method == "POST" ? csrf : nil))
            XCTAssertEqual(status, 200, "\(route.method) \(route.path): \(json)")
            XCTAssertEqual(json["result"]?["ok"]?.stringValue, route.control)
            let call = try XCTUnwrap(control.calls.withLockedValue { $0.first })
            XCTAssertEqual(call.method, route.control)
            var expected = route.fixed
            if target.contains("country=") { expected["country"] = "DE" }
            if body?.contains("echo") == true { expected["name"] = "echo" }
            XCTAssertEqual(call.params, expected, route.path)
        }
        let (status, json) = await send(request("GET", "/api/session", cookie: id))
        XCTAssertEqual(status, 200)
        XCTAssertEqual(json["csrf"]?.stringValue, csrf)
    }

    func testStateChangingRequestsNeedTheCSRFToken() async throws {
        let (id, csrf) = try await login()
        for route in UIHandler.routes where route.method == "POST" {
            let (target, body) = sample(route)
            for bad in [nil, "", String(repeating: "0", count: 64), csrf + "0"] {
                let (status, json) = await send(request("POST", target, body: body, cookie: id, csrf: bad))
                XCTAssertEqual(status, 403, "\(route.path) csrf \(bad ?? "none")")
                XCTAssertEqual(json["error"]?["message"]?.stringValue, "missing or wrong X-CSRF-Token header")
            }
        }
        let (status, _) = await send(request("POST", "/api/logout", cookie: id))
        XCTAssertEqual(status, 403, "logout needs the token too")
        XCTAssertEqual(control.methods, [])
    }

    func testLoginTokenWorksOnceAndExpires() async throws {
        let now = clock.now.withLockedValue { $0 }
        let token = auth.issueToken(now: now)
        let (ok, _) = await send(request("POST", "/api/login", body: "{\"token\":\"\(token)\"}"))
        XCTAssertEqual(ok, 200)
        let (again, json) = await send(request("POST", "/api/login", body: "{\"token\":\"\(token)\"}"))
        XCTAssertEqual(again, 401, "a token logs in once")
        XCTAssertEqual(json["error"]?["code"]?.stringValue, "unauthorized")
        let (bad, _) = await send(request("POST", "/api/login", body: "{\"token\":\"\(String(repeating: "f", count: 64))\"}"))
        XCTAssertEqual(bad, 401)
        let old = auth.issueToken(now: now)
        clock.advance(UIAuthenticator.tokenLifetime + 1)
        let (expired, _) = await send(request("POST", "/api/login", body: "{\"token\":\"\(old)\"}"))
        XCTAssertEqual(expired, 401, "a token expires")
    }

    func testSessionExpiresAndLogoutEndsIt() async throws {
        let (id, csrf) = try await login()
        let (out, _) = await send(request("POST", "/api/logout", cookie: id, csrf: csrf))
        XCTAssertEqual(out, 200)
        let (after, _) = await send(request("GET", "/api/status", cookie: id))
        XCTAssertEqual(after, 401)
        let (id2, _) = try await login()
        clock.advance(UIAuthenticator.sessionLifetime + 1)
        let (expired, _) = await send(request("GET", "/api/status", cookie: id2))
        XCTAssertEqual(expired, 401)
    }

    func testBadInputIsRefusedWithTheReason() async throws {
        let (id, csrf) = try await login()
        func post(_ path: String, _ body: String, headers: [String: String] = [:]) async -> (Int, String) {
            let (status, json) = await send(request("POST", path, body: body, cookie: id, csrf: csrf, headers: headers))
            return (status, json["error"]?["message"]?.stringValue ?? "")
        }
        var (status, message) = await post("/api/vpn/start", "{\"pk\":")
        XCTAssertEqual(status, 400)
        XCTAssertTrue(message.hasPrefix("the body is not JSON: line 1"), message)
        (status, message) = await post("/api/vpn/start", "[1]")
        XCTAssertEqual(status, 400)
        XCTAssertTrue(message.hasPrefix("the body must be a JSON object"), message)
        (status, message) = await post("/api/vpn/start", "{\"pk\":\"a\",\"method\":\"tp.rm\"}")
        XCTAssertEqual(status, 400)
        XCTAssertEqual(message, "unknown member \"method\" (allowed: pk, killswitch, dns, timeout)")
        (status, message) = await post("/api/apps/start", "{\"name\":\"echo\"}", headers: ["Content-Type": "text/plain"])
        XCTAssertEqual(status, 415)
        let (q, qjson) = await send(request("GET", "/api/vpn/exits?type=proxy", cookie: id))
        XCTAssertEqual(q, 400, "the fixed type cannot be overridden")
        XCTAssertEqual(qjson["error"]?["message"]?.stringValue, "unknown query parameter \"type\" (allowed: country)")
        let (nf, _) = await send(request("GET", "/api/nothing", cookie: id))
        XCTAssertEqual(nf, 404)
        let (m, _) = await send(request("GET", "/api/vpn/start", cookie: id))
        XCTAssertEqual(m, 405)
        XCTAssertEqual(control.methods, [])
        // The control method's own refusal keeps its code and message.
        control.failure.withLockedValue { $0 = ControlError(.badRequest, "\"xyz\" is not a public key (64 lowercase hex characters)") }
        (status, message) = await post("/api/vpn/start", "{\"pk\":\"xyz\"}")
        XCTAssertEqual(status, 400)
        XCTAssertEqual(message, "\"xyz\" is not a public key (64 lowercase hex characters)")
        control.failure.withLockedValue { $0 = ControlError(.conflict, "already running") }
        (status, _) = await post("/api/vpn/start", "{\"pk\":\"xyz\"}")
        XCTAssertEqual(status, 409)
    }

    func testLoginAttemptsAreRateLimitedPerSourceAndGlobally() async {
        let wrong = "{\"token\":\"\(String(repeating: "e", count: 64))\"}"
        let burst = Int(UIRateLimiter.perSourceDefault.burst)
        for _ in 0..<burst {
            let (s, _) = await send(request("POST", "/api/login", body: wrong), source: "192.0.2.1")
            XCTAssertEqual(s, 401)
        }
        let (limited, json) = await send(request("POST", "/api/login", body: wrong), source: "192.0.2.1")
        XCTAssertEqual(limited, 429)
        XCTAssertEqual(json["error"]?["code"]?.stringValue, "rate_limited")
        // A limited source does not use up the others' attempts: a valid token from another works.
        let token = auth.issueToken(now: clock.now.withLockedValue { $0 })
        let (other, _) = await send(request("POST", "/api/login", body: "{\"token\":\"\(token)\"}"), source: "192.0.2.2")
        XCTAssertEqual(other, 200)
        // The bucket refills.
        clock.advance(1 / UIRateLimiter.perSourceDefault.perSecond + 0.1)
        let (refilled, _) = await send(request("POST", "/api/login", body: wrong), source: "192.0.2.1")
        XCTAssertEqual(refilled, 401)
        // Many sources together hit the global bucket.
        var statuses: [Int] = []
        for i in 0..<(Int(UIRateLimiter.globalDefault.burst) + 5) {
            statuses.append(await send(request("POST", "/api/login", body: wrong), source: "198.51.100.\(i)").0)
        }
        XCTAssertTrue(statuses.contains(429), "the global bucket limits many sources together: \(statuses)")
    }

    func testPasswordLogin() async throws {
        let (none, noneJSON) = await send(request("POST", "/api/login", body: "{\"password\":\"correct horse\"}"))
        XCTAssertEqual(none, 401, "no default password")
        XCTAssertTrue(noneJSON["error"]?["message"]?.stringValue?.hasPrefix("no UI password is set") == true)
        let hash = try PasswordHash.hash(Array("correct horse".utf8))
        XCTAssertTrue(hash.hasPrefix("$argon2id$"), hash)
        password.withLockedValue { $0 = hash }
        let (wrong, _) = await send(request("POST", "/api/login", body: "{\"password\":\"correct horsf\"}"))
        XCTAssertEqual(wrong, 401)
        let response = await handler.respond(to: request("POST", "/api/login", body: "{\"password\":\"correct horse\"}"), source: "127.0.0.1")
        XCTAssertEqual(response.status, 200)
        XCTAssertNotNil(response.header("Set-Cookie"))
        XCTAssertThrowsError(try PasswordHash.hash(Array("short".utf8)))
    }

    func testForeignHostAndOriginRefused() async throws {
        let (id, csrf) = try await login()
        var r = request("GET", "/api/status", cookie: id)
        r.headers["host"] = "attacker.example:8000"
        let (rebound, _) = await send(r)
        XCTAssertEqual(rebound, 421, "a DNS-rebinding Host is refused")
        for good in ["localhost:8000", "[::1]:8000", "192.0.2.7"] {
            r.headers["host"] = good
            let (s, _) = await send(r)
            XCTAssertEqual(s, 200, good)
        }
        var post = request("POST", "/api/vpn/stop", cookie: id, csrf: csrf)
        post.headers["origin"] = "http://attacker.example"
        let (cross, _) = await send(post)
        XCTAssertEqual(cross, 403)
        post.headers["origin"] = "http://" + host
        let (same, _) = await send(post)
        XCTAssertEqual(same, 200)
    }

    func testPagesServedWithoutDataAndUnknownOnes404() async {
        for path in ["/", "/app.js", "/app.css"] {
            let response = await handler.respond(to: request("GET", path), source: "127.0.0.1")
            XCTAssertEqual(response.status, 200, path)
            XCTAssertFalse(response.body.isEmpty, path)
        }
        let (s, _) = await send(request("GET", "/etc/passwd"))
        XCTAssertEqual(s, 404)
        XCTAssertEqual(control.methods, [])
    }

    func testAuthenticatorBounds() {
        let a = UIAuthenticator()
        var ids: [String] = []
        for i in 0...UIAuthenticator.maxSessions { ids.append(a.createSession(now: Double(i)).id) }
        XCTAssertNil(a.session(ids[0], now: 100), "the oldest session is dropped beyond the bound")
        XCTAssertNotNil(a.session(ids[1], now: 100))
        a.endAllSessions()
        XCTAssertNil(a.session(ids[1], now: 100), "a password change ends every session")
        var tokens: [String] = []
        for i in 0...UIAuthenticator.maxTokens { tokens.append(a.issueToken(now: Double(i))) }
        XCTAssertFalse(a.redeemToken(tokens[0], now: 50))
        XCTAssertTrue(a.redeemToken(tokens[1], now: 50))
    }
}
