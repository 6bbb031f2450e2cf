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
        state.remove()
        XCTAssertTrue(state.load().isEmpty)
        _ = rmdir(dir)
    }

    func testTransportHost() {
        XCTAssertEqual(VPNClient.host(of: "10.79.0.2:7777"), "10.79.0.2")
        XCTAssertEqual(VPNClient.host(of: "[fd00::2]:7778"), "fd00::2")
    }
}
