import SkywireSystem
import SkywireTestSupport
import XCTest
@testable import SkywireVPN

final class VPNSystemTests: XCTestCase {
    func testExitInterfaceDetection() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            XCTAssertThrowsError(try VPNServer.detectExitInterface(nl)) { e in
                XCTAssertTrue("\(e)".contains("no default route"), "\(e)")
            }
            let a = try TunDevice(name: "skwexa0"), b = try TunDevice(name: "skwexb0")
            for (t, net) in [(a, "10.91.0.1/24"), (b, "10.92.0.1/24")] {
                try nl.setLink(t.name, up: true)
                try nl.addAddress(IPPrefix(net)!, interface: t.name)
            }
            try nl.addRoute(RouteSpec(destination: IPPrefix("0.0.0.0/0")!, interface: a.name,
                                      gateway: IPAddress("10.91.0.254")!, metric: 100))
            XCTAssertEqual(try VPNServer.detectExitInterface(nl), "skwexa0")
            try nl.addRoute(RouteSpec(destination: IPPrefix("0.0.0.0/0")!, interface: b.name,
                                      gateway: IPAddress("10.92.0.254")!, metric: 200))
            XCTAssertThrowsError(try VPNServer.detectExitInterface(nl)) { e in
                XCTAssertTrue("\(e)".contains("skwexa0, skwexb0") && "\(e)".contains("--netifc"), "\(e)")
            }
        }
    }

    func testStateFileRoundTrip() throws {
        let dir = "/tmp/skwt-vpnstate-\(getpid())"
        let state = VPNStateFile(directory: dir, name: "x.state")
        let route = RouteSpec(destination: IPPrefix("10.79.0.2/32")!, interface: "eth0", gateway: IPAddress("10.79.0.254")!)
        try state.save([("nft_table", "skywire_vpn_client"), ("route", route.stateValue), ("route", "0.0.0.0/1 - tun 254")])
        let loaded = state.load()
        XCTAssertEqual(loaded.map(\.key), ["nft_table", "route", "route"])
        XCTAssertEqual(RouteSpec(stateValue: loaded[1].value), route)
        XCTAssertEqual(RouteSpec(stateValue: loaded[2].value), RouteSpec(destination: IPPrefix("0.0.0.0/1")!, interface: "tun"))
        XCTAssertNil(RouteSpec(stateValue: "garbage"))
        let link = RouteSpec(destination: IPPrefix("10.79.0.2/32")!, interface: "eth0", scope: RouteSpec.scopeLink)
        XCTAssertEqual(link.stateValue, "10.79.0.2/32 - eth0 254 253 -")
        XCTAssertEqual(RouteSpec(stateValue: link.stateValue), link)
        XCTAssertEqual(RouteSpec(stateValue: "10.79.0.2/32 10.79.0.254 eth0 254 0 100"),
                       RouteSpec(destination: IPPrefix("10.79.0.2/32")!, interface: "eth0", gateway: IPAddress("10.79.0.254")!,
                                 metric: 100, scope: RouteSpec.scopeUniverse))
        XCTAssertNil(RouteSpec(stateValue: "10.79.0.2/32 - eth0 254 link -"))
        state.remove()
        XCTAssertTrue(state.load().isEmpty)
        _ = rmdir(dir)
    }

    /// The host route to an exit on the client's own link (no gateway, scope link) and to one
    /// behind a gateway: added as `configure` adds it, removed from its state-file entry as
    /// `cleanLeftovers` removes it, the routing table is exactly as before; a route to the same
    /// destination that is not ours (another protocol) survives the removal.
    func testHostRouteRemovedExactly() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            let uplink = try TunDevice(name: "skwhra0")
            try nl.setLink(uplink.name, up: true)
            try nl.addAddress(IPPrefix("10.93.0.1/24")!, interface: uplink.name)
            try nl.addRoute(RouteSpec(destination: IPPrefix("0.0.0.0/0")!, interface: uplink.name,
                                      gateway: IPAddress("10.93.0.254")!, metric: 100))
            let before = Set(try nl.routes(family: .v4))
            for (exit, scope) in [("10.93.0.2", RouteSpec.scopeLink), ("198.51.100.9", RouteSpec.scopeUniverse)] {
                let ip = IPAddress(exit)!
                let path = try XCTUnwrap(RouteEntry.bestRoute(to: ip, in: try nl.routes(family: .v4)))
                let host = VPNClient.hostRoute(to: ip, via: path)
                XCTAssertEqual(host.scope, scope, exit)
                XCTAssertEqual(host.gateway, scope == RouteSpec.scopeLink ? nil : IPAddress("10.93.0.254")!)
                try nl.addRoute(host)
                XCTAssertNotEqual(Set(try nl.routes(family: .v4)), before)
                let recorded = try XCTUnwrap(RouteSpec(stateValue: host.stateValue))
                XCTAssertEqual(recorded, host)
                try nl.removeRoute(recorded)
                XCTAssertEqual(Set(try nl.routes(family: .v4)), before, "after removing the host route to \(exit)")
            }
            // Not ours: the same destination added by someone else with another scope (host)
            // is left alone by the removal of our entry.
            let foreign = RouteSpec(destination: IPPrefix("10.93.0.2/32")!, interface: uplink.name, metric: 7,
                                    scope: RouteSpec.scopeUniverse)
            try nl.addRoute(foreign)
            let withForeign = Set(try nl.routes(family: .v4))
            let ours = VPNClient.hostRoute(to: IPAddress("10.93.0.2")!, via: try XCTUnwrap(before.first { $0.destination.length == 24 }))
            XCTAssertThrowsError(try nl.removeRoute(ours)) { e in XCTAssertTrue((e as? NetlinkError)?.notFound == true, "\(e)") }
            XCTAssertEqual(Set(try nl.routes(family: .v4)), withForeign)
        }
    }

    func testTransportHost() {
        XCTAssertEqual(VPNClient.host(of: "10.79.0.2:7777"), "10.79.0.2")
        XCTAssertEqual(VPNClient.host(of: "[fd00::2]:7778"), "fd00::2")
    }
}
