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

    /// A transport entry's `dmsg` relays (docs/discovery.md): stored, returned, replaced and
    /// deleted with the entry; at most `maxDmsgRelays` distinct valid keys, else 400; an entry
    /// without them (an older visor) stays valid and reads as `"dmsg": []`.
    func transportRelayList() throws {
        let r1 = KeyPair.generate().publicKey, r2 = KeyPair.generate().publicKey
        let pk = a.publicKey.hex
        func get(_ t: Int64) throws -> TransportEntry {
            try TransportEntry.decode(Array(handler.handle(getRequest("/v1/transports/\(pk)"), nowMs: t).body.utf8))
        }
        let put = putTransport(a, #"{"stcpr":[],"dmsg":["\#(r1.hex)","\#(r2.hex)"]}"#)
        XCTAssertEqual(put.status, 200, put.body)
        XCTAssertEqual(try TransportEntry.decode(Array(put.body.utf8)).dmsg, [r1, r2])
        XCTAssertEqual(try get(now + 1).dmsg, [r1, r2])
        XCTAssertEqual(putTransport(a, #"{"stcpr":[],"dmsg":["\#(r2.hex)"]}"#, at: now + 2).status, 200)
        XCTAssertEqual(try get(now + 3).dmsg, [r2])
        XCTAssertEqual(putTransport(a, #"{"stcpr":["203.0.113.5:1"]}"#, at: now + 4).status, 200)
        XCTAssertEqual(try get(now + 5).dmsg, [], "an entry without dmsg has none")
        XCTAssertTrue(handler.handle(getRequest("/v1/transports/\(pk)"), nowMs: now + 5).body.contains(#""dmsg":[]"#))
        // Bounds: too many, not a key, a duplicate, not strings: 400, and the entry is unchanged.
        let nine = (0..<(DiscoveryAPI.maxDmsgRelays + 1)).map { _ in "\"\(KeyPair.generate().publicKey.hex)\"" }.joined(separator: ",")
        let bad: [(String, String)] = [
            (#"{"dmsg":[\#(nine)]}"#, "transport registration: 9 dmsg relays, at most 8"),
            (#"{"dmsg":["abc"]}"#, #"transport registration: dmsg relay "abc" is not a public key (64 lowercase hex characters)"#),
            (#"{"dmsg":["\#(r1.hex)","\#(r1.hex)"]}"#, "transport registration: duplicate dmsg relay \(r1.hex)"),
            (#"{"dmsg":[1]}"#, "transport registration: dmsg items must be strings, got a number"),
            (#"{"dmsg":"\#(r1.hex)"}"#, ""),
        ]
        for (i, (body, message)) in bad.enumerated() {
            let resp = putTransport(a, body, at: now + 10 + Int64(i))
            XCTAssertEqual(resp.status, 400, body)
            if !message.isEmpty { XCTAssertEqual(errorText(resp), message) }
        }
        XCTAssertEqual(try get(now + 20).stcpr, ["203.0.113.5:1"])
        // Deleted with the entry.
        XCTAssertEqual(putTransport(a, #"{"dmsg":["\#(r1.hex)"]}"#, at: now + 21).status, 200)
        XCTAssertEqual(handler.handle(signedRequest(a, "DELETE", "/v1/transports/\(pk)", nowMs: now + 22), nowMs: now + 22).status, 204)
        XCTAssertEqual(putTransport(a, #"{}"#, at: now + 23).status, 200)
        XCTAssertEqual(try get(now + 24).dmsg, [], "a deleted entry's relays do not come back")
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
        XCTAssertEqual(try store.services(type: .vpn, country: nil, version: nil, after: nil, limit: 10, nowMs: now + 65_000).count, 1)
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

    /// A dmsg relay registers as a transport entry (its stcpr address) and a `dmsg` service
    /// (docs/dmsg.md "Discovery"); other types keep their lists; unknown types stay refused.
    func dmsgRelays() throws {
        XCTAssertEqual(putTransport(b, #"{"stcpr":["203.0.113.9:8081"],"sudph":false}"#).status, 200)
        XCTAssertEqual(putService(b, "dmsg", country: "ZZ").status, 200)
        XCTAssertEqual(putService(a, "vpn").status, 200)
        let r = handler.handle(getRequest("/v1/services/dmsg"), nowMs: now + 1)
        XCTAssertEqual(r.status, 200, r.body)
        let relays = try ServiceEntry.decodeList(Array(r.body.utf8))
        XCTAssertEqual(relays.map(\.pk), [b.publicKey.hex])
        XCTAssertEqual(relays.first?.type, .dmsg)
        let vpn = try ServiceEntry.decodeList(Array(handler.handle(getRequest("/v1/services/vpn"), nowMs: now + 1).body.utf8))
        XCTAssertEqual(vpn.map(\.pk), [a.publicKey.hex])
        let address = handler.handle(getRequest("/v1/transports/\(b.publicKey.hex)"), nowMs: now + 1)
        XCTAssertEqual(try TransportEntry.decode(Array(address.body.utf8)).stcpr, ["203.0.113.9:8081"])
        let unknown = putService(c, "relay")
        XCTAssertEqual(unknown.status, 400)
        XCTAssertTrue(errorText(unknown).contains("vpn, proxy or dmsg"), errorText(unknown))
    }

    func bindAndPunch() throws {
        let addrA = RendezvousAddress(address: [198, 51, 100, 10], port: 40001)!
        let addrB = RendezvousAddress(address: [198, 51, 100, 20], port: 40002)!
        let tokenA = [UInt8](repeating: 0xA1, count: 16), tokenB = [UInt8](repeating: 0xB2, count: 16)
        func bind(_ kp: KeyPair, _ ts: Int64, from: RendezvousAddress, at t: Int64? = nil) -> Result<[UInt8], DiscoveryHandler.DatagramDrop> {
            let token = kp.publicKey == a.publicKey ? tokenA : tokenB
            let sig = kp.sign(SudphRendezvous.bindSignedBytes(publicKey: kp.publicKey.bytes, timestampMs: UInt64(ts), token: token))
            let dg = SudphRendezvous.bind(publicKey: kp.publicKey.bytes, timestampMs: UInt64(ts), token: token, signature: sig).encoded()
            return handler.handleDatagram(dg, from: from, nowMs: t ?? now)
        }
        // BIND_OK echoes the BIND's token.
        XCTAssertEqual(try bind(a, now, from: addrA).get(), SudphRendezvous.bindOK(token: tokenA, observed: addrA).encoded())
        // Punch before B binds: 404.
        let early = handler.handle(signedRequest(a, "POST", "/v1/punch/\(b.publicKey.hex)", nowMs: now), nowMs: now)
        XCTAssertEqual(early.status, 404)
        XCTAssertNil(early.punch)
        XCTAssertEqual(try bind(b, now, from: addrB).get(), SudphRendezvous.bindOK(token: tokenB, observed: addrB).encoded())
        // The same BIND again (replayed, maybe from another address): dropped, binding unchanged.
        guard case .failure(.rejected) = bind(b, now, from: addrA) else { return XCTFail("replayed BIND accepted") }
        // A bad signature / a stale timestamp: dropped.
        var dg = SudphRendezvous.bind(publicKey: b.publicKey.bytes, timestampMs: UInt64(now + 1), token: tokenB,
                                      signature: [UInt8](repeating: 1, count: 64)).encoded()
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
        // The PUNCH to B carries B's BIND token (B drops PUNCHes without it).
        XCTAssertEqual(r.punch, .init(to: addrB, datagram: SudphRendezvous.punch(token: tokenB, peerKey: a.publicKey.bytes, peer: addrA).encoded()))
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

    /// Pages of `GET /v1/services/{type}?limit=N&after=PK`: every entry once, in key order; the
    /// answer without `limit` (old clients) is the first page in the old shape.
    func servicePaging() throws {
        let keys = (10..<17).map { TestKeys.pair(UInt8($0)) }
        for k in keys { XCTAssertEqual(putService(k).status, 200) }
        var seen: [String] = []
        var after: String? = nil
        var pages = 0
        repeat {
            let r = handler.handle(getRequest("/v1/services/vpn?country=DE&limit=3" + (after.map { "&after=\($0)" } ?? "")), nowMs: now + 1)
            XCTAssertEqual(r.status, 200, r.body)
            let page = try ServiceEntry.decodePage(Array(r.body.utf8))
            XCTAssertLessThanOrEqual(page.entries.count, 3)
            seen += page.entries.map(\.pk)
            after = page.next
            pages += 1
        } while after != nil && pages < 10
        XCTAssertEqual(pages, 3)
        XCTAssertEqual(seen, keys.map(\.publicKey.hex).sorted())
        // No limit: the old shape (no "next"), at most one page.
        let old = handler.handle(getRequest("/v1/services/vpn"), nowMs: now + 1)
        XCTAssertFalse(old.body.contains("\"next\""), old.body)
        XCTAssertEqual(try ServiceEntry.decodeList(Array(old.body.utf8)).count, keys.count)
        for bad in ["limit=0", "limit=501", "limit=x", "after=zz", "limit=2&limit=3"] {
            XCTAssertEqual(handler.handle(getRequest("/v1/services/vpn?" + bad), nowMs: now).status, 400, bad)
        }
    }

    /// More live entries than a page: the answer without `limit` stays one page (an old client's
    /// 1 MiB response limit is never reached however many keys register).
    func unpagedListIsBounded() throws {
        let n = DiscoveryAPI.maxPageEntries + 20
        for i in 0..<n {
            let pk = HexCoding.encode(Blake2b.hash256(Array("k\(i)".utf8)))
            try store.putService(type: .vpn, pk: pk, registration: ServiceRegistration(version: "0.1.0", country: "DE",
                                 label: String(repeating: "x", count: DiscoveryAPI.maxLabelCharacters),
                                 stats: Dictionary(uniqueKeysWithValues: (0..<16).map { ("stat_\($0)_" + String(repeating: "s", count: 24), Int64.max) })),
                                 expiresMs: now + 30_000)
        }
        let r = handler.handle(getRequest("/v1/services/vpn"), nowMs: now)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(try ServiceEntry.decodeList(Array(r.body.utf8)).count, DiscoveryAPI.maxPageEntries)
        XCTAssertLessThan(r.body.utf8.count, DiscoveryHTTP.maxResponseBytes)
        let paged = handler.handle(getRequest("/v1/services/vpn?limit=\(DiscoveryAPI.maxPageEntries)"), nowMs: now)
        XCTAssertLessThan(paged.body.utf8.count, DiscoveryHTTP.maxResponseBytes)
        XCTAssertNotNil(try ServiceEntry.decodePage(Array(paged.body.utf8)).next)
    }

    /// Loopback, private, CGNAT, ULA and link-local stcpr addresses and BIND sources are refused
    /// by a public service and accepted with `allowPrivateAddresses`.
    func privateAddressesRefused() throws {
        let refusedHosts = ["127.0.0.1:7777", "10.99.1.2:7777", "172.16.0.1:1", "192.168.1.1:1", "100.64.0.1:1", "169.254.169.254:80",
                            "[::1]:1", "[fd00::1]:1", "[fe80::1]:1", "[::ffff:10.0.0.1]:1", "0.0.0.0:1", "localhost:1", "a.localhost:1"]
        for host in refusedHosts {
            let r = putTransport(a, #"{"stcpr":["\#(host)"]}"#)
            XCTAssertEqual(r.status, 400, host)
            XCTAssertTrue(errorText(r).contains("public addresses only"), errorText(r))
        }
        for host in ["203.0.113.5:7777", "[2001:db8::1]:1", "exit.example:7777", "172.32.0.1:1", "100.128.0.1:1"] {
            XCTAssertEqual(putTransport(a, #"{"stcpr":["\#(host)"]}"#).status, 200, host)
        }
        let token = [UInt8](repeating: 1, count: 16)
        let sig = b.sign(SudphRendezvous.bindSignedBytes(publicKey: b.publicKey.bytes, timestampMs: UInt64(now), token: token))
        let dg = SudphRendezvous.bind(publicKey: b.publicKey.bytes, timestampMs: UInt64(now), token: token, signature: sig).encoded()
        let lan = RendezvousAddress(address: [10, 99, 0, 2], port: 4000)!
        guard case .failure(.rejected(let why)) = handler.handleDatagram(dg, from: lan, nowMs: now) else { return XCTFail("private BIND source accepted") }
        XCTAssertTrue(why.contains("public addresses only"), why)
        // A private deployment.
        let open = DiscoveryHandler(store: store, ttlSeconds: ttl, udpAddress: "10.99.0.1:9091", allowPrivateAddresses: true)
        for host in refusedHosts {
            let r = open.handle(signedRequest(c, "PUT", "/v1/transports/\(c.publicKey.hex)", body: #"{"stcpr":["\#(host)"]}"#, nowMs: now), nowMs: now)
            XCTAssertEqual(r.status, 200, host + " " + r.body)
        }
        XCTAssertEqual(try open.handleDatagram(dg, from: lan, nowMs: now).get(), SudphRendezvous.bindOK(token: token, observed: lan).encoded())
    }

    /// Writes beyond a key's or an address's bucket: 429 with Retry-After; other keys and
    /// addresses keep being served; tokens come back with time.
    func rateLimits() throws {
        let limited = DiscoveryHandler(store: store, ttlSeconds: ttl, udpAddress: "198.51.100.1:9091",
                                       limits: DiscoveryRateLimits(perKey: RateLimit(perSecond: 1, burst: 3),
                                                                   perIP: RateLimit(perSecond: 0.1, burst: 5)))
        func put(_ kp: KeyPair, from ip: [UInt8], at t: Int64) -> DiscoveryResponse {
            var req = signedRequest(kp, "PUT", "/v1/transports/\(kp.publicKey.hex)", body: "{}", nowMs: t)
            req.remoteAddress = ip
            return limited.handle(req, nowMs: t)
        }
        let ip1: [UInt8] = [198, 51, 100, 1], ip2: [UInt8] = [198, 51, 100, 2]
        // Per key: 3 in a burst, the 4th refused, from any address.
        for i in 0..<3 { XCTAssertEqual(put(a, from: ip1, at: now + Int64(i)).status, 200) }
        let refused = put(a, from: ip2, at: now + 3)
        XCTAssertEqual(refused.status, 429, refused.body)
        XCTAssertEqual(refused.retryAfter, 1)
        XCTAssertTrue(errorText(refused).hasPrefix("too many writes for key"), errorText(refused))
        // Another key is served; after a second one more write of `a` is.
        XCTAssertEqual(put(b, from: ip2, at: now + 4).status, 200)
        XCTAssertEqual(put(a, from: ip2, at: now + 1_010).status, 200)
        // Per address: ip1 has 5 in a burst (3 used above, 0.1 back since); fresh keys do not help.
        let fresh = (40..<60).map { TestKeys.pair(UInt8($0)) }
        var statuses: [Int] = []
        for (i, k) in fresh.prefix(4).enumerated() { statuses.append(put(k, from: ip1, at: now + 1_020 + Int64(i)).status) }
        XCTAssertEqual(statuses, [200, 200, 429, 429], "\(statuses)")
        // An unsigned write also costs its address a token (checked before the signature).
        XCTAssertEqual(limited.handle(DiscoveryRequest(method: "PUT", target: "/v1/transports/\(c.publicKey.hex)", headers: [], body: [],
                                                       remoteAddress: ip1), nowMs: now + 1_030).status, 429)
        // IPv6: one bucket per /64.
        let v6a: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1] + [UInt8](repeating: 1, count: 8)
        let v6b: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1] + [UInt8](repeating: 2, count: 8)
        for (i, k) in fresh[4..<9].enumerated() { XCTAssertEqual(put(k, from: i % 2 == 0 ? v6a : v6b, at: now + 2_000).status, 200) }
        XCTAssertEqual(put(fresh[9], from: v6b, at: now + 2_000).status, 429)
        // Reads have their own bucket (default 100/s, burst 1000): writes did not use it up.
        var get = getRequest("/v1/transports/\(a.publicKey.hex)")
        get.remoteAddress = ip1
        XCTAssertEqual(limited.handle(get, nowMs: now + 2_000).status, 200)
    }

    /// Reads and rendezvous datagrams beyond an address's read bucket: 429 / dropped before the
    /// lookup or the signature check; other addresses keep being served.
    func readLimits() throws {
        let limited = DiscoveryHandler(store: store, ttlSeconds: ttl, udpAddress: "198.51.100.1:9091",
                                       limits: DiscoveryRateLimits(readsPerIP: RateLimit(perSecond: 1, burst: 4)))
        let ip1: [UInt8] = [198, 51, 100, 1], ip2: [UInt8] = [198, 51, 100, 2]
        func get(from ip: [UInt8], at t: Int64) -> DiscoveryResponse {
            var req = getRequest("/v1/info")
            req.remoteAddress = ip
            return limited.handle(req, nowMs: t)
        }
        let statuses = (0..<6).map { get(from: ip1, at: now + Int64($0)).status }
        XCTAssertEqual(statuses, [200, 200, 200, 200, 429, 429])
        let refused = get(from: ip1, at: now + 6)
        XCTAssertTrue(errorText(refused).hasPrefix("too many reads from this address"), errorText(refused))
        XCTAssertEqual(refused.retryAfter, 1)
        XCTAssertEqual(get(from: ip2, at: now + 6).status, 200)
        XCTAssertEqual(get(from: ip1, at: now + 1_100).status, 200)
        // Datagrams share the read bucket and are counted before parsing: garbage uses it up too.
        let src = RendezvousAddress(address: [203, 0, 113, 9], port: 4000)!
        for i in 0..<4 {
            guard case .failure(.malformed) = limited.handleDatagram([0xff], from: src, nowMs: now + Int64(i)) else { return XCTFail("garbage \(i)") }
        }
        guard case .failure(.rateLimited(let why)) = limited.handleDatagram([0xff], from: src, nowMs: now + 5) else {
            return XCTFail("datagram beyond the burst not rate limited")
        }
        XCTAssertTrue(why.contains("1/s, burst 4"), why)
        let other = RendezvousAddress(address: [203, 0, 113, 10], port: 4000)!
        guard case .failure(.malformed) = limited.handleDatagram([0xff], from: other, nowMs: now + 5) else { return XCTFail("another source limited") }
    }

    /// A DELETE between the PUT's write and its answer must not crash the service: the answer is
    /// what was written (before: a second read, force-unwrapped).
    func putRacingDelete() throws {
        let racing = DiscoveryHandler(store: DeletingStore(inner: store), ttlSeconds: ttl, udpAddress: "198.51.100.1:9091")
        let r = racing.handle(signedRequest(a, "PUT", "/v1/transports/\(a.publicKey.hex)", body: #"{"stcpr":["203.0.113.5:7777"]}"#, nowMs: now), nowMs: now)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertEqual(try TransportEntry.decode(Array(r.body.utf8)).stcpr, ["203.0.113.5:7777"])
        XCTAssertEqual(handler.handle(getRequest("/v1/transports/\(a.publicKey.hex)"), nowMs: now).status, 404)
    }

    func info() {
        let r = handler.handle(getRequest("/v1/info"), nowMs: now)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, #"{"version":"\#(DiscoveryAPI.version)","udp":"198.51.100.1:9091","ttl":30,"private_addresses":false}"#)
    }
}

/// A store where every transport write is deleted at once, as by a concurrent `DELETE`.
final class DeletingStore: DiscoveryStore {
    let inner: any DiscoveryStore
    init(inner: any DiscoveryStore) { self.inner = inner }

    func putTransport(pk: String, registration: TransportRegistration, expiresMs: Int64) throws(StoreError) {
        try inner.putTransport(pk: pk, registration: registration, expiresMs: expiresMs)
        _ = try inner.deleteTransport(pk: pk, nowMs: expiresMs - 1)
    }
    func transport(pk: String, nowMs: Int64) throws(StoreError) -> TransportEntry? { try inner.transport(pk: pk, nowMs: nowMs) }
    func deleteTransport(pk: String, nowMs: Int64) throws(StoreError) -> Bool { try inner.deleteTransport(pk: pk, nowMs: nowMs) }
    func bind(pk: String, address: String, token: String, timestampMs: Int64, expiresMs: Int64) throws(StoreError) -> Bool {
        try inner.bind(pk: pk, address: address, token: token, timestampMs: timestampMs, expiresMs: expiresMs)
    }
    func binding(pk: String, nowMs: Int64) throws(StoreError) -> SudphBinding? { try inner.binding(pk: pk, nowMs: nowMs) }
    func putService(type: DiscoveryServiceType, pk: String, registration: ServiceRegistration, expiresMs: Int64) throws(StoreError) {
        try inner.putService(type: type, pk: pk, registration: registration, expiresMs: expiresMs)
    }
    func services(type: DiscoveryServiceType, country: String?, version: String?, after: String?, limit: Int,
                  nowMs: Int64) throws(StoreError) -> [ServiceEntry] {
        try inner.services(type: type, country: country, version: version, after: after, limit: limit, nowMs: nowMs)
    }
    func deleteService(type: DiscoveryServiceType, pk: String, nowMs: Int64) throws(StoreError) -> Bool {
        try inner.deleteService(type: type, pk: pk, nowMs: nowMs)
    }
    func recordNonce(pk: String, nonce: String, expiresMs: Int64, nowMs: Int64) throws(StoreError) -> Bool {
        try inner.recordNonce(pk: pk, nonce: nonce, expiresMs: expiresMs, nowMs: nowMs)
    }
    func purge(nowMs: Int64) throws(StoreError) -> Int { try inner.purge(nowMs: nowMs) }
}
