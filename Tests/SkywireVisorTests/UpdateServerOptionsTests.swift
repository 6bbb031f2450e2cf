import SkywireConfig
import SkywireCrypto
import XCTest
@testable import SkywireVisor

final class UpdateServerOptionsTests: XCTestCase {
    let key = KeyPair.generate().publicKey.hex

    func testClosedByDefaultAndParsedOnce() throws {
        let plain = try UpdateServerOptions.parse(["--dir", "/srv/bundles"])
        XCTAssertEqual(plain.whitelist, .nobody)
        XCTAssertEqual(plain.directory, "/srv/bundles")
        XCTAssertEqual(plain.maxTransfers, UpdateServerOptions.defaultMaxTransfers)
        XCTAssertEqual(try UpdateServerOptions.parse(["--dir=/d", "--whitelist", "any"]).whitelist, .anyone)
        let listed = try UpdateServerOptions.parse(["--dir", "/d", "-w", key, "--max-transfers", "8", "--max-per-key", "1", "--idle-timeout", "5"])
        XCTAssertTrue(listed.whitelist.admits(try PublicKey(hex: key)))
        XCTAssertEqual([listed.maxTransfers, listed.maxPerKey, listed.idleTimeoutSeconds], [8, 1, 5])
        XCTAssertEqual(try AppOptions(app: "update-server", arguments: ["--dir", "/d"]).whitelist, .nobody)
        XCTAssertEqual(AppName.updateServer.defaultPort, 24)
    }

    func testRefusals() {
        for bad in [[], ["--whitelist", "any"], ["--dir", "relative"], ["--dir"], ["--dir", "/d", "--whitelist", "nope"],
                    ["--dir", "/d", "--whitelist", "any,\(key)"], ["--dir", "/d", "--max-transfers", "0"],
                    ["--dir", "/d", "--idle-timeout", "99999"], ["--dir", "/d", "--frobnicate", "1"]] {
            XCTAssertThrowsError(try UpdateServerOptions.parse(bad), "\(bad)") { XCTAssertEqual(($0 as? AppError)?.code, .invalidArguments) }
        }
    }
}
