import SkywireSystem
import SkywireTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `IPAddress.nonPublicRange`: every range at both ends and just outside, from raw bytes; the
/// IPv6 forms of IPv4 (mapped, compatible, NAT64) of each.
final class IPAddressScopeTests: XCTestCase {
    private typealias Kind = NonPublicRange.Kind

    private func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> IPAddress {
        IPAddress(bytes: [a, b, c, d])!
    }

    private func v6(_ bytes: [UInt8]) -> IPAddress {
        XCTAssertEqual(bytes.count, 16)
        return IPAddress(bytes: bytes)!
    }

    /// ::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::a.b.c.d.
    private func forms(of address: IPAddress) -> [(IPAddress, IPv4Embedding)] {
        let zeros = [UInt8](repeating: 0, count: 10)
        return [
            (v6(zeros + [0xFF, 0xFF] + address.bytes), .mapped),
            (v6(zeros + [0, 0] + address.bytes), .compatible),
            (v6([0x00, 0x64, 0xFF, 0x9B] + [UInt8](repeating: 0, count: 8) + address.bytes), .nat64),
        ]
    }

    /// (address, expected kind or nil for public, the prefix that should be named)
    private var ipv4Cases: [(IPAddress, Kind?, String)] {
        [
            (v4(0, 0, 0, 0), .thisNetwork, "0.0.0.0/8"),
            (v4(0, 255, 255, 255), .thisNetwork, "0.0.0.0/8"),
            (v4(1, 0, 0, 0), nil, ""),
            (v4(9, 255, 255, 255), nil, ""),
            (v4(10, 0, 0, 0), .privateNetwork, "10.0.0.0/8"),
            (v4(10, 255, 255, 255), .privateNetwork, "10.0.0.0/8"),
            (v4(11, 0, 0, 0), nil, ""),
            (v4(100, 63, 255, 255), nil, ""),
            (v4(100, 64, 0, 0), .sharedAddressSpace, "100.64.0.0/10"),
            (v4(100, 127, 255, 255), .sharedAddressSpace, "100.64.0.0/10"),
            (v4(100, 128, 0, 0), nil, ""),
            (v4(126, 255, 255, 255), nil, ""),
            (v4(127, 0, 0, 0), .loopback, "127.0.0.0/8"),
            (v4(127, 0, 0, 1), .loopback, "127.0.0.0/8"),
            (v4(127, 255, 255, 255), .loopback, "127.0.0.0/8"),
            (v4(128, 0, 0, 0), nil, ""),
            (v4(169, 253, 255, 255), nil, ""),
            (v4(169, 254, 0, 0), .linkLocal, "169.254.0.0/16"),
            (v4(169, 254, 169, 254), .linkLocal, "169.254.0.0/16"),
            (v4(169, 254, 255, 255), .linkLocal, "169.254.0.0/16"),
            (v4(169, 255, 0, 0), nil, ""),
            (v4(172, 15, 255, 255), nil, ""),
            (v4(172, 16, 0, 0), .privateNetwork, "172.16.0.0/12"),
            (v4(172, 31, 255, 255), .privateNetwork, "172.16.0.0/12"),
            (v4(172, 32, 0, 0), nil, ""),
            (v4(192, 0, 2, 1), nil, ""),        // documentation (RFC 5737): the tests' "internet"
            (v4(192, 167, 255, 255), nil, ""),
            (v4(192, 168, 0, 0), .privateNetwork, "192.168.0.0/16"),
            (v4(192, 168, 255, 255), .privateNetwork, "192.168.0.0/16"),
            (v4(192, 169, 0, 0), nil, ""),
            (v4(198, 51, 100, 1), nil, ""),
            (v4(203, 0, 113, 2), nil, ""),
            (v4(223, 255, 255, 255), nil, ""),
            (v4(224, 0, 0, 0), .multicast, "224.0.0.0/4"),
            (v4(239, 255, 255, 255), .multicast, "224.0.0.0/4"),
            (v4(240, 0, 0, 0), .reserved, "240.0.0.0/4"),
            (v4(255, 255, 255, 254), .reserved, "240.0.0.0/4"),
            (v4(255, 255, 255, 255), .reserved, "240.0.0.0/4"),
        ]
    }

    func testIPv4RangesAtTheirEdges() {
        for (address, kind, prefix) in ipv4Cases {
            let range = address.nonPublicRange
            XCTAssertEqual(range?.kind, kind, "\(address)")
            if kind != nil {
                XCTAssertEqual(range.map { "\($0.prefix)" }, prefix, "\(address)")
                XCTAssertNil(range?.embedding, "\(address)")
            }
        }
    }

    func testIPv6FormsOfEveryIPv4Case() {
        for (address, kind, prefix) in ipv4Cases {
            for (form, embedding) in forms(of: address) {
                let range = form.nonPublicRange
                if (address.v4Value ?? 0) <= 1 && embedding == .compatible {
                    continue  // ::/128 and ::1/128 are IPv6's own (next test)
                }
                XCTAssertEqual(range?.kind, kind, "\(form) (\(embedding) of \(address))")
                if kind != nil {
                    XCTAssertEqual(range?.embedding, embedding, "\(form)")
                    XCTAssertEqual(range.map { "\($0.prefix)" }, prefix, "\(form)")
                }
                XCTAssertEqual(form.embeddedIPv4?.address, address, "\(form)")
                XCTAssertEqual(form.embeddedIPv4?.form, embedding, "\(form)")
            }
        }
    }

    func testIPv6RangesAtTheirEdges() {
        func a(_ first: [UInt8], fill: UInt8 = 0, last: UInt8 = 0) -> IPAddress {
            v6(first + [UInt8](repeating: fill, count: 15 - first.count) + [last])
        }
        let cases: [(IPAddress, Kind?)] = [
            (a([]), .thisNetwork),                                  // ::
            (a([], last: 1), .loopback),                            // ::1
            (a([], last: 2), .thisNetwork),                         // ::0.0.0.2, IPv4-compatible 0.0.0.2
            (a([0xFB, 0xFF], fill: 0xFF, last: 0xFF), nil),
            (a([0xFC, 0x00]), .uniqueLocal),
            (a([0xFD, 0x12], last: 1), .uniqueLocal),
            (a([0xFD, 0xFF], fill: 0xFF, last: 0xFF), .uniqueLocal),
            (a([0xFE, 0x00]), nil),
            (a([0xFE, 0x7F], fill: 0xFF, last: 0xFF), nil),
            (a([0xFE, 0x80]), .linkLocal),
            (a([0xFE, 0x80], last: 1), .linkLocal),
            (a([0xFE, 0xBF], fill: 0xFF, last: 0xFF), .linkLocal),
            (a([0xFE, 0xC0]), .siteLocal),
            (a([0xFE, 0xFF], fill: 0xFF, last: 0xFF), .siteLocal),
            (a([0xFF, 0x00]), .multicast),
            (a([0xFF, 0x02], last: 1), .multicast),
            (a([0xFF, 0xFF], fill: 0xFF, last: 0xFF), .multicast),
            (a([0x20, 0x01, 0x0D, 0xB8], last: 1), nil),           // 2001:db8::1, documentation
            (a([0x26, 0x06, 0x47, 0x00], last: 1), nil),           // a global unicast address
            (a([0x00, 0x64, 0xFF, 0x9B, 0, 1], last: 1), nil),      // 64:ff9b:1::/48 (local-use NAT64) not treated
            (a([0x00, 0x64, 0xFF, 0x9A], last: 1), nil),
        ]
        for (address, kind) in cases {
            XCTAssertEqual(address.nonPublicRange?.kind, kind, "\(address)")
        }
        XCTAssertNil(a([]).embeddedIPv4, ":: is IPv6's unspecified address")
        XCTAssertNil(a([], last: 1).embeddedIPv4, "::1 is IPv6's loopback")
        XCTAssertNil(a([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE], last: 1).embeddedIPv4)
    }

    func testDescriptionsNameTheRule() {
        XCTAssertEqual(IPAddress("127.0.0.1")?.nonPublicRange?.description, "loopback 127.0.0.0/8")
        XCTAssertEqual(IPAddress("::1")?.nonPublicRange?.description, "loopback ::1/128")
        XCTAssertEqual(IPAddress("::ffff:169.254.169.254")?.nonPublicRange?.description,
                       "link-local 169.254.0.0/16 in IPv4-mapped IPv6 (::ffff:0.0.0.0/96)")
        XCTAssertEqual(IPAddress("64:ff9b::10.1.2.3")?.nonPublicRange?.description,
                       "private 10.0.0.0/8 in NAT64 (64:ff9b::/96)")
        XCTAssertEqual(IPAddress("::127.0.0.1")?.nonPublicRange?.description,
                       "loopback 127.0.0.0/8 in IPv4-compatible IPv6 (::/96)")
        XCTAssertEqual(DestinationRefusal.hostAddress(IPAddress("203.0.113.1")!).description,
                       "an address of this host (203.0.113.1)")
    }
}

/// `HostAddresses` and `SecureDestinations` in a network namespace of their own: addresses added
/// after the first lookup are known to the next one, without listing again when nothing changed.
final class HostAddressesTests: XCTestCase {
    func testAddressesAddedAndRemovedLaterAreSeenAtOnce() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            try nl.setLink("lo", up: true)
            let host = HostAddresses()
            let added = IPAddress("198.51.100.7")!
            let added6 = IPAddress("2001:db8::7")!
            XCTAssertTrue(host.contains(IPAddress("127.0.0.1")!))
            XCTAssertFalse(host.contains(added))
            let listed = host.listings
            for _ in 0..<1000 { XCTAssertFalse(host.contains(added)) }
            XCTAssertEqual(host.listings, listed, "no change, no new listing")

            try nl.addAddress(IPPrefix(added, 24)!, interface: "lo")
            XCTAssertTrue(host.contains(added), "added after the first lookup")
            try nl.addAddress(IPPrefix(added6, 128)!, interface: "lo")
            XCTAssertTrue(host.contains(added6))
            XCTAssertGreaterThan(host.listings, listed)

            let policy = SecureDestinations(hostAddresses: host)
            XCTAssertEqual(policy.refusal(for: added), .hostAddress(added))
            XCTAssertEqual(policy.refusal(for: IPAddress("::ffff:198.51.100.7")!), .hostAddress(added))
            XCTAssertEqual(policy.refusal(for: IPAddress("64:ff9b::198.51.100.7")!), .hostAddress(added))
            XCTAssertEqual(policy.refusal(for: added6), .hostAddress(added6))
            XCTAssertNil(policy.refusal(for: IPAddress("198.51.100.8")!), "a neighbour is not this host")
            XCTAssertNil(policy.refusal(for: IPAddress("2001:db8::8")!))
            XCTAssertEqual(policy.refusal(for: IPAddress("127.0.0.1")!)?.description, "loopback 127.0.0.0/8")

            try nl.removeAddress(IPPrefix(added, 24)!, interface: "lo")
            XCTAssertFalse(host.contains(added), "removed")
            XCTAssertNil(policy.refusal(for: added))
        }
    }

    /// Many changes between two lookups overflow nothing that matters: the next lookup lists again.
    func testBurstOfChangesIsCaughtUp() throws {
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            let host = HostAddresses()
            XCTAssertFalse(host.contains(IPAddress("198.51.100.200")!))
            for last in 1...200 {
                try nl.addAddress(IPPrefix(IPAddress(bytes: [198, 51, 100, UInt8(last)])!, 32)!, interface: "lo")
            }
            XCTAssertTrue(host.contains(IPAddress("198.51.100.200")!))
            XCTAssertEqual(host.current.filter { $0.bytes.starts(with: [198, 51, 100]) }.count, 200)
        }
    }
}
