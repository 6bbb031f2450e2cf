@testable import SkywireVisor
import XCTest

/// The web UI's request parser: every size bounded before it is buffered, malformed heads refused
/// with a status and a message (docs/ui.md §Limits).
final class UIHTTPParserTests: XCTestCase {
    private func parse(_ text: String) -> UIHTTPParser.Outcome {
        var p = UIHTTPParser()
        return p.feed(Array(text.utf8))
    }

    func testRequestWithQueryCookieAndBody() {
        let raw = "POST /api/vpn/start?x=a%20b&y=1+2 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nCookie: a=1; skw_session=abc\r\n"
            + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        guard case .request(let r) = parse(raw) else { return XCTFail("\(parse(raw))") }
        XCTAssertEqual(r.method, "POST")
        XCTAssertEqual(r.path, "/api/vpn/start")
        XCTAssertEqual(r.query, ["x": "a b", "y": "1 2"])
        XCTAssertEqual(r.headers["host"], "127.0.0.1:8000")
        XCTAssertEqual(r.cookie("skw_session"), "abc")
        XCTAssertNil(r.cookie("skw"))
        XCTAssertEqual(r.body, Array("{}".utf8))
    }

    func testByteByByteFeedWaitsForTheBody() {
        let raw = Array("POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".utf8)
        var p = UIHTTPParser()
        for b in raw.dropLast() { XCTAssertEqual(p.feed([b]), .needMore) }
        guard case .request(let r) = p.feed([raw.last!]) else { return XCTFail() }
        XCTAssertEqual(r.body, Array("hello".utf8))
    }

    func testOversizedHeadRefusedBeforeItEnds() {
        var p = UIHTTPParser()
        XCTAssertEqual(p.feed(Array("GET / HTTP/1.1\r\n".utf8)), .needMore)
        let filler = Array(repeating: UInt8(ascii: "a"), count: UIHTTPParser.maxHeadBytes)
        guard case .refused(431, _) = p.feed(filler) else { return XCTFail("a head without end must be refused at the bound") }
    }

    func testRefusals() {
        func status(_ raw: String) -> Int? {
            if case .refused(let s, _) = parse(raw) { return s }
            return nil
        }
        let many = (0...UIHTTPParser.maxHeaderCount).map { "X-\($0): v\r\n" }.joined()
        XCTAssertEqual(status("GET / HTTP/1.1\r\n\(many)\r\n"), 431)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: \(UIHTTPParser.maxBodyBytes + 1)\r\n\r\n"), 413)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 501)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nBad Name: b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET http://x/ HTTP/1.1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/2\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /%zz HTTP/1.1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /\u{e9} HTTP/1.1\r\n\r\n"), 400)
    }

    func testResponseCarriesSecurityHeadersAndLength() {
        let text = String(decoding: UIHTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("hi".utf8)).encoded(), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertTrue(text.contains("Content-Length: 2\r\n"))
        XCTAssertTrue(text.contains("X-Frame-Options: DENY\r\n"))
        XCTAssertTrue(text.contains("Content-Security-Policy: default-src 'self'"))
        XCTAssertTrue(text.hasSuffix("\r\n\r\nhi"))
    }
}
