import Foundation
import SkywireConfig
import XCTest
@testable import SkywireVisor

/// The control socket's lines are written and read with SkywireConfig's JSON implementation
/// (issue 17: one JSON implementation); what they carry is unchanged: Foundation's parser,
/// which the socket used before, reads the same values from them.
final class ControlJSONTests: XCTestCase {
    private let value: ControlValue = [
        "pk": "ab\"c\\d\n\u{1}é", "n": 3, "neg": -9_223_372_036_854_775_808, "rtt_ms": .double(0.25),
        "tiny": .double(1e-5), "ok": true, "none": .null, "list": ["x", 1, [:], []],
        "nested": ["b": ["c": .double(12.5)]],
    ]

    func testLinesAreCompactSortedJSONThatFoundationReads() throws {
        let line = try ControlCodec.encodeLine(ControlResponse(id: 4, result: value))
        XCTAssertEqual(line.last, UInt8(ascii: "\n"))
        XCTAssertEqual(line.filter { $0 == UInt8(ascii: "\n") }.count, 1, "one line")
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\"id\":4,\"result\":{\"list\":"), text)
        let parsed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.dropLast())) as? [String: Any])
        XCTAssertEqual(parsed["id"] as? Int, 4)
        let result = try XCTUnwrap(parsed["result"] as? [String: Any])
        XCTAssertEqual(result["pk"] as? String, "ab\"c\\d\n\u{1}é")
        XCTAssertEqual(result["neg"] as? Int64, Int64.min)
        XCTAssertEqual(result["rtt_ms"] as? Double, 0.25)
        XCTAssertEqual(result["tiny"] as? Double, 1e-5)
        XCTAssertTrue(result["none"] is NSNull)
        XCTAssertEqual((result["nested"] as? [String: Any]).flatMap { $0["b"] as? [String: Any] }?["c"] as? Double, 12.5)
        // And back through our reader: the same value.
        let back = try ControlCodec.decode(ControlResponse.self, from: Array(line.dropLast()))
        XCTAssertEqual(back.result, value)
        XCTAssertNil(back.error)
    }

    func testRequestsFromOtherWritersAreRead() throws {
        // As Python's json.dumps (the integration tests' ctl) and jq write them.
        let python = #"{"id": 1, "method": "apps.start", "params": {"name": "skysocks", "args": ["--whitelist", "any"]}}"#
        let r = try ControlCodec.decode(ControlRequest.self, from: Array(python.utf8))
        XCTAssertEqual(r.method, "apps.start")
        XCTAssertEqual(r.params["args"], ["--whitelist", "any"])
        let floaty = try ControlCodec.decode(ControlRequest.self, from: Array(#"{"id":2.0,"method":"tp.ls"}"#.utf8))
        XCTAssertEqual(floaty.id, 2)
        XCTAssertEqual(floaty.params, [:])
        let encoded = try JSONSerialization.data(withJSONObject: ["id": 3, "method": "vpn.start", "params": ["killswitch": true, "timeout": 20]])
        let fromFoundation = try ControlCodec.decode(ControlRequest.self, from: Array(encoded))
        XCTAssertEqual(fromFoundation.params["killswitch"]?.boolValue, true)
        XCTAssertEqual(try fromFoundation.params.optionalInt("timeout"), 20)
    }

    func testMalformedLinesAreBadRequests() {
        for bad in ["", "{", "[1]", #"{"id":1}"#, #"{"id":"1","method":"x"}"#, #"{"id":1,"method":"x","params":[]}"#,
                    #"{"id":1,"method":"x","params":{"n":1e999}}"#, String(repeating: "[", count: 100)] {
            XCTAssertThrowsError(try ControlCodec.decode(ControlRequest.self, from: Array(bad.utf8)), bad) { error in
                XCTAssertEqual((error as? ControlError)?.code, .badRequest, "\(bad): \(error)")
            }
        }
    }

    func testErrorResponsesKeepTheirCode() throws {
        let line = try ControlCodec.encodeLine(ControlResponse(id: 9, error: ControlError(.forbidden, "no")))
        XCTAssertEqual(String(decoding: line, as: UTF8.self), #"{"error":{"code":"forbidden","message":"no"},"id":9}"# + "\n")
        let back = try ControlCodec.decode(ControlResponse.self, from: Array(line.dropLast()))
        XCTAssertEqual(back.error, ControlErrorBody(code: "forbidden", message: "no"))
        XCTAssertNil(back.result)
    }

    func testPrettyPrintedIsStable() {
        let v: ControlValue = ["b": 1, "a": [.double(0.5)]]
        XCTAssertEqual(v.prettyPrinted, "{\n  \"a\": [\n    0.5\n  ],\n  \"b\": 1\n}\n")
    }
}
