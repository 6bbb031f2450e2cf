import SkywireSystem
import XCTest

/// The decision an uplink change leads to (UplinkChange.between): pure, state before → after.
final class UplinkChangeTests: XCTestCase {
    private let a = IPPrefix("192.0.2.10/24")!
    private let b = IPPrefix("198.51.100.10/24")!

    /// A state with one uplink: default route via `gateway` on `interface`, with `address`.
    private func uplink(_ routes: [(String, Int32)], addresses: [Int32: [IPPrefix]], carrier: Set<Int32>) -> UplinkState.Uplink {
        var u = UplinkState.Uplink()
        u.routes = routes.map { UplinkState.Route(gateway: IPAddress($0.0), interface: $0.1) }.sorted()
        for r in u.routes {
            u.carrier[r.interface] = carrier.contains(r.interface)
            u.addresses[r.interface] = addresses[r.interface, default: []]
        }
        return u
    }

    func testNoChangeIsNil() {
        let u = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        XCTAssertNil(UplinkChange.between(u, u))
    }

    func testMoveToAnotherInterfaceRedialsProbesRefreshesAndMovesRoutes() throws {
        let before = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        let after = uplink([("198.51.100.1", 3)], addresses: [3: [b]], carrier: [3])
        let c = try XCTUnwrap(UplinkChange.between(before, after))
        XCTAssertEqual(c.vanished, [a.address])
        XCTAssertEqual(c.appeared, [b.address])
        XCTAssertTrue(c.routesChanged)
        XCTAssertEqual(c.actions, [.redialVanished, .probeTransports, .refreshDiscovery, .moveRoutes])
        XCTAssertFalse(c.isOffline)
    }

    func testNewGatewaySameAddressMovesRoutesWithoutRedial() throws {
        let before = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        let after = uplink([("192.0.2.254", 2)], addresses: [2: [a]], carrier: [2])
        let c = try XCTUnwrap(UplinkChange.between(before, after))
        XCTAssertEqual(c.vanished, [])
        XCTAssertEqual(c.actions, [.probeTransports, .refreshDiscovery, .moveRoutes])
    }

    func testNewLeaseSameRouteRedialsBoundTransportsButMovesNoRoute() throws {
        let renumbered = IPPrefix("192.0.2.77/24")!
        let before = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        let after = uplink([("192.0.2.1", 2)], addresses: [2: [renumbered]], carrier: [2])
        let c = try XCTUnwrap(UplinkChange.between(before, after))
        XCTAssertEqual(c.vanished, [a.address])
        XCTAssertEqual(c.appeared, [renumbered.address])
        XCTAssertEqual(c.actions, [.redialVanished, .probeTransports, .refreshDiscovery])
    }

    func testCarrierLossLeavesNoUsableUplink() throws {
        let before = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        let after = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [])
        let c = try XCTUnwrap(UplinkChange.between(before, after))
        XCTAssertTrue(c.isOffline)
        XCTAssertEqual(c.vanished, [a.address], "an address without carrier is not usable")
        XCTAssertTrue(c.asks(.moveRoutes))
    }

    func testSecondUplinkAppearingProbesWithoutRedial() throws {
        let before = uplink([("192.0.2.1", 2)], addresses: [2: [a]], carrier: [2])
        let after = uplink([("192.0.2.1", 2), ("198.51.100.1", 3)], addresses: [2: [a], 3: [b]], carrier: [2, 3])
        let c = try XCTUnwrap(UplinkChange.between(before, after))
        XCTAssertEqual(c.vanished, [])
        XCTAssertFalse(c.asks(.redialVanished))
        XCTAssertTrue(c.asks(.moveRoutes))
    }

    /// Fed through UplinkState: the route to A removed and B's default route added is one change.
    func testStateEventsToChange() throws {
        var s = UplinkState()
        s.apply([.link(index: 2, name: "upa", up: true, running: true), .link(index: 3, name: "upb", up: true, running: true),
                 .address(added: true, index: 2, prefix: a), .address(added: true, index: 3, prefix: b),
                 .route(added: true, destination: IPPrefix("0.0.0.0/0")!, gateway: IPAddress("192.0.2.1"), interface: 2,
                        table: NetworkEvent.mainTable)])
        let before = s.uplink
        s.apply([.route(added: false, destination: IPPrefix("0.0.0.0/0")!, gateway: IPAddress("192.0.2.1"), interface: 2,
                        table: NetworkEvent.mainTable),
                 .route(added: true, destination: IPPrefix("0.0.0.0/0")!, gateway: IPAddress("198.51.100.1"), interface: 3,
                        table: NetworkEvent.mainTable)])
        let c = try XCTUnwrap(UplinkChange.between(before, s.uplink))
        XCTAssertEqual(c.vanished, [a.address], "A is still configured but no longer on the uplink")
        XCTAssertEqual(c.actions, [.redialVanished, .probeTransports, .refreshDiscovery, .moveRoutes])
    }
}

/// The baseline across an outage (UplinkTracker).
final class UplinkTrackerTests: XCTestCase {
    private let a = IPPrefix("192.0.2.10/24")!
    private let b = IPPrefix("198.51.100.10/24")!

    private func single(_ gw: String, _ index: Int32, _ p: IPPrefix, carrier: Bool = true) -> UplinkState.Uplink {
        var u = UplinkState.Uplink()
        u.routes = [UplinkState.Route(gateway: IPAddress(gw), interface: index)]
        u.carrier[index] = carrier
        u.addresses[index] = [p]
        return u
    }

    /// A down (offline), then B: the second change still names A's address as vanished.
    func testOutageThenNewUplinkRedialsTheOldAddress() throws {
        let onA = single("192.0.2.1", 2, a)
        var t = UplinkTracker(onA)
        let down = try XCTUnwrap(t.settle(UplinkState.Uplink()))
        XCTAssertTrue(down.isOffline)
        XCTAssertTrue(t.offline)
        let up = try XCTUnwrap(t.settle(single("198.51.100.1", 3, b)))
        XCTAssertFalse(up.isOffline)
        XCTAssertEqual(up.vanished, [a.address])
        XCTAssertTrue(up.asks(.redialVanished))
        XCTAssertTrue(up.asks(.moveRoutes))
        XCTAssertNil(t.settle(single("198.51.100.1", 3, b)), "settled: nothing more")
    }

    /// Back to the very same uplink after an outage: probe and refresh, nothing to move.
    func testOutageThenSameUplinkProbes() throws {
        let onA = single("192.0.2.1", 2, a)
        var t = UplinkTracker(onA)
        _ = try XCTUnwrap(t.settle(single("192.0.2.1", 2, a, carrier: false)))
        let back = try XCTUnwrap(t.settle(onA))
        XCTAssertEqual(back.actions, [.probeTransports, .refreshDiscovery])
        XCTAssertFalse(t.offline)
    }
}

/// Kernel behaviours the state must follow.
final class UplinkStateKernelTests: XCTestCase {
    /// `ip link set X down` flushes X's IPv4 routes without RTM_DELROUTE: the default route on
    /// it must go with the link's down event, or the next change still names it.
    func testLinkDownDropsItsDefaultRoutes() throws {
        var s = UplinkState()
        let zero = try XCTUnwrap(IPPrefix("0.0.0.0/0"))
        s.apply([.link(index: 2, name: "upa", up: true, running: true),
                 .route(added: true, destination: zero, gateway: IPAddress("192.0.2.1"), interface: 2, table: NetworkEvent.mainTable)])
        XCTAssertEqual(s.uplink.routes.count, 1)
        XCTAssertTrue(s.apply(.link(index: 2, name: "upa", up: false, running: false)))
        XCTAssertEqual(s.uplink.routes, [])
    }

    /// An IPv6 link-local address appearing (DAD done) is no change of the usable addresses.
    func testLinkLocalAddressesAreNotUsable() throws {
        var u = UplinkState.Uplink()
        u.routes = [UplinkState.Route(gateway: IPAddress("192.0.2.1"), interface: 2)]
        u.carrier[2] = true
        u.addresses[2] = [try XCTUnwrap(IPPrefix("192.0.2.10/24"))]
        var v = u
        v.addresses[2]?.append(try XCTUnwrap(IPPrefix("fe80::1/64")))
        XCTAssertEqual(UplinkChange.usableAddresses(v), [try XCTUnwrap(IPAddress("192.0.2.10"))])
        XCTAssertNil(UplinkChange.between(u, v), "nothing to do")
    }
}
