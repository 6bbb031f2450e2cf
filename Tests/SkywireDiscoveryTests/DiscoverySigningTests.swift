import SkywireCrypto
import SkywireDiscovery
import XCTest

final class DiscoverySigningTests: XCTestCase {
    func testSignedStringBytes() {
        let pk = String(repeating: "ab", count: 32)
        let bytes = DiscoverySigning.signedBytes(method: "PUT", target: "/v1/services/vpn/\(pk)?x=1", publicKeyHex: pk,
                                                 timestampMs: 1_700_000_000_123, nonceHex: String(repeating: "0f", count: 16), body: [])
        // BLAKE2b-256 of the empty string (RFC 7693 reference value).
        let emptyHash = "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        let expected = "SKYWIRE-DISCOVERY-1\nPUT\n/v1/services/vpn/\(pk)?x=1\n\(pk)\n1700000000123\n\(String(repeating: "0f", count: 16))\n\(emptyHash)"
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), expected)
        XCTAssertEqual(bytes.last, UInt8(ascii: "8"), "no trailing newline")
        XCTAssertEqual(HexCoding.encode(Blake2b.hash256(Array("abc".utf8))),
                       "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319")
    }

    func testSignVerifies() throws {
        let kp = try KeyPair.fromSeed([UInt8](repeating: 7, count: 32))
        let body = Array(#"{"sudph":true}"#.utf8)
        let h = DiscoverySigning.sign(keyPair: kp, method: "PUT", target: "/v1/transports/\(kp.publicKey.hex)", body: body,
                                      timestampMs: 42, nonce: [UInt8](repeating: 1, count: 16))
        XCTAssertEqual(h.publicKeyHex, kp.publicKey.hex)
        XCTAssertEqual(h.nonceHex, String(repeating: "01", count: 16))
        XCTAssertEqual(h.fields.map(\.name), ["Skywire-PK", "Skywire-Timestamp", "Skywire-Nonce", "Skywire-Signature"])
        let msg = DiscoverySigning.signedBytes(method: "PUT", target: "/v1/transports/\(kp.publicKey.hex)", publicKeyHex: h.publicKeyHex,
                                               timestampMs: 42, nonceHex: h.nonceHex, body: body)
        XCTAssertTrue(kp.publicKey.verify(signature: HexCoding.decode(h.signatureHex)!, message: msg))
        XCTAssertFalse(kp.publicKey.verify(signature: HexCoding.decode(h.signatureHex)!, message: msg + [0]))
        // Random nonces differ.
        let h1 = DiscoverySigning.sign(keyPair: kp, method: "PUT", target: "/", body: [], timestampMs: 1)
        let h2 = DiscoverySigning.sign(keyPair: kp, method: "PUT", target: "/", body: [], timestampMs: 1)
        XCTAssertNotEqual(h1.nonceHex, h2.nonceHex)
        XCTAssertEqual(h1.nonceHex.count, 32)
    }

    func testRegistrationRoundTrips() throws {
        let t = TransportRegistration(stcpr: ["203.0.113.5:7777", "[2001:db8::1]:7777"], sudph: true)
        XCTAssertEqual(try TransportRegistration.decode(Array(t.json().compact().utf8)), t)
        let s = ServiceRegistration(version: "0.1.0", country: "DE", label: "Berlin \"exit\"", stats: ["connected": 3, "bytes": 9])
        XCTAssertEqual(s.json().compact(), #"{"version":"0.1.0","country":"DE","label":"Berlin \"exit\"","stats":{"bytes":9,"connected":3}}"#)
        XCTAssertEqual(try ServiceRegistration.decode(Array(s.json().compact().utf8)), s)
    }
}
