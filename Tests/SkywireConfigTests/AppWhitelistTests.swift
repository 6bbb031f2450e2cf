import SkywireCrypto
import XCTest
@testable import SkywireConfig

/// `--whitelist` is closed by default: missing, empty and blank lists admit nobody; every key needs
/// `any` alone; a malformed key is an error (never dropped, never "everyone").
final class AppWhitelistTests: XCTestCase {
    private let a = KeyPair.generate().publicKey
    private let b = KeyPair.generate().publicKey
    private let stranger = KeyPair.generate().publicKey
    /// 64 hex characters that are not a visor key: the Ed25519 identity point (small order).
    private let notAKey = "01" + String(repeating: "00", count: 31)

    private func parse(_ values: String...) throws -> AppWhitelist { try AppWhitelist(parsing: values) }

    func testMissingWhitelistAdmitsNobody() throws {
        let w = try AppWhitelist(parsing: [])
        XCTAssertEqual(w, .nobody)
        XCTAssertTrue(w.admitsNobody)
        XCTAssertFalse(w.admits(stranger))
        XCTAssertFalse(w.hexIndex.admits(stranger.hex))
    }

    func testEmptyAndBlankValuesAdmitNobody() throws {
        for value in ["", ",", " , ,", "\t"] {
            let w = try parse(value)
            XCTAssertEqual(w, .nobody, "value \"\(value)\"")
            XCTAssertFalse(w.admits(stranger))
        }
        XCTAssertEqual(try parse("", ""), .nobody)
    }

    func testMalformedKeysAreErrorsNotDropped() {
        for value in ["xyz", "zz,yy", notAKey, String(repeating: "a", count: 63), "\(a.hex),xyz", "\(a.hex)0"] {
            XCTAssertThrowsError(try parse(value), "value \"\(value)\"") { error in
                let message = (error as? AppWhitelistError)?.message ?? ""
                XCTAssertTrue(message.hasPrefix("--whitelist: \""), message)
                XCTAssertTrue(message.contains("is not a visor public key"), message)
            }
        }
        // A bad key in a later repetition fails the whole list too.
        XCTAssertThrowsError(try parse(a.hex, "nope"))
        XCTAssertThrowsError(try AppWhitelist(parsing: ["nope"], option: "-w")) { error in
            XCTAssertTrue("\(error)".hasPrefix("-w: \"nope\""), "\(error)")
        }
    }

    func testAnyAdmitsEveryKey() throws {
        for values in [["any"], [" any "], ["any,"], ["any", "any"], ["", "any"]] {
            let w = try AppWhitelist(parsing: values)
            XCTAssertEqual(w, .anyone, "\(values)")
            XCTAssertTrue(w.admits(stranger))
            XCTAssertTrue(w.hexIndex.admits(stranger.hex))
            XCTAssertFalse(w.admitsNobody)
        }
        // Only the lower-case word: anything else is a (malformed) key.
        XCTAssertThrowsError(try parse("ANY"))
        XCTAssertThrowsError(try parse("*"))
    }

    func testAnyMixedWithKeysIsRefused() {
        for values in [["any,\(a.hex)"], ["\(a.hex),any"], ["any", a.hex], [a.hex, "any"]] {
            XCTAssertThrowsError(try AppWhitelist(parsing: values), "\(values)") { error in
                XCTAssertTrue("\(error)".contains("cannot be combined with keys"), "\(error)")
            }
        }
    }

    func testListedKeys() throws {
        let w = try parse("\(a.hex), \(b.hex.uppercased())", a.hex)
        XCTAssertEqual(w, .keys([a, b]))
        XCTAssertTrue(w.admits(a))
        XCTAssertTrue(w.admits(b))
        XCTAssertFalse(w.admits(stranger))
        XCTAssertTrue(w.hexIndex.admits(b.hex))
        XCTAssertFalse(w.hexIndex.admits(stranger.hex))
        XCTAssertEqual(w.sortedKeys, [a, b].sorted { $0.hex < $1.hex })
        XCTAssertFalse(w.admitsNobody)
    }

    func testOperatorTexts() throws {
        XCTAssertEqual(AppWhitelist.nobody.notice(app: "vpn-server"),
                       "vpn-server: whitelist empty: refuses every key; use --whitelist PK,... or --whitelist any")
        XCTAssertEqual(AppWhitelist.anyone.notice(app: "skysocks"), "skysocks: whitelist any: open to every visor key")
        XCTAssertNil(try parse(a.hex).notice(app: "skysocks"))
        XCTAssertEqual(AppWhitelist.nobody.summary, "refuses every key (whitelist empty)")
        XCTAssertEqual(AppWhitelist.anyone.summary, "open to every key (whitelist any)")
        XCTAssertEqual(try parse(a.hex).summary, "1 key whitelisted")
        XCTAssertEqual(try parse(a.hex, b.hex).summary, "2 keys whitelisted")
        XCTAssertEqual([AppWhitelist.nobody.access, AppWhitelist.anyone.access, try parse(a.hex).access],
                       ["closed", "open", "listed"])
    }
}
