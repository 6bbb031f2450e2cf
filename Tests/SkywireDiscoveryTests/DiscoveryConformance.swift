import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
@testable import SkywireDiscoveryServer
import SkywireWire
import XCTest

/// The API and store checks every storage backend must pass (run by the SQLite and PostgreSQL
/// test cases). Each check gets an empty store; times are explicit, so TTLs are exact.
struct DiscoveryConformance {
    let store: any DiscoveryStore
    let ttl = 30
    var handler: DiscoveryHandler { DiscoveryHandler(store: store, ttlSeconds: ttl, udpAddress: "198.51.100.1:9091") }
    let now: Int64 = 1_800_000_000_000
    let a = TestKeys.pair(1), b = TestKeys.pair(2), c = TestKeys.pair(3)

    func putTransport(_ kp: KeyPair, _ body: String = #"{"stcpr":["203.0.113.5:7777"],"sudph":true}"#, at t: Int64? = nil) -> DiscoveryResponse {
        handler.handle(signedRequest(kp, "PUT", "/v1/transports/\(kp.publicKey.hex)", body: body, nowMs: t ?? now), nowMs: t ?? now)
    }

    func putService(_ kp: KeyPair, _ type: String = "vpn", country: String = "DE", version: String = "0.1.0", at t: Int64? = nil) -> DiscoveryResponse {
        let body = #"{"version":"\#(version)","country":"\#(country)","label":"exit \#(kp.publicKey.short)","stats":{"connected":2}}"#
        return handler.handle(signedRequest(kp, "PUT", "/v1/services/\(type)/\(kp.publicKey.hex)", body: body, nowMs: t ?? now), nowMs: t ?? now)
    }

    func errorText(_ r: DiscoveryResponse) -> String {
        guard case .object(let m)? = try? JSONParser.parse(r.body), let e = m.first(where: { $0.name == "error" }), case .string(let s) = e.value else { return "" }
        return s
    }

    func transportRoundTrip() throws {
        let put = putTransport(a)
        XCTAssertEqual(put.status, 200, put.body)
        let got = handler.handle(getRequest("/v1/transports/\(a.publicKey.hex)"), nowMs: now + 1)
        XCTAssertEqual(got.status, 200)
        let e = try TransportEntry.decode(Array(got.body.utf8))
        XCTAssertEqual(e, TransportEntry(pk: a.publicKey.hex, stcpr: ["203.0.113.5:7777"], sudph: nil, expiresMs: now + 30_000))
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now).status, 404)
        XCTAssertEqual(errorText(handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now)), "unknown key")
        // Replace: a second PUT with other addresses wins.
        XCTAssertEqual(putTransport(a, #"{"stcpr":["203.0.113.6:1"]}"#, at: now + 10).status, 200)
        let e2 = try TransportEntry.decode(Array(handler.handle(getRequest("/v1/transports/\(a.publicKey.hex)"), nowMs: now + 11).body.utf8))
        XCTAssertEqual(e2.stcpr, ["203.0.113.6:1"])
        XCTAssertEqual(e2.expiresMs, now + 10 + 30_000)
        // Delete, signed.
        let del = handler.handle(signedRequest(a, "DELETE", "/v1/transports/\(a.publicKey.hex)", nowMs: now + 12), nowMs: now + 12)
        XCTAssertEqual(del.status, 204)
        XCTAssertEqual(del.body, "")
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/\(a.publicKey.hex)"), nowMs: now + 13).status, 404)
    }

    func replayRefused() {
        let req = signedRequest(a, "PUT", "/v1/transports/\(a.publicKey.hex)", body: #"{"sudph":true}"#, nowMs: now)
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 200)
        let again = handler.handle(req, nowMs: now + 500)
        XCTAssertEqual(again.status, 401)
        XCTAssertEqual(errorText(again), "nonce already used (replayed request)")
        // Another key may use the same nonce value.
        let nonce = HexCoding.decode(req.headers[2].value)!
        XCTAssertEqual(handler.handle(signedRequest(b, "PUT", "/v1/transports/\(b.publicKey.hex)", body: "{}", nowMs: now, nonce: nonce), nowMs: now).status, 200)
        // After the clock window the same request is too old anyway.
        XCTAssertEqual(handler.handle(req, nowMs: now + 61_000).status, 401)
    }

    func badSignatureRefused() {
        var req = signedRequest(a, "PUT", "/v1/transports/\(a.publicKey.hex)", body: #"{"sudph":true}"#, nowMs: now)
        // Body changed after signing.
        var tampered = req
        tampered.body = Array(#"{"sudph":false}"#.utf8)
        XCTAssertEqual(handler.handle(tampered, nowMs: now).status, 401)
        XCTAssertEqual(errorText(handler.handle(tampered, nowMs: now)), "bad signature")
        // Path changed after signing (signature bound to the target).
        var moved = req
        moved.target = "/v1/services/vpn/\(a.publicKey.hex)"
        XCTAssertEqual(handler.handle(moved, nowMs: now).status, 401)
        // Signature bits flipped.
        var sig = req.headers[3].value
        sig = (sig.first == "0" ? "1" : "0") + sig.dropFirst()
        req.headers[3].value = sig
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 401)
        // A forged write: B's key in the header, signed by A.
        let forged = signedRequest(a, "PUT", "/v1/transports/\(b.publicKey.hex)", body: "{}", nowMs: now)
        var f = forged
        f.headers[0].value = b.publicKey.hex
        XCTAssertEqual(handler.handle(f, nowMs: now).status, 401)
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now).status, 404)
        // The untampered request still works afterwards (refusals recorded no nonce).
        let ok = signedRequest(a, "PUT", "/v1/transports/\(a.publicKey.hex)", body: #"{"sudph":true}"#, nowMs: now)
        XCTAssertEqual(handler.handle(ok, nowMs: now).status, 200)
    }

    func clockSkewRefused() {
        for (skew, status) in [(-61_000, 401), (61_000, 401), (-59_000, 200), (59_000, 200)] as [(Int64, Int)] {
            let r = handler.handle(signedRequest(a, "PUT", "/v1/transports/\(a.publicKey.hex)", body: "{}", nowMs: now + skew), nowMs: now)
            XCTAssertEqual(r.status, status, "skew \(skew): \(r.body)")
        }
    }

    func wrongKeyForbidden() {
        // A validly signed write for another key's path.
        let r = handler.handle(signedRequest(a, "PUT", "/v1/transports/\(b.publicKey.hex)", body: "{}", nowMs: now), nowMs: now)
        XCTAssertEqual(r.status, 403, r.body)
        let s = handler.handle(signedRequest(a, "PUT", "/v1/services/vpn/\(b.publicKey.hex)",
                                             body: #"{"version":"1","country":"DE"}"#, nowMs: now), nowMs: now)
        XCTAssertEqual(s.status, 403)
        let d = handler.handle(signedRequest(a, "DELETE", "/v1/services/vpn/\(b.publicKey.hex)", nowMs: now), nowMs: now)
        XCTAssertEqual(d.status, 403)
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now).status, 404)
    }

    func badInputRefused() {
        let path = "/v1/transports/\(a.publicKey.hex)"
        let cases: [(String, Int, String)] = [
            (String(repeating: " ", count: 4097), 413, "body of 4097 bytes"),
            ("{", 400, "malformed JSON"),
            ("[]", 400, "expected an object"),
            (#"{"stcpr":[],"extra":1}"#, 400, "unknown field \"extra\""),
            (#"{"sudph":true,"sudph":false}"#, 400, "appears twice"),
            (#"{"sudph":"yes"}"#, 400, "must be a boolean"),
            (#"{"stcpr":["nohost"]}"#, 400, "is not host:port"),
            (#"{"stcpr":[1]}"#, 400, "must be strings"),
            (#"{"stcpr":["1.1.1.1:1","1.1.1.1:2","1.1.1.1:3","1.1.1.1:4","1.1.1.1:5","1.1.1.1:6","1.1.1.1:7","1.1.1.1:8","1.1.1.1:9"]}"#, 400, "at most 8"),
        ]
        for (body, status, fragment) in cases {
            let r = handler.handle(signedRequest(a, "PUT", path, body: body, nowMs: now), nowMs: now)
            XCTAssertEqual(r.status, status, "\(body.prefix(40)): \(r.body)")
            XCTAssertTrue(errorText(r).contains(fragment), "\(body.prefix(40)): \(errorText(r))")
        }
        let svc = "/v1/services/vpn/\(a.publicKey.hex)"
        let svcCases: [(String, String)] = [
            (#"{"country":"DE"}"#, "missing field \"version\""),
            (#"{"version":"0.1","country":"de"}"#, "ISO 3166-1"),
            (#"{"version":"0.1","country":"DEU"}"#, "ISO 3166-1"),
            (#"{"version":"0 1","country":"DE"}"#, "version"),
            (#"{"version":"1","country":"DE","label":"\#(String(repeating: "x", count: 65))"}"#, "at most 64"),
            (#"{"version":"1","country":"DE","label":"a\u0001"}"#, "control character"),
            (#"{"version":"1","country":"DE","stats":{"connected":-1}}"#, "integer >= 0"),
            (#"{"version":"1","country":"DE","stats":{"Bad":1}}"#, "a-z 0-9 _"),
        ]
        for (body, fragment) in svcCases {
            let r = handler.handle(signedRequest(a, "PUT", svc, body: body, nowMs: now), nowMs: now)
            XCTAssertEqual(r.status, 400, "\(body.prefix(40)): \(r.body)")
            XCTAssertTrue(errorText(r).contains(fragment), "\(body.prefix(40)): \(errorText(r))")
        }
        // Headers.
        var req = signedRequest(a, "PUT", path, body: "{}", nowMs: now)
        req.headers.removeLast()
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 401)
        req = signedRequest(a, "PUT", path, body: "{}", nowMs: now)
        req.headers[0].value = a.publicKey.hex.uppercased()
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 400)
        req = signedRequest(a, "PUT", path, body: "{}", nowMs: now)
        req.headers[1].value = "12x"
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 400)
        req = signedRequest(a, "PUT", path, body: "{}", nowMs: now)
        req.headers[2].value = "abc"
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 400)
        req = signedRequest(a, "PUT", path, body: "{}", nowMs: now)
        req.headers.append(req.headers[3])
        XCTAssertEqual(handler.handle(req, nowMs: now).status, 400)
        // Paths and queries.
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/xyz"), nowMs: now).status, 400)
        XCTAssertEqual(handler.handle(getRequest("/v1/services/ftp"), nowMs: now).status, 400)
        XCTAssertEqual(handler.handle(getRequest("/v1/services/vpn?colour=red"), nowMs: now).status, 400)
        XCTAssertEqual(handler.handle(getRequest("/v1/services/vpn?country=DE&country=FR"), nowMs: now).status, 400)
        XCTAssertEqual(handler.handle(getRequest("/v1/nothing"), nowMs: now).status, 404)
        XCTAssertEqual(handler.handle(getRequest("/v2/info"), nowMs: now).status, 404)
        XCTAssertEqual(handler.handle(DiscoveryRequest(method: "PATCH", target: "/v1/info", headers: [], body: []), nowMs: now).status, 405)
        // Nothing was stored by any of the refused writes.
        XCTAssertEqual(handler.handle(getRequest(path), nowMs: now).status, 404)
        XCTAssertEqual(handler.handle(getRequest("/v1/services/vpn"), nowMs: now).body, #"{"services":[]}"#)
    }

    func ttlExpiry() throws {
        XCTAssertEqual(putTransport(a).status, 200)
        XCTAssertEqual(putService(a).status, 200)
        let path = "/v1/transports/\(a.publicKey.hex)"
        XCTAssertEqual(handler.handle(getRequest(path), nowMs: now + 29_999).status, 200)
        XCTAssertEqual(try ServiceEntry.decodeList(Array(handler.handle(getRequest("/v1/services/vpn"), nowMs: now + 29_999).body.utf8)).count, 1)
        XCTAssertEqual(handler.handle(getRequest(path), nowMs: now + 30_000).status, 404)
        XCTAssertEqual(try ServiceEntry.decodeList(Array(handler.handle(getRequest("/v1/services/vpn"), nowMs: now + 30_000).body.utf8)).count, 0)
        // A refresh before expiry extends the life by a full TTL.
        XCTAssertEqual(putService(b, at: now + 20_000).status, 200)
        XCTAssertEqual(putService(b, at: now + 40_000).status, 200)
        let list = try ServiceEntry.decodeList(Array(handler.handle(getRequest("/v1/services/vpn"), nowMs: now + 65_000).body.utf8))
        XCTAssertEqual(list.map(\.pk), [b.publicKey.hex])
        XCTAssertEqual(list.first?.expiresMs, now + 70_000)
        // Purge removes expired rows (and only those).
        let purged = try store.purge(nowMs: now + 65_000)
        XCTAssertGreaterThanOrEqual(purged, 2)
        XCTAssertEqual(try store.services(type: .vpn, country: nil, version: nil, nowMs: now + 65_000).count, 1)
    }

    func serviceFilters() throws {
        XCTAssertEqual(putService(a, country: "DE", version: "0.1.0").status, 200)
        XCTAssertEqual(putService(b, country: "FR", version: "0.1.0").status, 200)
        XCTAssertEqual(putService(c, country: "DE", version: "0.2.0").status, 200)
        XCTAssertEqual(putService(a, "proxy", country: "NL").status, 200)
        func list(_ q: String) throws -> [ServiceEntry] {
            let r = handler.handle(getRequest("/v1/services/" + q), nowMs: now + 1)
            XCTAssertEqual(r.status, 200, r.body)
            return try ServiceEntry.decodeList(Array(r.body.utf8))
        }
        let sortedAll = [a, b, c].map(\.publicKey.hex).sorted()
        XCTAssertEqual(try list("vpn").map(\.pk), sortedAll)
        XCTAssertEqual(Set(try list("vpn?country=DE").map(\.pk)), [a.publicKey.hex, c.publicKey.hex])
        XCTAssertEqual(try list("vpn?country=DE&version=0.2.0").map(\.pk), [c.publicKey.hex])
        XCTAssertEqual(try list("vpn?country=US").count, 0)
        let proxies = try list("proxy")
        XCTAssertEqual(proxies.count, 1)
        XCTAssertEqual(proxies[0].registration, ServiceRegistration(version: "0.1.0", country: "NL", label: "exit \(a.publicKey.short)", stats: ["connected": 2]))
        XCTAssertEqual(proxies[0].type, .proxy)
        // Delete one service; the other type stays.
        XCTAssertEqual(handler.handle(signedRequest(a, "DELETE", "/v1/services/vpn/\(a.publicKey.hex)", nowMs: now + 2), nowMs: now + 2).status, 204)
        XCTAssertEqual(try list("vpn?country=DE").map(\.pk), [c.publicKey.hex])
        XCTAssertEqual(try list("proxy").count, 1)
    }

    func bindAndPunch() throws {
        let addrA = RendezvousAddress(address: [198, 51, 100, 10], port: 40001)!
        let addrB = RendezvousAddress(address: [198, 51, 100, 20], port: 40002)!
        func bind(_ kp: KeyPair, _ ts: Int64, from: RendezvousAddress, at t: Int64? = nil) -> Result<[UInt8], DiscoveryHandler.DatagramDrop> {
            let sig = kp.sign(SudphRendezvous.bindSignedBytes(publicKey: kp.publicKey.bytes, timestampMs: UInt64(ts)))
            let dg = SudphRendezvous.bind(publicKey: kp.publicKey.bytes, timestampMs: UInt64(ts), signature: sig).encoded()
            return handler.handleDatagram(dg, from: from, nowMs: t ?? now)
        }
        XCTAssertEqual(try bind(a, now, from: addrA).get(), SudphRendezvous.bindOK(observed: addrA).encoded())
        // Punch before B binds: 404.
        let early = handler.handle(signedRequest(a, "POST", "/v1/punch/\(b.publicKey.hex)", nowMs: now), nowMs: now)
        XCTAssertEqual(early.status, 404)
        XCTAssertNil(early.punch)
        XCTAssertEqual(try bind(b, now, from: addrB).get(), SudphRendezvous.bindOK(observed: addrB).encoded())
        // The same BIND again (replayed, maybe from another address): dropped, binding unchanged.
        guard case .failure(.rejected) = bind(b, now, from: addrA) else { return XCTFail("replayed BIND accepted") }
        // A bad signature / a stale timestamp: dropped.
        var dg = SudphRendezvous.bind(publicKey: b.publicKey.bytes, timestampMs: UInt64(now + 1), signature: [UInt8](repeating: 1, count: 64)).encoded()
        guard case .failure(.rejected) = handler.handleDatagram(dg, from: addrA, nowMs: now) else { return XCTFail("forged BIND accepted") }
        guard case .failure(.rejected) = bind(b, now - 61_000, from: addrA) else { return XCTFail("stale BIND accepted") }
        dg = [0x10, 1, 2]
        guard case .failure(.malformed) = handler.handleDatagram(dg, from: addrA, nowMs: now) else { return XCTFail("short BIND accepted") }
        // The transport entry shows the observed address once registered.
        XCTAssertEqual(putTransport(b).status, 200)
        let e = try TransportEntry.decode(Array(handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now).body.utf8))
        XCTAssertEqual(e.sudph, "198.51.100.20:40002")
        // A punches B: A learns B's address, B gets PUNCH(A's key, A's address).
        let r = handler.handle(signedRequest(a, "POST", "/v1/punch/\(b.publicKey.hex)", nowMs: now), nowMs: now)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertEqual(r.body, #"{"target":"198.51.100.20:40002"}"#)
        XCTAssertEqual(r.punch, .init(to: addrB, datagram: SudphRendezvous.punch(peerKey: a.publicKey.bytes, peer: addrA).encoded()))
        XCTAssertEqual(handler.handle(signedRequest(a, "POST", "/v1/punch/\(a.publicKey.hex)", nowMs: now), nowMs: now).status, 400)
        XCTAssertEqual(handler.handle(signedRequest(a, "POST", "/v1/punch/\(b.publicKey.hex)", body: "x", nowMs: now), nowMs: now).status, 400)
        // Bindings expire with the TTL.
        XCTAssertEqual(handler.handle(signedRequest(a, "POST", "/v1/punch/\(b.publicKey.hex)", nowMs: now + 30_000), nowMs: now + 30_000).status, 404)
    }

    func nonceStore() throws {
        XCTAssertTrue(try store.recordNonce(pk: "k", nonce: "n", expiresMs: now + 100, nowMs: now))
        XCTAssertFalse(try store.recordNonce(pk: "k", nonce: "n", expiresMs: now + 200, nowMs: now + 99))
        XCTAssertTrue(try store.recordNonce(pk: "k2", nonce: "n", expiresMs: now + 100, nowMs: now))
        // Expired: taken over.
        XCTAssertTrue(try store.recordNonce(pk: "k", nonce: "n", expiresMs: now + 300, nowMs: now + 100))
        XCTAssertFalse(try store.recordNonce(pk: "k", nonce: "n", expiresMs: now + 400, nowMs: now + 299))
    }

    func info() {
        let r = handler.handle(getRequest("/v1/info"), nowMs: now)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, #"{"version":"\#(DiscoveryAPI.version)","udp":"198.51.100.1:9091","ttl":30}"#)
    }
}
