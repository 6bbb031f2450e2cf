import SkywireDiscovery
import XCTest

/// The client side of the HTTP exchange (`skywire cli vpn list`): URL, request bytes, response parsing.
final class DiscoveryHTTPTests: XCTestCase {
    func testURL() throws {
        XCTAssertEqual(try DiscoveryURL("http://198.51.100.1:9090"), try DiscoveryURL("http://198.51.100.1:9090/"))
        let u = try DiscoveryURL("http://198.51.100.1:9090")
        XCTAssertEqual(u.host, "198.51.100.1")
        XCTAssertEqual(u.port, 9090)
        XCTAssertEqual(try DiscoveryURL("http://disc.example").port, 80)
        let v6 = try DiscoveryURL("http://[2001:db8::1]:8080")
        XCTAssertEqual(v6.host, "2001:db8::1")
        XCTAssertEqual(v6.port, 8080)
        for bad in ["https://x", "http://", "http://x:0", "http://x:99999", "http://x/path", "http://u@x", "x:80", "http://[::1"] {
            XCTAssertThrowsError(try DiscoveryURL(bad), bad)
        }
    }

    func testRequestBytes() {
        let r = DiscoveryHTTP.request(method: "GET", target: "/v1/services/vpn?country=DE", host: "h")
        XCTAssertEqual(String(decoding: r, as: UTF8.self),
                       "GET /v1/services/vpn?country=DE HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        let p = DiscoveryHTTP.request(method: "PUT", target: "/x", host: "h", headers: [("Skywire-PK", "ab")], body: [0x7b, 0x7d])
        XCTAssertEqual(String(decoding: p, as: UTF8.self),
                       "PUT /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\nContent-Type: application/json\r\nSkywire-PK: ab\r\n\r\n{}")
    }

    func testResponseParsing() throws {
        let ok = try DiscoveryHTTP.parseResponse(Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}extra".utf8))
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.body, Array("{}".utf8))
        let noLength = try DiscoveryHTTP.parseResponse(Array("HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"unknown key\"}".utf8))
        XCTAssertEqual(noLength.status, 404)
        XCTAssertEqual(DiscoveryHTTP.errorMessage(noLength.body), "unknown key")
        XCTAssertEqual(DiscoveryHTTP.errorMessage(Array("plain".utf8)), "plain")
        XCTAssertThrowsError(try DiscoveryHTTP.parseResponse(Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}".utf8)))
        XCTAssertThrowsError(try DiscoveryHTTP.parseResponse(Array("HTTP/1.1 200 OK\r\n".utf8)))
        XCTAssertThrowsError(try DiscoveryHTTP.parseResponse(Array("SSH-2.0-x\r\n\r\n".utf8)))
        XCTAssertThrowsError(try DiscoveryHTTP.parseResponse(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".utf8)))
    }

    func testServiceListDecoding() throws {
        let body = #"{"services":[{"pk":"aa","type":"vpn","version":"0.1.0","country":"DE","label":null,"stats":null,"expires_ms":5}]}"#
        let list = try ServiceEntry.decodeList(Array(body.utf8))
        XCTAssertEqual(list, [ServiceEntry(pk: "aa", type: .vpn, registration: ServiceRegistration(version: "0.1.0", country: "DE"), expiresMs: 5)])
        XCTAssertThrowsError(try ServiceEntry.decodeList(Array(#"{"services":[{"pk":"aa"}]}"#.utf8)))
        XCTAssertThrowsError(try ServiceEntry.decodeList(Array(#"{"services":[],"more":1}"#.utf8)))
    }
}
