import Foundation
@testable import SkywireDiscoveryServer
import XCTest

/// The conformance checks against an embedded SQLite file (a fresh file per test).
final class SQLiteDiscoveryTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "skywire-disc-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func suite() throws -> DiscoveryConformance {
        DiscoveryConformance(store: try DiscoveryStoreURL.open("sqlite:\(dir)/db.sqlite"))
    }

    func testInfo() throws { try suite().info() }
    func testTransportRoundTrip() throws { try suite().transportRoundTrip() }
    func testReplayRefused() throws { try suite().replayRefused() }
    func testBadSignatureRefused() throws { try suite().badSignatureRefused() }
    func testClockSkewRefused() throws { try suite().clockSkewRefused() }
    func testWrongKeyForbidden() throws { try suite().wrongKeyForbidden() }
    func testBadInputRefused() throws { try suite().badInputRefused() }
    func testTTLExpiry() throws { try suite().ttlExpiry() }
    func testServiceFilters() throws { try suite().serviceFilters() }
    func testDmsgRelays() throws { try suite().dmsgRelays() }
    func testTransportRelayList() throws { try suite().transportRelayList() }
    func testBindAndPunch() throws { try suite().bindAndPunch() }
    func testNonceStore() throws { try suite().nonceStore() }
    func testServicePaging() throws { try suite().servicePaging() }
    func testUnpagedListIsBounded() throws { try suite().unpagedListIsBounded() }
    func testPrivateAddressesRefused() throws { try suite().privateAddressesRefused() }
    func testRateLimits() throws { try suite().rateLimits() }
    func testReadLimits() throws { try suite().readLimits() }
    func testPutRacingDelete() throws { try suite().putRacingDelete() }

    func testEntriesSurviveReopen() throws {
        let s = try suite()
        XCTAssertEqual(s.putService(s.a).status, 200)
        let reopened = try DiscoveryStoreURL.open("sqlite:\(dir)/db.sqlite")
        XCTAssertEqual(try reopened.services(type: .vpn, country: "DE", version: nil, after: nil, limit: 10, nowMs: s.now).map(\.pk), [s.a.publicKey.hex])
    }

    func testBadURLs() {
        XCTAssertThrowsError(try DiscoveryStoreURL.open("mysql://x")) { XCTAssertTrue("\($0)".contains("expected sqlite:PATH")) }
        XCTAssertThrowsError(try DiscoveryStoreURL.open("sqlite:")) { XCTAssertTrue("\($0)".contains("needs a file path")) }
        XCTAssertThrowsError(try DiscoveryStoreURL.open("sqlite:/nonexistent-dir/x/db")) { XCTAssertTrue("\($0)".contains("cannot open")) }
    }
}

/// The same checks against a real PostgreSQL server started for this test case.
final class PostgresDiscoveryTests: XCTestCase {
    nonisolated(unsafe) static var fixture: PostgresFixture?
    nonisolated(unsafe) static var setupError: Error?

    override class func setUp() {
        do { fixture = try PostgresFixture() } catch { setupError = error }
    }

    override class func tearDown() {
        fixture?.stop()
        fixture = nil
    }

    func suite() throws -> DiscoveryConformance {
        if let e = Self.setupError { throw e }
        let url = Self.fixture!.url
        let store = try DiscoveryStoreURL.open(url)
        // Every check starts from empty tables.
        try PostgresConnection(url: url).runScript("DELETE FROM transports; DELETE FROM transport_relays; DELETE FROM sudph_bindings; DELETE FROM services; DELETE FROM nonces;")
        return DiscoveryConformance(store: store)
    }

    func testInfo() throws { try suite().info() }
    func testTransportRoundTrip() throws { try suite().transportRoundTrip() }
    func testReplayRefused() throws { try suite().replayRefused() }
    func testBadSignatureRefused() throws { try suite().badSignatureRefused() }
    func testClockSkewRefused() throws { try suite().clockSkewRefused() }
    func testWrongKeyForbidden() throws { try suite().wrongKeyForbidden() }
    func testBadInputRefused() throws { try suite().badInputRefused() }
    func testTTLExpiry() throws { try suite().ttlExpiry() }
    func testServiceFilters() throws { try suite().serviceFilters() }
    func testDmsgRelays() throws { try suite().dmsgRelays() }
    func testTransportRelayList() throws { try suite().transportRelayList() }
    func testBindAndPunch() throws { try suite().bindAndPunch() }
    func testNonceStore() throws { try suite().nonceStore() }
    func testServicePaging() throws { try suite().servicePaging() }
    func testUnpagedListIsBounded() throws { try suite().unpagedListIsBounded() }
    func testPrivateAddressesRefused() throws { try suite().privateAddressesRefused() }
    func testRateLimits() throws { try suite().rateLimits() }
    func testReadLimits() throws { try suite().readLimits() }
    func testPutRacingDelete() throws { try suite().putRacingDelete() }

    func testBadConnection() {
        XCTAssertThrowsError(try DiscoveryStoreURL.open("postgresql://nobody@/nodb?host=/nonexistent&port=1")) {
            XCTAssertTrue("\($0)".contains("cannot connect"), "\($0)")
        }
    }
}
