import Logging
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireTransport
import SkywireWire
import SkywireTestSupport
import XCTest
@testable import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// A plain UDP socket on 127.0.0.1 playing the rendezvous or a peer (SO_RCVTIMEO bounds reads).
private final class UDPPeer {
    let fd: Int32
    let port: UInt16

    init() throws {
        (fd, port) = try boundLoopbackSocket(Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        var tv = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next datagram and its source port, or nil after `tries` empty 300 ms waits.
    func receive(tries: Int = 10) -> ([UInt8], UInt16)? {
        var buf = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<tries {
            var from = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) }
                }
            }
            if n >= 0 { return (Array(buf[0..<n]), UInt16(bigEndian: from.sin_port)) }
        }
        return nil
    }

    func send(_ bytes: [UInt8], toPort: UInt16) {
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        to.sin_port = toPort.bigEndian
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }
}

final class SudphRendezvousVisorTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    func testBindIsSignedAndPunchIsTrustedOnlyFromTheRendezvous() async throws {
        let rendezvous = try UDPPeer(), peer = try UDPPeer(), stranger = try UDPPeer()
        let kp = KeyPair.generate()
        let sudphPort = try UDPPeer().port   // closed again at once: free for the visor
        let settings = TransportSettings(identity: kp, listenHost: "127.0.0.1", stcprPort: 0, sudphPort: Int(sudphPort), peers: [:])
        let m = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        try await m.start()
        XCTAssertFalse(m.startRendezvous(host: "rendezvous.example", port: 9091))   // not an IP address
        XCTAssertTrue(m.startRendezvous(host: "127.0.0.1", port: Int(rendezvous.port)))

        // A signed, fresh BIND from the sudph socket.
        let (bind, from) = try XCTUnwrap(rendezvous.receive(), "no BIND within 3 s")
        XCTAssertEqual(from, sudphPort)
        guard case .bind(let pk, let ts, let token, let sig) = try SudphRendezvous.parse(bind) else { return XCTFail("not a BIND: \(bind)") }
        XCTAssertEqual(pk, kp.publicKey.bytes)
        XCTAssertTrue(kp.publicKey.verify(signature: sig, message: SudphRendezvous.bindSignedBytes(publicKey: pk, timestampMs: ts, token: token)))
        XCTAssertLessThan(abs(Int64(ts) - DiscoveryTime.nowMs()), 5000)

        let peerKey = KeyPair.generate().publicKey.bytes
        let peerAddress = RendezvousAddress(address: [127, 0, 0, 1], port: peer.port)!
        let punch = SudphRendezvous.punch(token: token, peerKey: peerKey, peer: peerAddress).encoded()
        // From anyone else: ignored.
        stranger.send(punch, toPort: sudphPort)
        XCTAssertNil(peer.receive(tries: 2), "PUNCH from a stranger was obeyed")
        // From the rendezvous's address but without the BIND's token (an off-path attacker
        // spoofing the source): ignored.
        var guessed = token
        guessed[0] ^= 1
        rendezvous.send(SudphRendezvous.punch(token: guessed, peerKey: peerKey, peer: peerAddress).encoded(), toPort: sudphPort)
        rendezvous.send(SudphRendezvous.punch(token: [UInt8](repeating: 0, count: SudphRendezvous.tokenSize), peerKey: peerKey,
                                              peer: peerAddress).encoded(), toPort: sudphPort)
        XCTAssertNil(peer.receive(tries: 2), "PUNCH without the BIND token was obeyed")
        // From the rendezvous: probes reach the peer's address from the sudph socket.
        rendezvous.send(punch, toPort: sudphPort)
        var probes = 0
        while let (probe, src) = peer.receive(tries: 2) {
            XCTAssertEqual(probe, [0])
            XCTAssertEqual(src, sudphPort)
            probes += 1
            if probes > 10 { break }
        }
        XCTAssertEqual(probes, 3)
        await m.shutdown()
    }

    func testInfoCarriesTheRendezvousAddress() throws {
        let info = try DiscoveryInfo.decode(Array(#"{"version":"0.1.0","udp":"198.51.100.1:9091","ttl":60}"#.utf8))
        XCTAssertEqual(info.ttl, 60)
        XCTAssertEqual(info.udp?.description, "198.51.100.1:9091")
        XCTAssertNil(try DiscoveryInfo.decode(Array(#"{"ttl":60,"udp":"nonsense"}"#.utf8)).udp)
        XCTAssertThrowsError(try DiscoveryInfo.decode(Array(#"{"udp":"198.51.100.1:9091"}"#.utf8)))
        XCTAssertNil(info.privateAddresses)
        XCTAssertEqual(try DiscoveryInfo.decode(Array(#"{"ttl":60,"private_addresses":false}"#.utf8)).privateAddresses, false)
        XCTAssertEqual(try DiscoveryInfo.decode(Array(#"{"ttl":60,"private_addresses":true}"#.utf8)).privateAddresses, true)
    }

    /// A visor whose listener has a LAN address does not advertise it to a public service (which
    /// would refuse the whole registration); public addresses and names are kept.
    func testPublicOnlyAddresses() {
        let (kept, dropped) = DiscoveryRegistrar.publicOnly(["10.99.1.2:7777", "203.0.113.5:7777", "[fe80::1]:7777", "exit.example:7777"])
        XCTAssertEqual(kept, ["203.0.113.5:7777", "exit.example:7777"])
        XCTAssertEqual(dropped.count, 2)
        XCTAssertTrue(dropped[0].hasPrefix("10.99.1.2:7777 (a private address"), dropped[0])
    }
}
