import XCTest
@testable import SkywireConfig

/// `ui` in skywire-config.json (docs/ui.md): optional, default 127.0.0.1:8000, "" for off,
/// only IP literals.
final class UIConfigTests: XCTestCase {
    private func document(ui: String?) -> String {
        var text = VisorConfig.generate(keyPair: TestKeys.own).jsonText()
        if let ui {
            text = String(text.dropLast(2)) + ",\n  \"ui\": \(ui)\n}\n"
        }
        return text
    }

    func testAbsentMeansTheLoopbackDefaultAndIsNotWritten() throws {
        let c = try VisorConfig.parse(document(ui: nil))
        XCTAssertEqual(c.ui.listen, HostPort(host: "127.0.0.1", port: 8000))
        XCTAssertFalse(c.jsonText().contains("\"ui\""), "a default ui is not written: files stay as they were")
    }

    func testListenAddressOffAndRoundTrip() throws {
        let lan = try VisorConfig.parse(document(ui: #"{"listen": "192.168.50.1:8080"}"#))
        XCTAssertEqual(lan.ui.listen, HostPort(host: "192.168.50.1", port: 8080))
        XCTAssertEqual(try VisorConfig.parse(lan.jsonText()), lan)
        let v6 = try VisorConfig.parse(document(ui: #"{"listen": "[::1]:8000"}"#))
        XCTAssertEqual(v6.ui.listen, HostPort(host: "::1", port: 8000))
        let off = try VisorConfig.parse(document(ui: #"{"listen": ""}"#))
        XCTAssertNil(off.ui.listen)
        XCTAssertEqual(try VisorConfig.parse(off.jsonText()), off)
        XCTAssertEqual(try VisorConfig.parse(document(ui: "{}")).ui, UIConfig())
    }

    func testBadValuesNamedWithTheirPath() {
        for (ui, message) in [
            (#"{"listen": "ui.example:8000"}"#, "must be an IP address and port"),
            (#"{"listen": "127.0.0.1"}"#, "is not IP:PORT (missing ':port')"),
            (#"{"listen": "127.0.0.1:0"}"#, "is not IP:PORT"),
            (#"{"listen": 8000}"#, "expected a string"),
            (#"{"listen": "127.0.0.1:8000", "password": "x"}"#, "unknown field \"password\""),
            (#""127.0.0.1:8000""#, "expected an object"),
        ] {
            do {
                _ = try VisorConfig.parse(document(ui: ui))
                XCTFail("loaded ui \(ui)")
            } catch {
                guard case .invalid(let problems) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(problems.count, 1, "\(problems)")
                XCTAssertTrue(problems.first?.path.hasPrefix("ui") == true, "\(problems)")
                XCTAssertTrue(problems.first?.message.contains(message) == true, "\(ui): \(problems)")
            }
        }
    }

    func testAnAddressBeyondLoopbackIsWarnedAbout() {
        var c = VisorConfig.generate(keyPair: TestKeys.own)
        XCTAssertFalse(c.warnings().contains { $0.path == "ui.listen" })
        c.ui.listen = HostPort(host: "0.0.0.0", port: 8000)
        XCTAssertTrue(c.warnings().contains { $0.path == "ui.listen" && $0.message.contains("plain HTTP") }, "\(c.warnings())")
    }
}
