import XCTest
@testable import SkywireConfig

final class JSONParserTests: XCTestCase {
    private func syntaxError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONParser.SyntaxError? {
        do {
            let v = try JSONParser.parse(text)
            XCTFail("parsed \(v)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    func testScalarsAndStructure() throws {
        let v = try JSONParser.parse(#" { "a" : [1, -2.5e3, true, false, null, "x"], "b": {} } "#)
        XCTAssertEqual(v, .object([
            .init(name: "a", value: .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null, .string("x")])),
            .init(name: "b", value: .object([])),
        ]))
    }

    func testStringEscapesAndSurrogatePairs() throws {
        let v = try JSONParser.parse(#""q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00""#)
        XCTAssertEqual(v, .string("q\" b\\ s/ \u{08}\u{0C}\n\r\t é 😀"))
    }

    func testDuplicateNamesAreKept() throws {
        let v = try JSONParser.parse(#"{"a": 1, "a": 2}"#)
        XCTAssertEqual(v, .object([.init(name: "a", value: .number("1")), .init(name: "a", value: .number("2"))]))
    }

    func testErrorPositionsAreLineAndColumn() {
        let e = syntaxError("{\n  \"a\": 1,\n  \"b\" 2\n}")
        XCTAssertEqual(e?.line, 3)
        XCTAssertEqual(e?.column, 7)
        XCTAssertEqual(e?.message, "unexpected character '2', expected ':'")
    }

    func testColumnsCountCharactersNotBytes() {
        // "é" is two UTF-8 bytes but one column.
        let e = syntaxError(#"["é", x]"#)
        XCTAssertEqual(e?.line, 1)
        XCTAssertEqual(e?.column, 7)
    }

    func testRejectsMalformedInput() {
        let cases: [(String, String)] = [
            ("", "unexpected end of input, expected a value"),
            ("{\"a\": 1,}", "expected a member name"),
            ("[1,]", "unexpected character ']', expected a value"),
            ("01", "leading zeros"),
            ("1.", "digits must follow '.'"),
            ("1e", "digits must follow the exponent"),
            ("\"abc", "unterminated string"),
            ("\"a\u{01}\"", "raw control character"),
            (#""\x""#, "invalid escape"),
            (#""\ud83d""#, "unpaired UTF-16 surrogate"),
            (#""\u12""#, "four hex digits"),
            ("{} x", "after the end of the JSON value"),
            ("nul", "expected a value"),
            ("{'a': 1}", "expected a member name in double quotes"),
        ]
        for (text, expected) in cases {
            guard let e = syntaxError(text) else { continue }
            XCTAssertTrue(e.message.contains(expected), "\(text.debugDescription): got \(e.message)")
        }
    }

    func testRejectsInvalidUTF8WithPosition() {
        var bytes = Array("{\n \"a\": \"".utf8)
        bytes.append(0xFF)
        bytes.append(contentsOf: Array("\"}".utf8))
        XCTAssertThrowsError(try JSONParser.parse(bytes)) { error in
            guard let e = error as? JSONParser.SyntaxError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.line, 2)
            XCTAssertEqual(e.column, 8)
            XCTAssertTrue(e.message.contains("UTF-8"))
        }
    }

    func testNestingIsBounded() {
        let deep = String(repeating: "[", count: JSONParser.maxDepth + 1) + String(repeating: "]", count: JSONParser.maxDepth + 1)
        XCTAssertTrue(syntaxError(deep)?.message.contains("nesting deeper than") ?? false)
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        XCTAssertNoThrow(try JSONParser.parse(ok))
        // Far deeper input must fail cleanly, not overflow the stack.
        let hostile = String(repeating: "[", count: 1_000_000)
        XCTAssertNotNil(syntaxError(hostile))
    }

    func testByteOrderMarkIsIgnored() throws {
        XCTAssertEqual(try JSONParser.parse([0xEF, 0xBB, 0xBF] + Array("true".utf8)), .bool(true))
    }

    func testPrettyPrintingSortsNamesAndEscapes() {
        let v = JSONValue.object([
            .init(name: "b", value: .array([.number("1"), .string("t\"ab\t\u{01}/é")])),
            .init(name: "a", value: .object([])),
            .init(name: "c", value: .array([])),
        ])
        XCTAssertEqual(v.prettyPrinted(), """
            {
              "a": {},
              "b": [
                1,
                "t\\"ab\\t\\u0001/é"
              ],
              "c": []
            }

            """)
    }

    func testPrintThenParseIsIdentityUpToOrder() throws {
        let v = JSONValue.object([
            .init(name: "x", value: .string("line\nbreak \u{1F600} \\ \"")),
            .init(name: "y", value: .array([.null, .bool(true), .number("-0.5")])),
        ])
        XCTAssertEqual(try JSONParser.parse(v.prettyPrinted()), v)
    }
}
