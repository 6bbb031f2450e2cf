import CSkywireShim
import SkywireSystem
import SkywireTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class IPAddressTests: XCTestCase {
    func testParseFormatAndPrefixes() {
        XCTAssertEqual(IPAddress("10.77.0.2")?.v4Value, 0x0A4D_0002)
        XCTAssertEqual(IPAddress("fd00::1")?.description, "fd00::1")
        XCTAssertNil(IPAddress("10.0.0.256"))
        XCTAssertNil(IPPrefix("10.0.0.0/33"))
        let p = IPPrefix("192.168.77.9/24")!
        XCTAssertEqual(p.network.description, "192.168.77.0/24")
        XCTAssertTrue(p.contains(IPAddress("192.168.77.200")!))
        XCTAssertFalse(p.contains(IPAddress("192.168.78.1")!))
        XCTAssertTrue(IPPrefix("10.0.0.0/8")!.overlaps(IPPrefix("10.77.0.0/30")!))
        XCTAssertFalse(IPPrefix("10.77.0.0/30")!.overlaps(IPPrefix("10.77.0.4/30")!))
        XCTAssertEqual(IPPrefix("fd00::1/64")!.network.description, "fd00::/64")
    }

    func testBestRoute() {
        func r(_ dst: String, _ dev: String, metric: UInt32 = 0, table: UInt32 = RouteSpec.mainTable) -> RouteEntry {
            RouteEntry(destination: IPPrefix(dst)!, gateway: nil, interfaceIndex: 1, interfaceName: dev,
                       table: table, metric: metric, type: 1)
        }
        let routes = [r("0.0.0.0/0", "eth0", metric: 100), r("0.0.0.0/0", "wlan0", metric: 50),
                      r("10.79.0.0/24", "eth1"), r("0.0.0.0/1", "tun0"), r("10.79.0.2/32", "eth9", table: 100)]
        XCTAssertEqual(RouteEntry.bestRoute(to: IPAddress("10.79.0.2")!, in: routes)?.interfaceName, "eth1")
        XCTAssertEqual(RouteEntry.bestRoute(to: IPAddress("8.8.8.8")!, in: routes)?.interfaceName, "tun0")
        XCTAssertEqual(RouteEntry.bestRoute(to: IPAddress("8.8.8.8")!, in: routes, excludingInterface: "tun0")?.interfaceName,
                       "wlan0", "lowest metric among equal prefixes")
    }
}

final class TunAndNetlinkTests: XCTestCase {
    /// An IPv4 UDP packet with a valid header checksum (UDP checksum 0: none, RFC 768).
    static func udpPacket(from src: IPAddress, to dst: IPAddress, srcPort: UInt16, dstPort: UInt16, payload: [UInt8]) -> [UInt8] {
        let total = 20 + 8 + payload.count
        var p: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0, 0, 64, 17, 0, 0]
        p += src.bytes + dst.bytes
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(p[i]) << 8 | UInt32(p[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let csum = ~UInt16(sum)
        p[10] = UInt8(csum >> 8); p[11] = UInt8(csum & 0xff)
        let udpLen = 8 + payload.count
        p += [UInt8(srcPort >> 8), UInt8(srcPort & 0xff), UInt8(dstPort >> 8), UInt8(dstPort & 0xff),
              UInt8(udpLen >> 8), UInt8(udpLen & 0xff), 0, 0]
        return p + payload
    }

    func testTunPacketsBothWays() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            try nl.setLink("lo", up: true)
            let tun = try TunDevice(name: "skwtst0", nonBlocking: true)
            XCTAssertEqual(tun.name, "skwtst0")
            try nl.setLink(tun.name, up: true, mtu: 1400)
            try nl.addAddress(IPPrefix("10.99.0.1/24")!, interface: tun.name)

            // Kernel → TUN: a UDP datagram to 10.99.0.2 comes out of the TUN as one IPv4 packet.
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            XCTAssertGreaterThanOrEqual(fd, 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(9999).bigEndian
            addr.sin_addr.s_addr = IPAddress("10.99.0.2")!.v4Value!.bigEndian
            let payload = Array("through the tun".utf8)
            let sent = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            XCTAssertEqual(sent, payload.count)
            var buffer = [UInt8](repeating: 0, count: TunDevice.maxPacketSize)
            var got: [UInt8] = []
            for _ in 0..<20 where got.isEmpty {
                let r = try buffer.withUnsafeMutableBytes { try tun.read(into: $0) }
                if case .processed(let n) = r {
                    // Skip anything else the kernel sends (none expected with IPv6 off, but be safe).
                    if buffer[0] >> 4 == 4 && buffer[9] == 17 { got = Array(buffer[0..<n]) }
                } else {
                    _ = try tun.waitReadable(waker: nil, timeoutMillis: 100)
                }
            }
            XCTAssertEqual(got.count, 20 + 8 + payload.count)
            XCTAssertEqual(Array(got[12..<16]), IPAddress("10.99.0.1")!.bytes)
            XCTAssertEqual(Array(got[16..<20]), IPAddress("10.99.0.2")!.bytes)
            XCTAssertEqual(Array(got[28...]), payload)

            // TUN → kernel: a packet written to the TUN reaches a socket bound to 10.99.0.1.
            let rx = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(rx) }
            var bindAddr = sockaddr_in()
            bindAddr.sin_family = sa_family_t(AF_INET)
            bindAddr.sin_port = UInt16(7000).bigEndian
            bindAddr.sin_addr.s_addr = IPAddress("10.99.0.1")!.v4Value!.bigEndian
            let rc = withUnsafePointer(to: &bindAddr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(rx, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(rc, 0)
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let inbound = Self.udpPacket(from: IPAddress("10.99.0.2")!, to: IPAddress("10.99.0.1")!,
                                         srcPort: 5555, dstPort: 7000, payload: Array("back in".utf8))
            let w = try inbound.withUnsafeBytes { try tun.write($0) }
            guard case .processed(let wn) = w else { return XCTFail("TUN write would block") }
            XCTAssertEqual(wn, inbound.count)
            var rbuf = [UInt8](repeating: 0, count: 64)
            let n = recv(rx, &rbuf, rbuf.count, 0)
            XCTAssertEqual(n, 7)
            XCTAssertEqual(Array(rbuf[0..<max(0, n)]), Array("back in".utf8))
            tun.close()
            XCTAssertFalse(nl.linkExists("skwtst0"), "closing the descriptor removes the interface")
        }
    }

    func testAddressesRoutesRulesAndErrors() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            let tun = try TunDevice(name: "skwtst1")
            try nl.setLink(tun.name, up: true, mtu: 1280)
            let v4 = IPPrefix("10.98.0.1/24")!, v6 = IPPrefix("fd00:98::1/64")!
            try nl.addAddress(v4, interface: tun.name)
            try nl.addAddress(v6, interface: tun.name)
            let addrs = try nl.addresses().filter { $0.interfaceName == tun.name }.map(\.prefix)
            XCTAssertTrue(addrs.contains(v4), "\(addrs)")
            XCTAssertTrue(addrs.contains(v6), "\(addrs)")
            XCTAssertThrowsError(try nl.addAddress(v4, interface: tun.name)) { e in
                let ne = e as? NetlinkError
                XCTAssertEqual(ne?.alreadyExists, true, "\(e)")
                XCTAssertFalse(ne?.message.isEmpty ?? true, "nl_geterror text")
            }
            try nl.removeAddress(v6, interface: tun.name)
            XCTAssertFalse(try nl.addresses().map(\.prefix).contains(v6))

            let route = RouteSpec(destination: IPPrefix("198.51.100.0/24")!, interface: tun.name)
            let viaGateway = RouteSpec(destination: IPPrefix("203.0.113.0/24")!, interface: tun.name,
                                       gateway: IPAddress("10.98.0.254")!)
            let inTable = RouteSpec(destination: IPPrefix("192.0.2.0/24")!, interface: tun.name, table: 100)
            for r in [route, viaGateway, inTable] { try nl.addRoute(r) }
            let routes = try nl.routes(family: .v4)
            XCTAssertTrue(routes.contains { $0.destination == IPPrefix("198.51.100.0/24")! && $0.interfaceName == tun.name })
            XCTAssertTrue(routes.contains { $0.destination == IPPrefix("203.0.113.0/24")! && $0.gateway == IPAddress("10.98.0.254")! })
            XCTAssertTrue(routes.contains { $0.destination == IPPrefix("192.0.2.0/24")! && $0.table == 100 })
            XCTAssertThrowsError(try nl.addRoute(route)) { XCTAssertEqual(($0 as? NetlinkError)?.alreadyExists, true) }
            XCTAssertTrue(try nl.defaultRoutes().isEmpty)
            try nl.addRoute(RouteSpec(destination: IPPrefix("0.0.0.0/0")!, interface: tun.name, gateway: IPAddress("10.98.0.254")!))
            XCTAssertEqual(try nl.defaultRoutes().map(\.interfaceName), [tun.name])
            for r in [route, viaGateway, inTable] { try nl.removeRoute(r) }
            XCTAssertFalse(try nl.routes(family: .v4).contains { $0.destination == IPPrefix("198.51.100.0/24")! })
            XCTAssertThrowsError(try nl.removeRoute(route))

            let rule = RuleSpec(family: .v4, priority: 1234, table: 100, fwmark: 0x5157)
            try nl.addRule(rule)
            try nl.removeRule(rule)
            XCTAssertThrowsError(try nl.removeRule(rule))
            XCTAssertThrowsError(try nl.setLink("skwnosuch0", up: true)) { e in
                XCTAssertTrue("\(e)".contains("skwnosuch0"), "\(e)")
            }
        }
    }

    func testNFTablesAtomicApplyAndDelete() throws {
        try XCTSkipUnless(FileIO.exists("/usr/sbin/nft") || FileIO.exists("/sbin/nft"), "nft not installed")
        try inPrivateNetworkNamespace {
            try NFTables.apply("table inet skwtest {\n  chain output {\n    type filter hook output priority 0; policy accept;\n    ip daddr 192.0.2.1 drop\n  }\n}\n")
            let listed = try NFTables.listTable(family: "inet", name: "skwtest")
            XCTAssertTrue(listed?.contains("ip daddr 192.0.2.1 drop") ?? false, listed ?? "nil")
            // A bad transaction changes nothing: the table keeps its rule.
            XCTAssertThrowsError(try NFTables.apply("delete table inet skwtest\ntable inet skwtest { chain c { bogus } }\n")) { e in
                XCTAssertTrue("\(e)".contains("nft -f - failed"), "\(e)")
            }
            XCTAssertNotNil(try NFTables.listTable(family: "inet", name: "skwtest"))
            try NFTables.deleteTable(family: "inet", name: "skwtest")
            XCTAssertNil(try NFTables.listTable(family: "inet", name: "skwtest"))
            try NFTables.deleteTable(family: "inet", name: "skwtest")  // absent: still fine
        }
    }

    func testSysctlAndFiles() throws {
        try inPrivateNetworkNamespace {
            // ip_forward is per namespace, so this never touches the host.
            let original = try Sysctl.read("net.ipv4.ip_forward")
            try Sysctl.write("net.ipv4.ip_forward", original == "1" ? "0" : "1")
            XCTAssertNotEqual(try Sysctl.read("net.ipv4.ip_forward"), original)
            try Sysctl.write("net.ipv4.ip_forward", original)
            XCTAssertEqual(try Sysctl.read("net.ipv4.ip_forward"), original)
        }
        let dir = "/tmp/skwt-files-\(getpid())/a/b"
        try FileIO.makeDirectories(dir)
        try FileIO.overwrite(dir + "/f", [1, 2, 3])
        XCTAssertEqual(try FileIO.read(dir + "/f"), [1, 2, 3])
        try FileIO.overwrite(dir + "/f", [9])
        XCTAssertEqual(try FileIO.read(dir + "/f"), [9])
        try FileIO.remove(dir + "/f")
        XCTAssertNil(try FileIO.read(dir + "/f"))
        _ = rmdir(dir); _ = rmdir("/tmp/skwt-files-\(getpid())/a"); _ = rmdir("/tmp/skwt-files-\(getpid())")
    }
}
