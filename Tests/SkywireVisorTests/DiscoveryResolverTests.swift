import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireTransport
import SkywireTestSupport
import XCTest
@testable import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// A resolver double: answers from a table, records the keys asked for; `punched` answers punches
/// (nil: a punch fails).
private final class TableResolver: PeerResolver {
    let name = "test discovery"
    let table: [PublicKey: ResolvedPeer]
    let punched: HostPort?
    let asked = NIOLockedValueBox<[PublicKey]>([])
    let punches = NIOLockedValueBox<[PublicKey]>([])
    init(_ table: [PublicKey: ResolvedPeer], punched: HostPort? = nil) {
        self.table = table
        self.punched = punched
    }
    func punch(_ key: PublicKey) async throws -> HostPort {
        punches.withLockedValue { $0.append(key) }
        guard let punched else { throw TransportError(.unreachable, "no live sudph binding") }
        return punched
    }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        asked.withLockedValue { $0.append(key) }
        guard let found = table[key] else { throw TransportError(.notFound, "\(key.hex) not found in \(name)") }
        return found
    }
}

/// A resolver that never answers within a test (its lookup sleeps `seconds`, not cancellable).
private final class StuckResolver: PeerResolver {
    let name = "stuck discovery"
    let seconds: UInt64
    init(seconds: UInt64) { self.seconds = seconds }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        try? await Task.detached { [seconds] in try await Task.sleep(nanoseconds: seconds * 1_000_000_000) }.value
        return ResolvedPeer(stcpr: [], sudph: nil)
    }
}

/// A UDP relay on 127.0.0.1 between one client and `server`: the client's first `duplicate`
/// datagrams go to the server twice (a resend that crossed the answer), later ones once;
/// the server's go back to the client. Runs on its own thread for at most `seconds`.
private final class DuplicatingRelay: @unchecked Sendable {
    // @unchecked Sendable: `fd` and `port` are set in init; the rest lives on the relay thread.
    let fd: Int32
    let port: UInt16
    private let stopped = NIOLockedValueBox(false)

    init(server: UInt16, duplicate: Int, seconds: Double) throws {
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, len) == 0 && getsockname(sock, $0, &len) == 0 ? 0 : -1 }
        }
        guard sock >= 0, rc == 0 else { throw XCTSkip("no UDP socket") }
        fd = sock
        port = UInt16(bigEndian: sin.sin_port)
        var tv = timeval(tv_sec: 0, tv_usec: 20_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let flag = stopped
        let thread = Thread {
            var serverAddr = sockaddr_in()
            serverAddr.sin_family = sa_family_t(AF_INET)
            serverAddr.sin_addr.s_addr = inet_addr("127.0.0.1")
            serverAddr.sin_port = server.bigEndian
            var client: sockaddr_in?
            var left = duplicate
            var buf = [UInt8](repeating: 0, count: 4096)
            let end = Date().addingTimeInterval(seconds)
            while Date() < end, !flag.withLockedValue({ $0 }) {
                var from = sockaddr_in()
                var fromLen = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(sock, &buf, buf.count, 0, $0, &fromLen) }
                }
                guard n > 0 else { continue }
                func send(_ to: sockaddr_in) {
                    var to = to
                    _ = withUnsafePointer(to: &to) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sock, buf, n, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
                if from.sin_port == serverAddr.sin_port {
                    if let client { send(client) }
                } else {
                    client = from
                    send(serverAddr)
                    if left > 0 { left -= 1; send(serverAddr) }
                }
            }
        }
        thread.start()
    }

    /// Sends a punch probe (one byte 0x00) from the relay's port to 127.0.0.1:`port`, as the
    /// target's NAT does when it maps the target's probes to a port of its own choosing.
    func probe(toPort port: UInt16) {
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        to.sin_port = port.bigEndian
        var byte: UInt8 = 0
        _ = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, &byte, 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    func stop() { stopped.withLockedValue { $0 = true } }
    deinit { close(fd) }
}

final class DiscoveryResolverTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    private func unusedPort() throws -> UInt16 { try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue)) }

    private func manager(stcprPort: Int = 0, sudphPort: Int = 0) -> TransportManager {
        var settings = TransportSettings(identity: KeyPair.generate(), listenHost: "127.0.0.1",
                                         stcprPort: stcprPort, sudphPort: sudphPort, peers: [:])
        settings.handshakeTimeout = 2
        return TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
    }

    private func message(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            XCTFail("expected an error")
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testWithoutPeersOrDiscoveryTheErrorSaysWhatToSet() async throws {
        let m = manager()
        let key = KeyPair.generate().publicKey
        let text = await message { _ = try await m.connect(remote: key) }
        XCTAssertTrue(text.contains("transport.discovery is not set to an http:// URL"), text)
        XCTAssertTrue(text.contains(key.hex), text)
        await m.shutdown()
    }

    func testUnknownKeyAndNoUsableAddressAreErrors() async throws {
        let m = manager()
        let known = KeyPair.generate().publicKey
        let unknown = KeyPair.generate().publicKey
        let resolver = TableResolver([known: ResolvedPeer(stcpr: [], sudph: HostPort(host: "127.0.0.1", port: 9))])
        m.resolver = resolver
        let text1 = await message { _ = try await m.connect(remote: unknown) }
        XCTAssertTrue(text1.contains("not found in test discovery"), text1)
        // Its only address is sudph, and sudph is disabled here.
        let text2 = await message { _ = try await m.connect(remote: known) }
        XCTAssertTrue(text2.contains("has no usable address"), text2)
        XCTAssertTrue(text2.contains("sudph is disabled here"), text2)
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, [unknown, known])
        XCTAssertEqual(m.list(), [])
        await m.shutdown()
    }

    func testDiscoveredAddressesAreTriedInTurnAndFailuresNamed() async throws {
        let port = try unusedPort()
        let exit = manager(stcprPort: Int(try unusedPort()))
        try await exit.start()
        let exitAddr = try XCTUnwrap(exit.stcprListenAddress)
        let client = manager()
        let dead = HostPort(host: "127.0.0.1", port: port)
        let live = try XCTUnwrap(try? HostPort.parse(exitAddr).get())
        let deadKey = KeyPair.generate().publicKey
        client.resolver = TableResolver([exit.localKey: ResolvedPeer(stcpr: [dead, live], sudph: nil),
                                         deadKey: ResolvedPeer(stcpr: [dead], sudph: nil)])
        let text = await message { _ = try await client.connect(remote: deadKey) }
        XCTAssertTrue(text.contains("cannot reach \(deadKey.hex)"), text)
        XCTAssertTrue(text.contains("stcpr 127.0.0.1:\(port)"), text)

        let info = try await client.connect(remote: exit.localKey)
        XCTAssertEqual(info.type, .stcpr)
        XCTAssertEqual(info.remoteKey, exit.localKey)
        XCTAssertEqual(info.remoteAddress, exitAddr)
        XCTAssertEqual(client.list().map(\.remoteKey), [exit.localKey])
        // Up already: no second lookup, the same transport.
        let askedBefore = try XCTUnwrap(client.resolver as? TableResolver).asked.withLockedValue { $0.count }
        let again = try await client.connect(remote: exit.localKey)
        XCTAssertEqual(again.id, info.id)
        XCTAssertEqual(try XCTUnwrap(client.resolver as? TableResolver).asked.withLockedValue { $0.count }, askedBefore)
        let ownText = await message { _ = try await client.connect(remote: client.localKey) }
        XCTAssertTrue(ownText.contains("ourselves"), ownText)
        await client.shutdown()
        await exit.shutdown()
    }

    func testSudphIsPunchedAndDialledFirstThenStcprIsTheFallback() async throws {
        let exit = manager(stcprPort: Int(try unusedPort()), sudphPort: Int(try unusedPort()))
        try await exit.start()
        let stcprAddr = try HostPort.parse(try XCTUnwrap(exit.stcprListenAddress)).get()
        let sudphAddr = try HostPort.parse(try XCTUnwrap(exit.sudphListenAddress)).get()
        let stale = HostPort(host: "127.0.0.1", port: try unusedPort())   // what discovery lists; the punch corrects it

        let a = manager(sudphPort: Int(try unusedPort()))
        try await a.start()
        let punching = TableResolver([exit.localKey: ResolvedPeer(stcpr: [stcprAddr], sudph: stale)], punched: sudphAddr)
        a.resolver = punching
        let viaSudph = try await a.connect(remote: exit.localKey)
        XCTAssertEqual(viaSudph.type, .sudph)
        XCTAssertEqual(viaSudph.remoteAddress, sudphAddr.description)
        XCTAssertEqual(punching.punches.withLockedValue { $0 }, [exit.localKey])
        await a.shutdown()

        // The punch fails and the listed sudph address is dead: stcpr is used.
        let b = manager(sudphPort: Int(try unusedPort()))
        try await b.start()
        let failing = TableResolver([exit.localKey: ResolvedPeer(stcpr: [stcprAddr], sudph: stale)], punched: nil)
        b.resolver = failing
        let viaStcpr = try await b.connect(remote: exit.localKey)
        XCTAssertEqual(viaStcpr.type, .stcpr)
        XCTAssertEqual(failing.punches.withLockedValue { $0 }, [exit.localKey])
        // -t stcpr: no punch at all.
        let c = manager(sudphPort: Int(try unusedPort()))
        try await c.start()
        let third = TableResolver([exit.localKey: ResolvedPeer(stcpr: [stcprAddr], sudph: stale)], punched: sudphAddr)
        c.resolver = third
        let onlyStcpr = try await c.connect(remote: exit.localKey, type: .stcpr)
        XCTAssertEqual(onlyStcpr.type, .stcpr)
        XCTAssertEqual(third.punches.withLockedValue { $0 }, [])
        await b.shutdown()
        await c.shutdown()
        await exit.shutdown()
    }

    /// After a punch the sudph dial uses the punched schedule (resends every 250 ms, gives up
    /// after 5 s, then stcpr); without a punch the usual one (here handshake_timeout 2 s).
    /// Asserted through the failure each dial reports, not by timing.
    func testAPunchedDialUsesThePunchScheduleAnUnpunchedOneTheUsual() async throws {
        let silent = HostPort(host: "127.0.0.1", port: try unusedPort())   // nothing answers there
        let exitKey = KeyPair.generate().publicKey
        let a = manager(sudphPort: Int(try unusedPort()))
        try await a.start()
        a.resolver = TableResolver([exitKey: ResolvedPeer(stcpr: [], sudph: silent)], punched: silent)
        let punched = await message { _ = try await a.connect(remote: exitKey) }
        XCTAssertTrue(punched.contains("sudph \(silent): "), punched)
        XCTAssertTrue(punched.contains("no handshake response from 127.0.0.1:\(silent.port) within 5 s, resent every 250 ms after a punch"), punched)
        XCTAssertEqual(a.list(), [])

        a.resolver = TableResolver([exitKey: ResolvedPeer(stcpr: [], sudph: silent)], punched: nil)
        let unpunched = await message { _ = try await a.connect(remote: exitKey) }
        XCTAssertTrue(unpunched.contains("punch: no live sudph binding"), unpunched)
        XCTAssertTrue(unpunched.contains("no handshake response from 127.0.0.1:\(silent.port) within 2 s"), unpunched)
        XCTAssertFalse(unpunched.contains("250 ms"), unpunched)
        await a.shutdown()
    }

    /// `connect(within:)` (proxy/vpn start -t): a lookup that hangs, and a dial whose handshake
    /// never completes, end at the limit with an error naming it and the step in progress; the
    /// abandoned dial leaves no transport entry behind.
    func testConnectWithinATimeoutEndsOnTimeAndCleansUp() async throws {
        let key = KeyPair.generate().publicKey
        let m = manager()
        m.resolver = StuckResolver(seconds: 8)
        var started = ContinuousClock.now
        let stuck = await message { _ = try await m.connect(remote: key, within: 1) }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4))
        XCTAssertTrue(stuck.contains("no transport to \(key.hex) within the timeout of 1 s (asking stuck discovery for its addresses)"), stuck)

        // A TCP listener that never accepts: connect() succeeds, the Noise handshake never does.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        XCTAssertEqual(withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &len) == 0 ? 0 : -1 }
        }, 0)
        let mute = HostPort(host: "127.0.0.1", port: UInt16(bigEndian: sin.sin_port))
        var settings = TransportSettings(identity: KeyPair.generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        settings.handshakeTimeout = 30
        let slow = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        slow.resolver = TableResolver([key: ResolvedPeer(stcpr: [mute], sudph: nil)])
        started = ContinuousClock.now
        let dial = await message { _ = try await slow.connect(remote: key, within: 1) }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4))
        XCTAssertTrue(dial.contains("within the timeout of 1 s (dialling stcpr \(mute))"), dial)
        // The abandoned entry is removed (its cancellation is handled on another task: bounded wait).
        for _ in 0..<50 where !slow.list().isEmpty { try await Task.sleep(nanoseconds: 20_000_000) }
        XCTAssertEqual(slow.list(), [])
        let zero = await message { _ = try await slow.connect(remote: key, within: 0) }
        XCTAssertTrue(zero.contains("at least 1 s"), zero)
        await slow.shutdown()
        await m.shutdown()
    }

    /// A resent copy of the initiation that reaches the responder after it answered (here: each
    /// of the first packets arrives twice) is answered again and does not replace the session:
    /// the responder keeps one transport, the same one, and pings go through.
    func testADuplicatedInitiationDoesNotReplaceTheSession() async throws {
        let exit = manager(sudphPort: Int(try unusedPort()))
        try await exit.start()
        let sudphPort = try XCTUnwrap(try HostPort.parse(try XCTUnwrap(exit.sudphListenAddress)).get()).port
        let relay = try DuplicatingRelay(server: sudphPort, duplicate: 3, seconds: 20)
        defer { relay.stop() }
        let a = manager(sudphPort: Int(try unusedPort()))
        try await a.start()
        let via = HostPort(host: "127.0.0.1", port: relay.port)
        a.resolver = TableResolver([exit.localKey: ResolvedPeer(stcpr: [], sudph: via)], punched: via)
        let info = try await a.connect(remote: exit.localKey)
        XCTAssertEqual(info.type, .sudph)
        try await Task.sleep(nanoseconds: 300_000_000)
        let inbound = exit.list()
        XCTAssertEqual(inbound.count, 1)
        // Mux PINGs answered over the session: the RTT is measured on both sides (bounded wait).
        var rtt: Double?
        for _ in 0..<100 {
            rtt = a.list().first?.rttMillis
            if rtt != nil { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertNotNil(rtt, "no PONG over the session: \(a.list())")
        XCTAssertEqual(exit.list().map(\.id), inbound.map(\.id))
        XCTAssertEqual(exit.list().first?.state, .up)
        XCTAssertEqual(a.list().first?.state, .up)
        await a.shutdown()
        await exit.shutdown()
    }

    /// The punched address is dead (the target's NAT took another port for its probes): a probe
    /// from another port of the target's IP during the punched dial makes the dial send its
    /// handshake there too, and the transport comes up at that port, well before the 5 s limit.
    func testAPunchedDialFollowsAProbeFromAnotherPort() async throws {
        let exit = manager(sudphPort: Int(try unusedPort()))
        try await exit.start()
        let exitPort = try HostPort.parse(try XCTUnwrap(exit.sudphListenAddress)).get().port
        let relay = try DuplicatingRelay(server: exitPort, duplicate: 0, seconds: 20)   // "the NAT's other port"
        defer { relay.stop() }
        let aPort = try unusedPort()
        let a = manager(sudphPort: Int(aPort))
        try await a.start()
        let dead = HostPort(host: "127.0.0.1", port: try unusedPort())   // what the punch returns
        a.resolver = TableResolver([exit.localKey: ResolvedPeer(stcpr: [], sudph: dead)], punched: dead)
        let started = ContinuousClock.now
        async let dialled = a.connect(remote: exit.localKey)
        try await Task.sleep(nanoseconds: 300_000_000)   // the dial is sending to the dead port
        relay.probe(toPort: aPort)
        let info = try await dialled
        XCTAssertEqual(info.type, .sudph)
        XCTAssertEqual(info.remoteAddress, "127.0.0.1:\(relay.port)")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4))
        // The exit's transport exists once the initiator's keepalive confirmed it (bounded wait).
        for _ in 0..<100 where exit.list().isEmpty { try await Task.sleep(nanoseconds: 20_000_000) }
        XCTAssertEqual(exit.list().count, 1)
        await a.shutdown()
        await exit.shutdown()
    }

    /// The responder's first reliable frames (its mux PING, an OPEN_OK) wait for the session's
    /// confirmation instead of being "sent" unencrypted-nowhere and retransmitted after the 1 s
    /// initial RTO: the initiator's first PING is answered within one round trip.
    func testTheResponderSendsAsSoonAsTheSessionIsConfirmed() async throws {
        let exit = manager(sudphPort: Int(try unusedPort()))
        try await exit.start()
        let a = manager(sudphPort: Int(try unusedPort()))
        try await a.start()
        _ = try await a.add(remote: exit.localKey, type: .sudph, address: try XCTUnwrap(exit.sudphListenAddress))
        var rtt: Double?
        for _ in 0..<100 {
            rtt = a.list().first?.rttMillis
            if rtt != nil { break }
            try await Task.sleep(nanoseconds: 30_000_000)
        }
        let measured = try XCTUnwrap(rtt, "no PONG within 3 s")
        XCTAssertLessThan(measured, 500, "the first PONG waited for a retransmission timeout")
        await a.shutdown()
        await exit.shutdown()
    }

    func testInterpretingThePunchAnswer() throws {
        let key = KeyPair.generate().publicKey
        let src = "discovery http://192.0.2.1:9090"
        XCTAssertEqual(try DiscoveryResolver.interpretPunch(status: 200, body: Array(#"{"target":"198.51.100.7:40123"}"#.utf8), key: key, source: src),
                       HostPort(host: "198.51.100.7", port: 40123))
        XCTAssertThrowsError(try DiscoveryResolver.interpretPunch(status: 404, body: Array(#"{"error":"no live sudph binding"}"#.utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("answered 404 to POST /v1/punch/\(key.hex): no live sudph binding"), "\($0)")
        }
        XCTAssertThrowsError(try DiscoveryResolver.interpretPunch(status: 200, body: Array(#"{"target":"nowhere"}"#.utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("malformed punch answer"), "\($0)")
        }
    }

    func testInterpretingTheDiscoveryAnswer() throws {
        let key = KeyPair.generate().publicKey
        let src = "discovery http://192.0.2.1:9090"
        XCTAssertThrowsError(try DiscoveryResolver.interpret(status: 404, body: Array(#"{"error": "unknown key"}"#.utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("\(key.hex) not found in \(src)"), "\($0)")
        }
        XCTAssertThrowsError(try DiscoveryResolver.interpret(status: 500, body: Array(#"{"error": "storage failure: x"}"#.utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("answered 500"), "\($0)")
            XCTAssertTrue("\($0)".contains("storage failure: x"), "\($0)")
        }
        let entry = TransportEntry(pk: key.hex, stcpr: ["203.0.113.5:7777", "[2001:db8::1]:7777"], sudph: "198.51.100.7:40123", expiresMs: 1)
        let found = try DiscoveryResolver.interpret(status: 200, body: Array(entry.json().compact().utf8), key: key, source: src)
        XCTAssertEqual(found, ResolvedPeer(stcpr: [HostPort(host: "203.0.113.5", port: 7777), HostPort(host: "2001:db8::1", port: 7777)],
                                           sudph: HostPort(host: "198.51.100.7", port: 40123)))
        let other = TransportEntry(pk: KeyPair.generate().publicKey.hex, stcpr: [], sudph: nil, expiresMs: 1)
        XCTAssertThrowsError(try DiscoveryResolver.interpret(status: 200, body: Array(other.json().compact().utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("when asked for \(key.hex)"), "\($0)")
        }
        XCTAssertThrowsError(try DiscoveryResolver.interpret(status: 200, body: Array("{".utf8), key: key, source: src)) {
            XCTAssertTrue("\($0)".contains("malformed transport entry"), "\($0)")
        }
    }
}
