import Glibc
import SkywireConfig
import SkywireSystem
import XCTest
@testable import SkywireVPN

/// IPv6 through the tunnel (docs/vpn.md §2.1, §8): IPV6_LEASE bytes, the handshake with and
/// without it, the exit's ULA network, the IPv6 rules of both rulesets, IPv6 header fields.
final class VPNIPv6Tests: XCTestCase {
    let net = VPNIPv6Network(prefix: IPPrefix("fd12:3456:7890::/64")!, routed: false)!
    func hex(_ s: String) -> [UInt8] {
        stride(from: 0, to: s.count, by: 2).map { i in
            UInt8(s[s.index(s.startIndex, offsetBy: i)..<s.index(s.startIndex, offsetBy: i + 2)], radix: 16)!
        }
    }

    func testLeaseBytesRoundTrip() throws {
        let lease = VPNIPv6Lease(clientAddress: net.clientAddress(v4: 0x0A4D_0002), serverAddress: net.serverAddress,
                                 dns: [IPAddress("2001:db8::35")!])
        XCTAssertEqual(lease.clientAddress, IPPrefix("fd12:3456:7890::a4d:2/64"))
        XCTAssertEqual(lease.serverAddress, IPAddress("fd12:3456:7890::1"))
        let bytes = VPNMessage.ipv6Lease(.leased(lease)).encoded()
        // type 05, length 0x34, version 1, status 0 (leased), client (16), /64, server (16),
        // 1 DNS server (16).
        XCTAssertEqual(bytes, hex("0500340100" + "fd12345678900000000000000a4d0002" + "40"
            + "fd123456789000000000000000000001" + "01" + "20010db8000000000000000000000035"))
        var d = VPNMessageDecoder()
        d.append(bytes)
        XCTAssertEqual(try d.next(), .ipv6Lease(.leased(lease)))

        let none = VPNMessage.ipv6Lease(.unavailable("no")).encoded()
        XCTAssertEqual(none, [0x05, 0x00, 0x04, 0x01, 0x01, 0x6e, 0x6f])
        d.append(none)
        XCTAssertEqual(try d.next(), .ipv6Lease(.unavailable("no")))
    }

    /// A hostile exit's IPV6_LEASE: each malformed body is refused with its reason.
    func testMalformedLeases() {
        let server = "fd123456789000000000000000000001"
        func body(client: String, length: String = "40", server s: String? = nil, dns: String = "00") -> [UInt8] {
            hex("0100" + client + length + (s ?? server) + dns)
        }
        let cases: [(String, [UInt8])] = [
            ("link-local", body(client: "fe800000000000000000000000000002")),
            ("multicast", body(client: "ff020000000000000000000000000001")),
            ("loopback", body(client: "00000000000000000000000000000001")),
            ("IPv4-mapped private", body(client: "00000000000000000000ffff0a000001", length: "60",
                                         server: "00000000000000000000ffff0a000002")),
            ("/128", body(client: "fd12345678900000000000000a4d0002", length: "80")),
            ("/0", body(client: "fd12345678900000000000000a4d0002", length: "00")),
            ("server outside", body(client: "fd12345678900000000000000a4d0002", server: "fd990000000000000000000000000001")),
            ("server = client", body(client: server)),
            ("5 DNS", body(client: "fd12345678900000000000000a4d0002", dns: "05") + [UInt8](repeating: 0x20, count: 80)),
            ("short DNS list", body(client: "fd12345678900000000000000a4d0002", dns: "01")),
            ("truncated", Array(body(client: "fd12345678900000000000000a4d0002").dropLast())),
            ("bad status", [0x01, 0x02]),
            ("bad version", [0x02, 0x01]),
            ("empty", []),
            ("reason not UTF-8", [0x01, 0x01, 0xff]),
            ("reason too long", [0x01, 0x01] + [UInt8](repeating: 0x61, count: 201)),
        ]
        for (name, b) in cases {
            XCTAssertThrowsError(try VPNMessage.decode(type: 0x05, body: b[...]), name)
        }
        XCTAssertNoThrow(try VPNMessage.decode(type: 0x05, body: body(client: "20010db8000000000000000000000002",
                                                                    server: "20010db8000000000000000000000001")[...]))
    }

    func testHandshakeWithLease() throws {
        let ok = VPNServerOK(clientAddress: IPPrefix("10.77.0.2/30")!, serverAddress: IPAddress("10.77.0.1")!, mtu: 1400, dns: [])
        let lease = VPNIPv6Lease(clientAddress: net.clientAddress(v4: 0x0A4D_0002), serverAddress: net.serverAddress, dns: [])
        let bytes = VPNMessage.serverOK(ok).encoded() + VPNMessage.ipv6Lease(.leased(lease)).encoded()
        // Byte by byte: decided only with the last byte of IPV6_LEASE.
        var hs = VPNClientHandshake(localNetworks: [IPPrefix("10.79.0.1/24")!, IPPrefix("fe80::1/64")!])
        for b in bytes.dropLast() { XCTAssertNil(try hs.receive([b])) }
        var want = ok
        want.ipv6 = .leased(lease)
        XCTAssertEqual(try hs.receive([bytes.last!]), .accepted(want))
        XCTAssertNil(hs.finishWithoutIPv6(), "decided once")

        // An exit without IPv6 uplink says why; the session goes on without IPv6.
        var none = VPNClientHandshake(localNetworks: [])
        let why = VPNServer.noIPv6Uplink
        guard case .accepted(let got) = try none.receive(VPNMessage.serverOK(ok).encoded() + VPNMessage.ipv6Lease(.unavailable(why)).encoded())
        else { return XCTFail("not accepted") }
        XCTAssertEqual(got.ipv6, .unavailable(why))

        // A lease inside the client's own IPv6 network: IPv6 refused, IPv4 accepted.
        var clash = VPNClientHandshake(localNetworks: [IPPrefix("fd12:3456:7890::99/48")!])
        guard case .accepted(let c) = try clash.receive(bytes) else { return XCTFail("IPv4 refused") }
        guard case .unavailable(let reason) = c.ipv6 else { return XCTFail("clashing IPv6 lease taken") }
        XCTAssertTrue(reason.contains("fd12:3456:7890::/48"), reason)

        // Out of order: IPV6_LEASE first is a protocol error; a second SERVER_OK too.
        var early = VPNClientHandshake(localNetworks: [])
        XCTAssertThrowsError(try early.receive(VPNMessage.ipv6Lease(.leased(lease)).encoded()))
        var twice = VPNClientHandshake(localNetworks: [])
        XCTAssertThrowsError(try twice.receive(VPNMessage.serverOK(ok).encoded() + VPNMessage.serverOK(ok).encoded()))
        // The server takes no IPV6_LEASE from a client.
        var server = VPNServerHandshake()
        XCTAssertThrowsError(try server.receive(VPNMessage.clientHello(VPNClientHello(networks: [])).encoded()
            + VPNMessage.ipv6Lease(.unavailable("x")).encoded()))
    }

    /// A v1 client (which knows no type 0x05) sees IPV6_LEASE after its answer as an unknown
    /// type and ignores it: decoded as `.unknown` by a decoder that does not know the kind.
    func testOldClientIgnoresLease() throws {
        // What a v1 decoder returns for type 0x05 is `.unknown`; the v1 handshake ignores
        // unknown types once decided (the same code path as type 0x70 here).
        var hs = VPNClientHandshake(localNetworks: [])
        let ok = VPNServerOK(clientAddress: IPPrefix("10.77.0.2/30")!, serverAddress: IPAddress("10.77.0.1")!, mtu: 1400, dns: [])
        XCTAssertNotNil(try hs.receive(VPNMessage.serverOK(ok).encoded() + VPNMessage.ipv6Lease(.unavailable("x")).encoded()))
        XCTAssertNil(try hs.receive(VPNMessage.unknown(type: 0x70, body: [1]).encoded()))
    }

    /// The IPv6 networks a lease is checked against: not loopback, the TUN or link-local.
    func testClientLocalNetworks6() {
        func a(_ dev: String, _ p: String) -> InterfaceAddress { InterfaceAddress(interfaceIndex: 2, interfaceName: dev, prefix: IPPrefix(p)!) }
        let got = VPNClient.localNetworks6(addresses: [a("lo", "::1/128"), a("eth0", "fe80::1/64"), a("eth0", "2001:db8:c::1/64"),
                                                       a("eth0", "192.168.1.10/24"), a(VPNClient.tunName, "fd12:3456:7890::a4d:2/64"),
                                                       a("wlan0", "fd00:77::5/64")])
        XCTAssertEqual(got, [IPPrefix("2001:db8:c::1/64")!, IPPrefix("fd00:77::5/64")!])
    }

    func testULA() throws {
        let p = VPNIPv6Network.ula(globalID: [0x12, 0x34, 0x56, 0x78, 0x90])
        XCTAssertEqual(p, IPPrefix("fd12:3456:7890::/64"))
        XCTAssertNil(VPNIPv6Network.ula(globalID: [1, 2, 3]))
        var template = Array("/tmp/skw-ula-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        let dir = String(cString: try XCTUnwrap(made))
        defer { _ = try? Subprocess.run("/bin/rm", ["-rf", dir]) }
        let first = try VPNIPv6Network.storedULA(directory: dir)
        XCTAssertEqual(first.address.bytes[0], 0xFD)
        XCTAssertEqual(first.length, 64)
        XCTAssertEqual(try VPNIPv6Network.storedULA(directory: dir), first, "stable across restarts")
        try AtomicFile.write(Array("2001:db8::/64\n".utf8), to: dir + "/vpn-server.ula", replace: true)
        XCTAssertThrowsError(try VPNIPv6Network.storedULA(directory: dir), "a global prefix in the ULA file")
    }

    func testSessionKeys() {
        XCTAssertEqual(net.key((0xFD12_3456_7890_0000, 0x0A4D_0002)), 0x0A4D_0002)
        XCTAssertNil(net.key((0xFD12_3456_7890_0001, 0x0A4D_0002)), "another /64")
        XCTAssertNil(net.key((0xFD12_3456_7890_0000, 0x1_0A4D_0002)), "not a client address")
    }

    func testIPv6PacketFields() {
        var p = [UInt8](repeating: 0, count: 48)
        p[0] = 0x60
        p[5] = 8
        p[6] = 6
        p.replaceSubrange(8..<24, with: IPAddress("2001:db8::1")!.bytes)
        p.replaceSubrange(24..<40, with: IPAddress("fd12:3456:7890::a4d:2")!.bytes)
        p.withUnsafeBytes { b in
            XCTAssertTrue(IPv6Packet.isValid(b))
            XCTAssertEqual(IPv6Packet.payloadLength(b), 8)
            XCTAssertTrue(IPv6Packet.source(b) == (0x2001_0DB8_0000_0000, 1))
            XCTAssertTrue(IPv6Packet.destination(b) == (0xFD12_3456_7890_0000, 0x0A4D_0002))
            XCTAssertFalse(IPv4Packet.isValid(b))
            XCTAssertFalse(IPv6Packet.isValid(UnsafeRawBufferPointer(rebasing: b[0..<47])), "payload beyond the buffer")
        }
        p[0] = 0x45
        p.withUnsafeBytes { XCTAssertFalse(IPv6Packet.isValid($0)) }
    }

    func testServerRuleset6() {
        let r = VPNFirewall.serverRuleset(tun: "t", exit: "e", secure: true, pools: [IPPrefix("10.77.0.0/16")!],
                                          ipv6: net, lan6: [IPPrefix("2001:db8:77::/64")!], dns6: [IPAddress("fd12:3456:7890::1")!])
        XCTAssertTrue(r.contains("iifname \"t\" meta nfproto ipv6 ip6 saddr != fd12:3456:7890::/64 drop"))
        XCTAssertTrue(r.contains("iifname \"t\" ip6 daddr { fc00::/7, fe80::/10, ::1/128, ff00::/8, ::/128, 2001:db8:77::/64 } drop"))
        XCTAssertTrue(r.contains("oifname \"e\" ip6 saddr fd12:3456:7890::/64 masquerade"))
        XCTAssertTrue(r.contains("icmpv6 type echo-request accept"))
        XCTAssertTrue(r.contains("ip6 daddr { fd12:3456:7890::1 } meta l4proto { tcp, udp } th dport 53 accept"))
        XCTAssertFalse(r.contains("iifname \"t\" meta nfproto ipv6 drop"))
        let routed = VPNFirewall.serverRuleset(tun: "t", exit: "e", secure: false, pools: [IPPrefix("10.77.0.0/16")!],
                                               ipv6: VPNIPv6Network(prefix: IPPrefix("2001:db8:5::/64")!, routed: true))
        XCTAssertFalse(routed.contains("ip6 saddr 2001:db8:5::/64 masquerade"), "a routed prefix is not NATed")
        XCTAssertFalse(routed.contains("ip6 daddr"))
        let none = VPNFirewall.serverRuleset(tun: "t", exit: "e", secure: true, pools: [IPPrefix("10.77.0.0/16")!])
        XCTAssertEqual(none.components(separatedBy: "iifname \"t\" meta nfproto ipv6 drop").count, 3, "forward and input drop IPv6")
    }

    func testClientRuleset6() {
        let blocked = VPNFirewall.clientRuleset(tun: "t", killSwitch: false, transportAddresses: [])
        XCTAssertTrue(blocked.contains("meta nfproto ipv6 drop"))
        let carried = VPNFirewall.clientRuleset(tun: "t", killSwitch: false, transportAddresses: [], ipv6: true)
        guard let out = carried.firstRange(of: "chain output"), let fwd = carried.firstRange(of: "chain forward") else {
            return XCTFail("chains")
        }
        XCTAssertFalse(carried[out.upperBound..<fwd.lowerBound].contains("nfproto ipv6 drop"))
        // The kill switch covers IPv6: TUN, transport addresses (v6 too), neighbour discovery, then drop.
        let ks = VPNFirewall.clientRuleset(tun: "t", killSwitch: true, transportAddresses: [IPAddress("2001:db8:1::2")!], ipv6: true)
        for rule in ["ip6 daddr { 2001:db8:1::2 } meta l4proto { tcp, udp } accept", VPNFirewall.neighbourDiscovery,
                     "oifname \"t\" accept", "    drop\n"] {
            XCTAssertTrue(ks.contains(rule), rule)
        }
    }

    func testServerArguments6() throws {
        let a = try VPNServerArguments(parsing: ["--dns6", "2001:db8::35", "--ipv6-prefix", "2001:db8:5::/64"])
        XCTAssertEqual(a.dns6, [IPAddress("2001:db8::35")!])
        XCTAssertEqual(a.ipv6Prefix, IPPrefix("2001:db8:5::/64"))
        XCTAssertEqual(try VPNServerArguments(parsing: a.arguments), a)
        for bad in [["--dns6", "192.0.2.1"], ["--ipv6-prefix", "2001:db8:5::/48"], ["--ipv6-prefix", "2001:db8:5::1/64"],
                    ["--ipv6-prefix", "fe80::/64"], ["--ipv6-prefix", "10.0.0.0/8"], ["--dns", "2001:db8::35"]] {
            XCTAssertThrowsError(try VPNServerArguments(parsing: bad), "\(bad)")
        }
    }
}
