import NIOCore
import NIOPosix
import SkywireSystem
import SkywireTestSupport
import XCTest
@testable import SkywireSocks
import SkywireTransport

#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// `--secure` (the default): CONNECT and UDP datagrams to the exit's loopback, private, link-local,
/// multicast and reserved ranges, in every form and by name, get reply 0x02 / are not sent, and
/// never reach the destination (the exit's connections raw on the stream's `EpollEventLoop`).
final class SkysocksSecureTests: SkysocksHarnessTestCase {
    /// Bounds a connect that the unchanged code would attempt to an unreachable private address.
    static let connectTimeout: TimeAmount = .seconds(2)

    private func makeHarness(secure: Bool?) throws -> SkysocksHarness {
        // The harness client listed; `secure` nil: the default setting.
        var options = SkysocksHarness.admittingClient
        options.secure = secure ?? SkysocksServerOptions().secure
        options.connectTimeout = Self.connectTimeout
        harness = try SkysocksHarness(group: group, serverOptions: options)
        return harness
    }

    /// A listening TCP socket on 127.0.0.1 that never accepts: what reached it waits in its queue.
    private func loopbackListener() throws -> (fd: Int32, port: UInt16) {
        let (fd, port) = try boundLoopbackSocket(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        XCTAssertEqual(listen(fd, 64), 0)
        return (fd, port)
    }

    /// Connections waiting in `fd`'s accept queue (accepted and closed).
    private func queuedConnections(_ fd: Int32) -> Int {
        var count = 0
        while true {
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return count }
            close(connection)
            count += 1
        }
    }

    private func connect(_ address: Socks5Address, _ port: Int) throws -> (code: UInt8?, closed: Bool) {
        try Self.connect(through: harness, to: address, port)
    }

    /// Greeting and CONNECT in one write; the reply code, and whether the proxy closed afterwards.
    private static func connect(through harness: SkysocksHarness, to address: Socks5Address,
                                _ port: Int) throws -> (code: UInt8?, closed: Bool) {
        let s = try TestSocket.connect(to: harness.proxyAddress)
        s.send([5, 1, 0] + SocksBytes.connect(address, port))
        let reply = s.receive(exactly: 2 + 10)
        let code = reply.count >= 4 ? reply[3] : nil
        return (code, code == 0 ? false : s.waitForClose())
    }

    private let loopbackForms: [Socks5Address] = [
        .ipv4(0x7F00_0001),                 // 127.0.0.1
        .ipv4(0x7F12_3456),                 // 127.18.52.86
        .ipv4(0),                           // 0.0.0.0: Linux connects it to the host itself
        .ipv6(0, 1),                        // ::1
        .ipv6(0, 0xFFFF_7F00_0001),         // ::ffff:127.0.0.1
        .ipv6(0, 0x7F00_0001),              // ::127.0.0.1
        .ipv6(0x0064_FF9B_0000_0000, 0x7F00_0001),  // 64:ff9b::127.0.0.1
        .domain("localhost"),
        .domain("127.0.0.1"),
    ]

    func testDefaultRefusesTheExitsLoopbackInEveryForm() throws {
        let h = try makeHarness(secure: nil)
        XCTAssertTrue(h.server.options.secure, "--secure is the default")
        let (fd, port) = try loopbackListener()
        defer { close(fd) }
        for address in loopbackForms {
            let (code, closed) = try connect(address, Int(port))
            XCTAssertEqual(code, Socks5ReplyCode.connectionNotAllowed.rawValue, "\(address)")
            XCTAssertTrue(closed, "\(address)")
        }
        XCTAssertEqual(queuedConnections(fd), 0, "a connection reached the exit's loopback listener")
        XCTAssertEqual(h.server.status.refusedDestinations, UInt64(loopbackForms.count))
        XCTAssertGreaterThanOrEqual(h.server.status.failedSessions, loopbackForms.count)
    }

    /// In a network namespace of its own (only `lo`): whatever the code does, no packet can leave
    /// for these addresses on the host's networks.
    func testDefaultRefusesLANLinkLocalMulticastAndBroadcast() throws {
        try inPrivateNetworkNamespace {
            try RouteNetlink().setLink("lo", up: true)
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            var options = SkysocksHarness.admittingClient
            options.secure = SkysocksServerOptions().secure
            options.connectTimeout = Self.connectTimeout
            let h = try SkysocksHarness(group: group, serverOptions: options)
            defer { h.shutdown() }
            let destinations: [Socks5Address] = [
                .ipv4(0x0A00_0001),             // 10.0.0.1
                .ipv4(0xAC10_0001),             // 172.16.0.1
                .ipv4(0xC0A8_0101),             // 192.168.1.1
                .ipv4(0x6440_0001),             // 100.64.0.1
                .ipv4(0xA9FE_A9FE),             // 169.254.169.254
                .ipv4(0xE000_0001),             // 224.0.0.1
                .ipv4(0xFFFF_FFFF),             // 255.255.255.255
                .ipv6(0xFE80 << 48, 1),         // fe80::1
                .ipv6(0xFD00 << 48, 1),         // fd00::1
                .ipv6(0xFF02 << 48, 1),         // ff02::1
                .ipv6(0, 0xFFFF_A9FE_A9FE),     // ::ffff:169.254.169.254
                .ipv6(0, 0xFFFF_0A00_0001),     // ::ffff:10.0.0.1
            ]
            for address in destinations {
                let (code, closed) = try Self.connect(through: h, to: address, 80)
                XCTAssertEqual(code, Socks5ReplyCode.connectionNotAllowed.rawValue, "\(address)")
                XCTAssertTrue(closed, "\(address)")
            }
            XCTAssertEqual(h.server.status.refusedDestinations, UInt64(destinations.count))
        }
    }

    func testSecureFalseReachesTheExitsLoopback() throws {
        let h = try makeHarness(secure: false)
        let (fd, port) = try loopbackListener()
        defer { close(fd) }
        let (code, _) = try connect(.ipv4(0x7F00_0001), Int(port))
        XCTAssertEqual(code, Socks5ReplyCode.succeeded.rawValue)
        XCTAssertEqual(queuedConnections(fd), 1)
        XCTAssertEqual(h.server.status.refusedDestinations, 0)
    }

    func testUDPDatagramsToTheExitsLoopbackAreNotSent() throws {
        let h = try makeHarness(secure: nil)
        // The destination: a UDP socket on 127.0.0.1 that is only looked at.
        let (target, port) = try boundLoopbackSocket(Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        defer { close(target) }
        let control = try TestSocket.connect(to: h.proxyAddress)
        control.send([5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        let reply = control.receive(exactly: 2 + 10)
        XCTAssertEqual(Array(reply.prefix(6)), [5, 0, 5, 0, 0, 1], "UDP ASSOCIATE itself is allowed")
        guard reply.count == 12 else { return }
        let relay = try SocketAddress(ipAddress: "127.0.0.1", port: Int(reply[10]) << 8 | Int(reply[11]))
        let udp = TestSocket(udp: true)
        udp.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let forms: [Socks5Address] = [.ipv4(0x7F00_0001), .ipv6(0, 0xFFFF_7F00_0001), .domain("localhost")]
        let deadline = Date().addingTimeInterval(10)
        while h.server.status.datagramsRefused < UInt64(forms.count), Date() < deadline {
            for address in forms {
                var header = ByteBuffer()
                Socks5UDPHeader(address: address, port: port).write(to: &header)
                udp.sendTo(Array(header.readableBytesView) + Array("secret".utf8), relay)
            }
            usleep(50_000)
        }
        XCTAssertGreaterThanOrEqual(h.server.status.datagramsRefused, UInt64(forms.count))
        XCTAssertEqual(h.server.status.datagramsRelayed, 0)
        var byte: UInt8 = 0
        XCTAssertEqual(recv(target, &byte, 1, Int32(MSG_DONTWAIT)), -1, "a datagram reached the exit's loopback")
        control.shutdownWrite()
        XCTAssertTrue(control.waitForClose())
    }

    /// A name that resolves to refused and allowed addresses connects to the allowed ones only.
    func testAdmittedKeepsOnlyAllowedResolvedAddresses() throws {
        let h = try makeHarness(secure: true)
        let loopback = try SocketAddress(ipAddress: "127.0.0.1", port: 80)
        let mapped = try SocketAddress(ipAddress: "::ffff:10.1.2.3", port: 80)
        let documentation = try SocketAddress(ipAddress: "192.0.2.55", port: 80)
        XCTAssertEqual(try h.server.admitted([loopback, documentation, mapped]), [documentation])
        XCTAssertThrowsError(try h.server.admitted([loopback, mapped])) { error in
            let refused = error as? SkysocksDestinationRefused
            // A resolved IPv4-mapped address is judged as the IPv4 address it is (`Socks5Address`).
            XCTAssertEqual(refused?.refusals.map(\.address), [IPAddress("127.0.0.1")!, IPAddress("10.1.2.3")!])
            XCTAssertEqual(refused?.rules, "loopback 127.0.0.0/8; private 10.0.0.0/8")
            XCTAssertEqual(SkysocksServerApp.replyCode(for: error), .connectionNotAllowed)
        }
    }

    func testSecureArgument() throws {
        XCTAssertTrue(try SkysocksServerOptions.parse([]).secure)
        XCTAssertTrue(try SkysocksServerOptions.parse(["--secure"]).secure)
        XCTAssertTrue(try SkysocksServerOptions.parse(["--secure=true", "--max-sessions", "5"]).secure)
        XCTAssertFalse(try SkysocksServerOptions.parse(["--secure=false"]).secure)
        XCTAssertFalse(try SkysocksServerOptions.parse(["--secure", "--secure=false"]).secure)
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--secure=no"])) { error in
            XCTAssertEqual("\(error)", "--secure takes true or false, not 'no'")
        }
        // Like vpn-server's `--secure`: the value only after `=`.
        XCTAssertThrowsError(try SkysocksServerOptions.parse(["--secure", "false"])) { error in
            XCTAssertEqual("\(error)", "unexpected argument 'false'")
        }
    }
}
