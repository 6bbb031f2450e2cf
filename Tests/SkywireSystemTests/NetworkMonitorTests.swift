import SkywireSystem
import SkywireTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The rtnetlink decoder byte by byte, the uplink state it feeds, and the monitor on a real
/// NETLINK_ROUTE socket in a private network namespace.
final class NetworkMonitorTests: XCTestCase {
    // MARK: Message builders (rtnetlink(7) layouts, little-endian hosts)

    private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
    private func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }
    private func pad(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }
    private func attr(_ type: Int, _ payload: [UInt8]) -> [UInt8] { pad(le16(4 + payload.count) + le16(type) + payload) }
    /// nlmsghdr: len, type, flags, seq, pid.
    private func message(_ type: Int, _ body: [UInt8]) -> [UInt8] {
        le32(UInt32(16 + body.count)) + le16(type) + le16(0) + le32(0) + le32(0) + body
    }
    // Constants from <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>.
    private let RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_NEWADDR = 20, RTM_DELADDR = 21, RTM_NEWROUTE = 24, RTM_DELROUTE = 25
    private let IFLA_IFNAME = 3, IFA_ADDRESS = 1, IFA_LOCAL = 2, RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_TABLE = 15

    /// ifinfomsg: family, pad, type(2), index(4), flags(4), change(4).
    private func link(_ type: Int, index: UInt32, flags: UInt32, name: String) -> [UInt8] {
        message(type, [0, 0] + le16(1) + le32(index) + le32(flags) + le32(0) + attr(IFLA_IFNAME, Array(name.utf8) + [0]))
    }
    /// ifaddrmsg: family, prefixlen, flags, scope, index(4).
    private func address(_ type: Int, index: UInt32, family: UInt8, prefixLength: UInt8, attrs: [UInt8]) -> [UInt8] {
        message(type, [family, prefixLength, 0, 0] + le32(index) + attrs)
    }
    /// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type.
    private func route(_ type: Int, family: UInt8 = 2, dstLength: UInt8, table: UInt8 = 254, rtnType: UInt8 = 1, attrs: [UInt8]) -> [UInt8] {
        message(type, [family, dstLength, 0, 0, table, 4, 0, rtnType] + le32(0) + attrs)
    }

    // MARK: Decoder

    func testLinkMessages() {
        let up = UInt32(IFF_UP) | UInt32(IFF_RUNNING)
        XCTAssertEqual(NetworkEvent.parse(link(RTM_NEWLINK, index: 3, flags: up, name: "wlan0")),
                       [.link(index: 3, name: "wlan0", up: true, running: true)])
        XCTAssertEqual(NetworkEvent.parse(link(RTM_NEWLINK, index: 3, flags: UInt32(IFF_UP), name: "wlan0")),
                       [.link(index: 3, name: "wlan0", up: true, running: false)])
        XCTAssertEqual(NetworkEvent.parse(link(RTM_DELLINK, index: 3, flags: 0, name: "wlan0")), [.linkRemoved(index: 3, name: "wlan0")])
    }

    func testAddressMessagesPreferTheLocalAddress() throws {
        let v4 = address(RTM_NEWADDR, index: 2, family: 2, prefixLength: 24, attrs: attr(IFA_ADDRESS, [192, 0, 2, 7]))
        XCTAssertEqual(NetworkEvent.parse(v4), [.address(added: true, index: 2, prefix: try XCTUnwrap(IPPrefix("192.0.2.7/24")))])
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        let ptp = address(RTM_DELADDR, index: 5, family: 2, prefixLength: 32,
                          attrs: attr(IFA_ADDRESS, [198, 51, 100, 1]) + attr(IFA_LOCAL, [198, 51, 100, 2]))
        XCTAssertEqual(NetworkEvent.parse(ptp), [.address(added: false, index: 5, prefix: try XCTUnwrap(IPPrefix("198.51.100.2/32")))])
        let v6 = address(RTM_NEWADDR, index: 2, family: 10, prefixLength: 64,
                         attrs: attr(IFA_ADDRESS, [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]))
        XCTAssertEqual(NetworkEvent.parse(v6), [.address(added: true, index: 2, prefix: try XCTUnwrap(IPPrefix("2001:db8::1/64")))])
        // A 5-byte address is not an address.
        XCTAssertEqual(NetworkEvent.parse(address(RTM_NEWADDR, index: 2, family: 2, prefixLength: 24, attrs: attr(IFA_ADDRESS, [1, 2, 3, 4, 5]))), [])
    }

    func testRouteMessages() throws {
        let dflt = route(RTM_NEWROUTE, dstLength: 0, attrs: attr(RTA_GATEWAY, [192, 0, 2, 1]) + attr(RTA_OIF, le32(2)) + attr(RTA_TABLE, le32(254)))
        XCTAssertEqual(NetworkEvent.parse(dflt),
                       [.route(added: true, destination: try XCTUnwrap(IPPrefix("0.0.0.0/0")), gateway: IPAddress("192.0.2.1"), interface: 2, table: 254)])
        let net = route(RTM_DELROUTE, dstLength: 24, table: 100, attrs: attr(RTA_DST, [203, 0, 113, 0]) + attr(RTA_OIF, le32(7)))
        XCTAssertEqual(NetworkEvent.parse(net),
                       [.route(added: false, destination: try XCTUnwrap(IPPrefix("203.0.113.0/24")), gateway: nil, interface: 7, table: 100)])
        // RTA_TABLE overrides rtm_table (tables above 255).
        let big = route(RTM_NEWROUTE, dstLength: 0, table: 252, attrs: attr(RTA_OIF, le32(2)) + attr(RTA_TABLE, le32(6777)))
        guard case .route(_, _, _, _, let table)? = NetworkEvent.parse(big).first else { return XCTFail("no route") }
        XCTAssertEqual(table, 6777)
        // Local/broadcast routes (rtm_type not RTN_UNICAST) are skipped.
        XCTAssertEqual(NetworkEvent.parse(route(RTM_NEWROUTE, dstLength: 32, table: 255, rtnType: 2, attrs: attr(RTA_DST, [127, 0, 0, 1]))), [])
    }

    func testSeveralMessagesInOneDatagramAndMalformedInput() {
        let a = link(RTM_NEWLINK, index: 1, flags: UInt32(IFF_UP), name: "lo")
        let b = link(RTM_NEWLINK, index: 2, flags: 0, name: "eth0")
        XCTAssertEqual(NetworkEvent.parse(a + b).count, 2)
        // A truncated second message ends the walk; the first is kept.
        XCTAssertEqual(NetworkEvent.parse(a + Array(b.prefix(b.count - 5))).count, 1)
        // A length field beyond the datagram, a length below the header, garbage, nothing.
        var long = a; long[0] = 0xff
        XCTAssertEqual(NetworkEvent.parse(long), [])
        var short = a; short[0] = 8
        XCTAssertEqual(NetworkEvent.parse(short), [])
        XCTAssertEqual(NetworkEvent.parse([UInt8](repeating: 0xa5, count: 64)), [])
        XCTAssertEqual(NetworkEvent.parse([UInt8]()), [])
        // A message too short for its fixed header.
        XCTAssertEqual(NetworkEvent.parse(message(RTM_NEWROUTE, [2, 0, 0])), [])
        // An attribute whose length runs past the message is not read.
        let bad = message(RTM_NEWLINK, [0, 0] + le16(1) + le32(4) + le32(0) + le32(0) + le16(200) + le16(IFLA_IFNAME) + Array("x".utf8) + [0, 0, 0])
        XCTAssertEqual(NetworkEvent.parse(bad), [.link(index: 4, name: "", up: false, running: false)])
    }

    // MARK: Uplink state

    func testUplinkChangesOnlyWithTheDefaultRouteItsLinkAndAddresses() throws {
        var s = UplinkState()
        let p = { (t: String) in IPPrefix(t)! }
        XCTAssertFalse(s.apply([.link(index: 2, name: "eth0", up: true, running: true), .link(index: 3, name: "wlan0", up: true, running: true)]))
        XCTAssertEqual(s.uplink.description, "no default route")
        XCTAssertTrue(s.apply(.route(added: true, destination: p("0.0.0.0/0"), gateway: IPAddress("192.0.2.1"), interface: 2, table: 254)))
        XCTAssertTrue(s.apply(.address(added: true, index: 2, prefix: p("192.0.2.10/24"))))
        // Elsewhere: another interface's address, a non-default route, another table.
        XCTAssertFalse(s.apply(.address(added: true, index: 3, prefix: p("198.51.100.5/24"))))
        XCTAssertFalse(s.apply(.route(added: true, destination: p("10.0.0.0/8"), gateway: nil, interface: 3, table: 254)))
        XCTAssertFalse(s.apply(.route(added: true, destination: p("0.0.0.0/0"), gateway: nil, interface: 9, table: 6777)))
        XCTAssertFalse(s.apply(.link(index: 9, name: "skywire0", up: true, running: true)))
        // The uplink loses carrier, then comes back; a new lease; the route moves to Wi-Fi.
        XCTAssertTrue(s.apply(.link(index: 2, name: "eth0", up: true, running: false)))
        XCTAssertTrue(s.uplink.description.contains("no carrier"), s.uplink.description)
        XCTAssertTrue(s.apply(.link(index: 2, name: "eth0", up: true, running: true)))
        XCTAssertFalse(s.apply(.link(index: 2, name: "eth0", up: true, running: true)))
        XCTAssertTrue(s.apply(.address(added: true, index: 2, prefix: p("192.0.2.11/24"))))
        XCTAssertTrue(s.apply(.route(added: true, destination: p("0.0.0.0/0"), gateway: IPAddress("198.51.100.1"), interface: 3, table: 254)))
        XCTAssertTrue(s.apply(.route(added: false, destination: p("0.0.0.0/0"), gateway: IPAddress("192.0.2.1"), interface: 2, table: 254)))
        XCTAssertEqual(s.uplink.routes, [UplinkState.Route(gateway: IPAddress("198.51.100.1"), interface: 3)])
        XCTAssertEqual(s.uplink.addresses[3], [p("198.51.100.5/24")])
        // The link goes away with its routes.
        XCTAssertTrue(s.apply(.linkRemoved(index: 3, name: "wlan0")))
        XCTAssertEqual(s.uplink.description, "no default route")
    }

    func testStateIsBoundedWhateverTheEvents() {
        var s = UplinkState()
        for i in 0..<(UplinkState.maxLinks + 100) { s.apply(.link(index: Int32(i), name: "l\(i)", up: true, running: true)) }
        XCTAssertEqual(s.links.count, UplinkState.maxLinks)
        for i in 0..<400 { s.apply(.address(added: true, index: 1, prefix: IPPrefix(IPAddress(v4: 0xC000_0200 + UInt32(i)), 32)!)) }
        XCTAssertEqual(s.addresses[1]?.count, UplinkState.maxAddressesPerLink)
        for i in 0..<100 {
            s.apply(.route(added: true, destination: IPPrefix("0.0.0.0/0")!, gateway: IPAddress(v4: 0xC633_6400 + UInt32(i)), interface: 1, table: 254))
        }
        XCTAssertEqual(s.defaultRoutes.count, UplinkState.maxDefaultRoutes)
    }

    // MARK: The real socket

    /// In a private namespace: the dump lists lo; bringing lo up, adding an address and a default
    /// route arrive as events, and the uplink state follows them.
    func testMonitorSeesRealChangesInAPrivateNamespace() throws {
        try inPrivateNetworkNamespace {
            let events = try NetworkMonitor(groups: 0).dump()
            XCTAssertTrue(events.contains { if case .link(1, "lo", _, _) = $0 { true } else { false } }, "\(events)")
            var state = UplinkState()
            state.apply(events)
            XCTAssertEqual(state.uplink.description, "no default route")

            let monitor = try NetworkMonitor()
            let nl = try RouteNetlink()
            try nl.setLink("lo", up: true)
            try nl.addAddress(IPPrefix("192.0.2.1/24")!, interface: "lo")
            try nl.addRoute(RouteSpec(destination: IPPrefix("0.0.0.0/0")!, interface: "lo", gateway: IPAddress("192.0.2.254")))
            var seen: [NetworkEvent] = []
            var changes = 0
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline, state.uplink.routes.isEmpty || state.uplink.addresses[1]?.isEmpty != false {
                guard try monitor.wait(timeoutMs: 500) else { continue }
                if case .events(let e) = try monitor.receive() {
                    seen += e
                    for ev in e where state.apply(ev) { changes += 1 }
                }
            }
            XCTAssertTrue(seen.contains(.address(added: true, index: 1, prefix: IPPrefix("192.0.2.1/24")!)), "\(seen)")
            XCTAssertEqual(state.uplink.routes, [UplinkState.Route(gateway: IPAddress("192.0.2.254"), interface: 1)], "\(seen)")
            // lo up and its address came before any default route: only the route changed the uplink.
            XCTAssertEqual(changes, 1, "\(seen)")
            XCTAssertEqual(state.uplink.carrier[1], true)
            // The uplink goes down: one more change, seen from the events alone. The kernel
            // flushes the link's routes without an RTM_DELROUTE; the state follows from the link event.
            try nl.setLink("lo", up: false)
            let until = Date().addingTimeInterval(5)
            while Date() < until, !state.uplink.routes.isEmpty {
                guard try monitor.wait(timeoutMs: 500) else { continue }
                if case .events(let e) = try monitor.receive() { for ev in e where state.apply(ev) { changes += 1 } }
            }
            XCTAssertEqual(state.uplink.routes, [], state.uplink.description)
            XCTAssertEqual(try nl.defaultRoutes(family: .v4), [], "the kernel has no default route either")
            XCTAssertGreaterThanOrEqual(changes, 2)
            while try monitor.wait(timeoutMs: 100) { _ = try monitor.receive() }
            XCTAssertEqual(try monitor.receive(), .wouldBlock)
        }
    }
}
