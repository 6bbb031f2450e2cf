import SkywireSystem
import XCTest
@testable import SkywireVisor
@testable import SkywireVPN

/// `info.lan` of `vpn status --json` (docs/gateway.md §6): the dnsmasq supervision fields.
final class GatewayStatusTests: XCTestCase {
    func status(running: Bool, restarting: Bool, restarts: Int, lastExit: String?) -> VPNGateway.Status {
        VPNGateway.Status(lan: "br0", lanAddress: IPPrefix("192.168.50.1/24")!, dhcpRunning: running, dhcpRestarting: restarting,
                          dhcpRestarts: restarts, dhcpLastExit: lastExit, clients: [], bypassMACs: [], bypassIPs: [],
                          bytesUp: 1, bytesDown: 2, bytesBypass: 3, droppedPackets: 4, dns: [IPAddress("203.0.113.53")!], fence: true)
    }

    func testDHCPFields() {
        let fresh = VPNClientVisorApp.lanFields(status(running: true, restarting: false, restarts: 0, lastExit: nil))
        XCTAssertEqual(fresh["dhcp"], .string("running"))
        XCTAssertEqual(fresh["dhcp_restarts"], .int(0))
        XCTAssertEqual(fresh["dhcp_last_exit"], .null)
        XCTAssertEqual(fresh["dns"], .array([.string("203.0.113.53")]))

        let down = VPNClientVisorApp.lanFields(status(running: false, restarting: true, restarts: 2, lastExit: "killed by signal 9"))
        XCTAssertEqual(down["dhcp"], .string("restarting"))
        XCTAssertEqual(down["dhcp_restarts"], .int(2))
        XCTAssertEqual(down["dhcp_last_exit"], .string("killed by signal 9"))

        let stopped = VPNClientVisorApp.lanFields(status(running: false, restarting: false, restarts: 2, lastExit: "exit 0"))
        XCTAssertEqual(stopped["dhcp"], .string("stopped"))
    }
}
