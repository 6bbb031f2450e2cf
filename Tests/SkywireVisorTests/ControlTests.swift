import XCTest
@testable import SkywireVisor
@testable import skywire

final class ControlTests: XCTestCase {
    func testControlOptionsBeforeTheSubcommandMoveBehindIt() {
        XCTAssertEqual(ControlArguments.hoist(["cli", "--rpc", "/r.sock", "tp", "ls", "--json"]),
                       ["cli", "tp", "ls", "--json", "--rpc", "/r.sock"])
        XCTAssertEqual(ControlArguments.hoist(["cli", "-c", "x.json", "--rpc-timeout=5", "visor", "info"]),
                       ["cli", "visor", "info", "-c", "x.json", "--rpc-timeout=5"])
        XCTAssertEqual(ControlArguments.hoist(["cli", "tp", "ls", "--rpc", "/r.sock"]),
                       ["cli", "tp", "ls", "--rpc", "/r.sock"])
        XCTAssertEqual(ControlArguments.hoist(["config", "gen", "-c", "x"]), ["config", "gen", "-c", "x"])
    }

    func testSocketPathPrecedence() throws {
        XCTAssertEqual(try ControlPaths.resolve(explicit: "/a", environment: "/b", configPath: nil), "/a")
        XCTAssertEqual(try ControlPaths.resolve(explicit: nil, environment: "/b", configPath: nil), "/b")
        XCTAssertEqual(try ControlPaths.resolve(explicit: nil, environment: nil, configPath: nil), ControlPaths.defaultSocket)
        let dir = FileManagerTemp.make()
        let cfg = dir + "/c.json"
        try "{\"cli_addr\": \"/run/x/y.sock\", \"other\": 1}".write(toFile: cfg, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ControlPaths.resolve(explicit: nil, environment: nil, configPath: cfg), "/run/x/y.sock")
        XCTAssertThrowsError(try ControlPaths.resolve(explicit: nil, environment: nil, configPath: dir + "/missing.json"))
    }

    func testControlValueRoundTripsThroughJSONLines() throws {
        let request = ControlRequest(id: 7, method: "tp.add", params: ["pk": "ab", "n": 3, "ok": true, "list": ["x", 1]])
        let line = try ControlCodec.encodeLine(request)
        XCTAssertEqual(line.last, UInt8(ascii: "\n"))
        let decoded = try ControlCodec.decode(ControlRequest.self, from: Array(line.dropLast()))
        XCTAssertEqual(decoded.method, "tp.add")
        XCTAssertEqual(decoded.params["n"]?.intValue, 3)
        XCTAssertEqual(decoded.params["ok"]?.boolValue, true)
        XCTAssertEqual(decoded.params["list"], ["x", 1])
        XCTAssertThrowsError(try decoded.params.requiredString("missing"))
        XCTAssertThrowsError(try decoded.params.optionalInt("pk"))
    }
}

enum FileManagerTemp {
    static func make() -> String {
        var template = Array("/tmp/skwtest.XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }
}
