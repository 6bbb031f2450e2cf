import SkywireConfig
import SkywireDiscovery
import XCTest
@testable import SkywireVisor

/// The `stats` a visor puts in its service entries (docs/discovery.md): vpn-server its connected
/// clients, skysocks its open sessions, taken from the apps' status rows.
final class DiscoveryRegistrarStatsTests: XCTestCase {
    func testBindIntervalKeepsTheBindingAliveForShortTTLs() {
        XCTAssertEqual(DiscoveryRegistrar.bindInterval(ttl: 60), 15)
        XCTAssertEqual(DiscoveryRegistrar.bindInterval(ttl: 86400), 15)
        XCTAssertEqual(DiscoveryRegistrar.bindInterval(ttl: 30), 10)
        XCTAssertEqual(DiscoveryRegistrar.bindInterval(ttl: 4), 1)
        XCTAssertEqual(DiscoveryRegistrar.bindInterval(ttl: 3), 1)
    }

    func testOnlyRunningAppsThatAdmitSomeKeyAreAdvertised() {
        func row(_ status: String, _ access: String?) -> ControlValue {
            var o: [String: ControlValue] = ["name": .string("vpn-server"), "status": .string(status)]
            if let access { o["access"] = .string(access) }
            return .object(o)
        }
        XCTAssertTrue(DiscoveryRegistrar.advertised(row: row("running", "listed")))
        XCTAssertTrue(DiscoveryRegistrar.advertised(row: row("running", "open")))
        XCTAssertTrue(DiscoveryRegistrar.advertised(row: row("running", nil)))
        XCTAssertFalse(DiscoveryRegistrar.advertised(row: row("running", "closed")))
        XCTAssertFalse(DiscoveryRegistrar.advertised(row: row("stopped", "listed")))
        XCTAssertFalse(DiscoveryRegistrar.advertised(row: row("failed", "open")))
    }

    func testStatsComeFromTheAppsStatus() throws {
        let client: ControlValue = .object(["pk": .string("ab"), "tunnel_ip": .string("10.77.0.2/30")])
        let vpn: ControlValue = .object(["name": .string("vpn-server"), "status": .string("running"),
                                         "info": .object(["clients": .array([client, client]), "total_sessions": .int(5)])])
        XCTAssertEqual(DiscoveryRegistrar.stats(app: .vpnServer, row: vpn), ["connected": 2])
        let idle: ControlValue = .object(["name": .string("vpn-server"), "info": .object(["clients": .array([])])])
        XCTAssertEqual(DiscoveryRegistrar.stats(app: .vpnServer, row: idle), ["connected": 0])
        let socks: ControlValue = .object(["name": .string("skysocks"), "status": .string("running"),
                                           "info": .object(["active_sessions": .int(3), "total_sessions": .int(9)])])
        XCTAssertEqual(DiscoveryRegistrar.stats(app: .skysocks, row: socks), ["connected": 3])
        // No status info (yet): no stats member at all.
        XCTAssertNil(DiscoveryRegistrar.stats(app: .skysocks, row: .object(["name": .string("skysocks")])))
        XCTAssertNil(DiscoveryRegistrar.stats(app: .vpnServer, row: .object([:])))
        XCTAssertNil(DiscoveryRegistrar.stats(app: .echo, row: socks))
        // What the registration then carries passes the service's own validation.
        let body = Array(ServiceRegistration(version: "0.1.0", country: "JP", stats: ["connected": 2]).json().compact().utf8)
        XCTAssertEqual(try ServiceRegistration.decode(body).stats, ["connected": 2])
    }
}
