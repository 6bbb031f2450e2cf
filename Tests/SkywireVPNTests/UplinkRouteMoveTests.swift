import SkywireSystem
import XCTest
@testable import SkywireVPN

/// Where the VPN client's host route to the exit goes after an uplink change (pure).
final class UplinkRouteMoveTests: XCTestCase {
    private func route(_ dest: String, via gw: String?, dev: String, index: Int32, metric: UInt32 = 0) throws -> RouteEntry {
        RouteEntry(destination: try XCTUnwrap(IPPrefix(dest)), gateway: gw.flatMap(IPAddress.init), interfaceIndex: index,
                   interfaceName: dev, table: RouteSpec.mainTable, metric: metric, type: RouteNetlink.rtnUnicast)
    }

    func testHostRouteFollowsTheNewDefaultRoute() throws {
        let exit = try XCTUnwrap(IPAddress("203.0.113.5"))
        let old = RouteSpec(destination: try XCTUnwrap(IPPrefix("203.0.113.5/32")), interface: "upa",
                            gateway: IPAddress("192.0.2.1"), scope: RouteSpec.scopeUniverse)
        // Our own host route is still there (via A), A's default is gone, B's is new; the tunnel's halves too.
        let routes = [try route("203.0.113.5/32", via: "192.0.2.1", dev: "upa", index: 2),
                      try route("192.0.2.0/24", via: nil, dev: "upa", index: 2),
                      try route("0.0.0.0/0", via: "198.51.100.1", dev: "upb", index: 3),
                      try route("0.0.0.0/1", via: nil, dev: VPNClient.tunName, index: 9),
                      try route("128.0.0.0/1", via: nil, dev: VPNClient.tunName, index: 9)]
        let new = try XCTUnwrap(UplinkRouteMove.replacement(for: old, reaching: exit, in: routes, tunnel: VPNClient.tunName))
        XCTAssertEqual(new.interface, "upb")
        XCTAssertEqual(new.gateway, IPAddress("198.51.100.1"))
        XCTAssertEqual(new.destination, old.destination)
        XCTAssertEqual(new.scope, RouteSpec.scopeUniverse)
        XCTAssertFalse(UplinkRouteMove.sameWay(old, new))
    }

    func testNoWayOutKeepsTheRoute() throws {
        let exit = try XCTUnwrap(IPAddress("203.0.113.5"))
        let old = RouteSpec(destination: try XCTUnwrap(IPPrefix("203.0.113.5/32")), interface: "upa", gateway: IPAddress("192.0.2.1"))
        let routes = [try route("203.0.113.5/32", via: "192.0.2.1", dev: "upa", index: 2),
                      try route("0.0.0.0/1", via: nil, dev: VPNClient.tunName, index: 9)]
        XCTAssertNil(UplinkRouteMove.replacement(for: old, reaching: exit, in: routes, tunnel: VPNClient.tunName))
    }

    func testExitOnTheNewLinkIsReachedDirectly() throws {
        let exit = try XCTUnwrap(IPAddress("198.51.100.7"))
        let old = RouteSpec(destination: try XCTUnwrap(IPPrefix("198.51.100.7/32")), interface: "upa", gateway: IPAddress("192.0.2.1"))
        let routes = [try route("198.51.100.0/24", via: nil, dev: "upb", index: 3),
                      try route("0.0.0.0/0", via: "198.51.100.1", dev: "upb", index: 3, metric: 100)]
        let new = try XCTUnwrap(UplinkRouteMove.replacement(for: old, reaching: exit, in: routes, tunnel: VPNClient.tunName))
        XCTAssertEqual(new.interface, "upb")
        XCTAssertNil(new.gateway)
        XCTAssertEqual(new.scope, RouteSpec.scopeLink)
    }
}
