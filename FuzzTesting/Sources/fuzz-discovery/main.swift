// The discovery service's request handling (Sources/SkywireDiscoveryServer/DiscoveryHandler.swift:
// routing, signature and replay checks, body validation through DiscoveryJSONReader and the models in
// Sources/SkywireDiscovery) over a fresh in-memory SQLite store per input, plus the client-side
// parsers (DiscoveryHTTP.parseResponse, DiscoveryURL) and rendezvous datagrams.
//
// Input: up to 8 steps. A step is a request (method, one of the API paths or raw path bytes, signed
// with a fixed key, signed for another key's path, or with raw headers, and a body) or a BIND
// datagram. Signing inside the harness lets the fuzzer reach body validation behind the signature.
//
// Invariants: every answer has a status the API defines (never 5xx) and a JSON object body ({"error":
// "…"} for errors, empty for 204); a write answered 2xx is refused when replayed; a transport
// registration answered 200 is what GET returns next; every body the models decode re-encodes to JSON
// that decodes to the same value; parseResponse never returns more body than it was given.
import FuzzSupport
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireDiscoveryServer
import SkywireWire

nonisolated(unsafe) let keys: [KeyPair] = [UInt8(7), 8].map { seed in
    guard let k = try? KeyPair.fromSeed([UInt8](repeating: seed, count: 32)) else { fatalError("fromSeed") }
    return k
}
let baseNowMs: Int64 = 1_800_000_000_000
let allowedStatuses: Set<Int> = [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429]
let methods = ["GET", "PUT", "DELETE", "POST", "PATCH", "HEAD"]

func path(_ choice: UInt8, key: KeyPair, other: KeyPair, raw: [UInt8]) -> String {
    switch choice % 8 {
    case 0: return "/v1/info"
    case 1: return "/v1/transports/\(key.publicKey.hex)"
    case 2: return "/v1/services/vpn/\(key.publicKey.hex)"
    case 3: return "/v1/services/proxy?country=DE&version=0.1.0"
    case 4: return "/v1/punch/\(other.publicKey.hex)"
    case 5: return "/v1/services/vpn"
    case 6: return "/v1/transports/\(other.publicKey.hex)"
    default: return String(decoding: raw, as: UTF8.self)
    }
}

func checkResponse(_ r: DiscoveryResponse, for req: DiscoveryRequest) {
    invariant(allowedStatuses.contains(r.status), "status \(r.status) for \(req.method) \(req.target.prefix(100)): \(r.body.prefix(200))")
    if r.status == 204 {
        invariant(r.body.isEmpty, "204 with a body")
        return
    }
    guard case .object(let members)? = try? JSONParser.parse(r.body) else {
        invariant(false, "answer body is not a JSON object: \(r.body.prefix(200))")
        return
    }
    if r.status >= 400 {
        invariant(members.count == 1 && members[0].name == "error", "error answer \(r.body.prefix(200))")
    }
}

/// Model round trips: decode → json → decode gives the same value.
func checkModels(_ body: [UInt8]) {
    if let t = try? TransportRegistration.decode(body) {
        invariant((try? TransportRegistration.decode(Array(t.json().compact().utf8))) == t, "TransportRegistration round trip: \(t)")
    }
    if let s = try? ServiceRegistration.decode(body) {
        invariant((try? ServiceRegistration.decode(Array(s.json().compact().utf8))) == s, "ServiceRegistration round trip: \(s)")
    }
    if let e = try? TransportEntry.decode(body) {
        invariant((try? TransportEntry.decode(Array(e.json().compact().utf8))) == e, "TransportEntry round trip: \(e)")
    }
    if let list = try? ServiceEntry.decodeList(body) {
        let json = JSONValue.object(["services": .array(list.map { $0.json() })]).compact()
        invariant((try? ServiceEntry.decodeList(Array(json.utf8))) == list, "ServiceEntry list round trip")
    }
    if let (_, payload) = try? DiscoveryHTTP.parseResponse(body) {
        invariant(payload.count <= body.count, "parseResponse returned \(payload.count) body bytes from \(body.count)")
    }
    if let url = try? DiscoveryURL(String(decoding: body, as: UTF8.self)) {
        invariant(!url.host.isEmpty && url.port > 0, "DiscoveryURL \(url)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDiscovery(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.byte()
    if mode & 0x80 != 0 {
        checkModels(input.rest())
        return 0
    }
    guard let store = try? DiscoveryStoreURL.open("sqlite::memory:") else { fatalError("sqlite in memory") }
    let handler = DiscoveryHandler(store: store, ttlSeconds: 60, udpAddress: "198.51.100.1:9091")
    var now = baseNowMs
    var steps = 0
    while !input.isAtEnd && steps < 8 {
        steps += 1
        now += Int64(input.byte())
        let op = input.byte()
        let signer = keys[Int(op >> 7)], other = keys[1 - Int(op >> 7)]
        if op & 0x0F == 0x0F {
            // A rendezvous BIND: signed (valid) or raw bytes, from 192.0.2.1:4000.
            let bytes: [UInt8]
            var token: [UInt8]?
            if op & 0x10 != 0 {
                let ts = UInt64(now) &+ UInt64(input.byte())
                let t = input.padded(SudphRendezvous.tokenSize)
                let sig = signer.sign(SudphRendezvous.bindSignedBytes(publicKey: signer.publicKey.bytes, timestampMs: ts, token: t))
                bytes = SudphRendezvous.bind(publicKey: signer.publicKey.bytes, timestampMs: ts, token: t, signature: sig).encoded()
                token = t
            } else {
                bytes = input.chunk()
            }
            guard let source = RendezvousAddress(address: [192, 0, 2, 1], port: 4000) else { return 0 }
            if case .success(let reply) = handler.handleDatagram(bytes, from: source, nowMs: now) {
                // BIND_OK echoes the BIND's token (PROTOCOL.md §4.5) and the observed address.
                let parsed = try? SudphRendezvous.parse(reply)
                if let token {
                    invariant(parsed == .bindOK(token: token, observed: source), "BIND answered with \(hex(reply))")
                } else if case .bindOK(_, let observed)? = parsed {
                    invariant(observed == source, "BIND answered with \(hex(reply))")
                } else {
                    invariant(false, "BIND answered with \(hex(reply))")
                }
            }
            continue
        }
        let method = methods[Int(op & 0x0F) % methods.count]
        let auth = (op >> 4) & 0x07
        let target = path(input.byte(), key: auth == 1 ? other : signer, other: other, raw: input.chunk())
        let body = input.chunk()
        var headers: [(name: String, value: String)] = []
        switch auth {
        case 0, 1, 2:
            // Signed by `signer`; auth 1 names the other key in the path (403), auth 2 signs a stale timestamp.
            let ts = auth == 2 ? now - DiscoveryAPI.maxClockSkewMs - 1 : now
            let signed = DiscoverySigning.sign(keyPair: signer, method: method, target: target, body: body,
                                               timestampMs: ts, nonce: input.padded(16))
            headers = signed.fields
        case 3:
            headers = [(DiscoveryAPI.headerPK, signer.publicKey.hex), ("skywire-pk", other.publicKey.hex)]
        default:
            for _ in 0..<Int(input.byte() % 5) {
                headers.append((String(decoding: input.chunk(), as: UTF8.self), String(decoding: input.chunk(), as: UTF8.self)))
            }
        }
        let req = DiscoveryRequest(method: method, target: target, headers: headers, body: body)
        let resp = handler.handle(req, nowMs: now)
        checkResponse(resp, for: req)
        checkModels(body)
        if auth <= 2, method != "GET", (200..<300).contains(resp.status) {
            let again = handler.handle(req, nowMs: now)
            // 401 (nonce already used); 429 if a write rate limit answers first.
            invariant(again.status == 401 || again.status == 429, "a replayed \(method) \(target.prefix(100)) got \(again.status)")
        }
        if method == "PUT", resp.status == 200, target.hasPrefix("/v1/transports/"),
           let reg = try? TransportRegistration.decode(body) {
            let get = handler.handle(DiscoveryRequest(method: "GET", target: target, headers: [], body: []), nowMs: now)
            let entry = try? TransportEntry.decode(Array(get.body.utf8))
            invariant(get.status == 200 && entry?.stcpr == reg.stcpr, "PUT \(reg) then GET gave \(get.status) \(get.body.prefix(200))")
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        func chunk(_ s: String) -> [UInt8] { let b = Array(s.utf8); return [UInt8(b.count)] + b }
        let nonce = [UInt8](repeating: 0x42, count: 16)
        let transport = chunk(#"{"stcpr":["203.0.113.5:7777","[2001:db8::1]:7777"],"sudph":true}"#)
        let service = chunk(#"{"version":"0.1.0","country":"DE","label":"exit 1","stats":{"connected":2}}"#)
        // step: time delta, op (bit 7 key, bits 4-6 auth, bits 0-3 method), path choice, raw path chunk, body chunk, nonce
        let putTransport: [UInt8] = [1, 0x01, 1, 0] + transport + nonce
        let getTransport: [UInt8] = [1, 0x40, 1, 0, 0]
        let putService: [UInt8] = [1, 0x01, 2, 0] + service + nonce.map { $0 ^ 1 }
        let listServices: [UInt8] = [1, 0x40, 3, 0, 0]
        let deleteService: [UInt8] = [1, 0x02, 2, 0, 0] + nonce.map { $0 ^ 2 }
        let bindA: [UInt8] = [1, 0x1F, 0], bindB: [UInt8] = [1, 0x9F, 0]
        let punch: [UInt8] = [1, 0x03, 4, 0, 0] + nonce.map { $0 ^ 3 }
        let forbidden: [UInt8] = [1, 0x11, 1, 0] + transport + nonce.map { $0 ^ 4 }
        let rawHeaders: [UInt8] = [1, 0x51, 7] + chunk("/v1/transports/../x?y=%00") + chunk("{}") + [2] + chunk("Skywire-PK") + chunk("00") + chunk("Host") + chunk("x")
        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}".utf8)
        let entries = Array(#"{"services":[{"pk":"\#(keys[0].publicKey.hex)","type":"vpn","version":"0.1.0","country":"DE","expires_ms":1800000060000}]}"#.utf8)
        return [
            ("api-transport", [0] + putTransport + getTransport),
            ("api-service", [0] + putService + listServices + deleteService),
            ("api-punch", [0] + bindA + bindB + punch),
            ("api-forbidden-and-raw", [0] + forbidden + rawHeaders + [1, 0x0F] + chunk("\u{10}garbage")),
            ("model-http-response", [0x80] + response),
            ("model-service-list", [0x80] + entries),
            ("model-url", [0x80] + Array("http://[2001:db8::1]:9090/".utf8)),
        ]
    }
    return 0
}

@_cdecl("fuzz_discovery_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
