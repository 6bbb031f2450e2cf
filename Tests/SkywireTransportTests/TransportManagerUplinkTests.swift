#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem
import SkywireTestSupport
import XCTest
@testable import SkywireTransport

/// `TransportManager.uplinkChanged`: an stcpr transport whose local address left the uplink is
/// closed and redialled at once, not after the backoff nor the dead-peer timer; one whose
/// address stays is only probed (and stays up).
final class TransportManagerUplinkTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    private var managers: [TransportManager] = []

    override func tearDown() async throws {
        for m in managers { await m.shutdown() }
        managers = []
        try await group.shutdownGracefully()
    }

    private func manager(stcprPort: Int = 0) -> TransportManager {
        var settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1",
                                         stcprPort: stcprPort, sudphPort: 0, peers: [:])
        settings.handshakeTimeout = 2
        let m = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        managers.append(m)
        return m
    }

    /// A change from an uplink holding `old` to one holding 192.0.2.10 (gateway and interface changed).
    private func change(vanishing old: String) throws -> UplinkChange {
        var before = UplinkState.Uplink(), after = UplinkState.Uplink()
        before.routes = [UplinkState.Route(gateway: IPAddress("192.0.2.1"), interface: 2)]
        before.carrier[2] = true
        before.addresses[2] = [try XCTUnwrap(IPPrefix("\(old)/8"))]
        after.routes = [UplinkState.Route(gateway: IPAddress("198.51.100.1"), interface: 3)]
        after.carrier[3] = true
        after.addresses[3] = [try XCTUnwrap(IPPrefix("198.51.100.10/24"))]
        return try XCTUnwrap(UplinkChange.between(before, after))
    }

    private func connected() throws -> (TransportManager, TransportManager, TransportInfo) {
        let server = manager(stcprPort: Int(try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))))
        try waitAsync { try await server.start() }
        let address = try XCTUnwrap(server.stcprListenAddress)
        let client = manager()
        let info = try waitAsync { try await client.add(remote: server.localKey, type: .stcpr, address: address) }
        XCTAssertEqual(info.state, .up)
        return (server, client, info)
    }

    func testTransportOnAVanishedAddressIsRedialledAtOnce() throws {
        let (server, client, first) = try connected()
        // The server registers the inbound transport when its side of the handshake completes.
        for _ in 0..<1000 where server.list().first(where: { $0.state == .up }) == nil { usleep(5_000) }
        let inboundBefore = try XCTUnwrap(server.list().first(where: { $0.state == .up })?.id)
        let reaction = client.uplinkChanged(try change(vanishing: "127.0.0.1"))
        XCTAssertEqual(reaction.probed, 1)
        // The connection is closed at once and the same wanted entry dials a new one: the server
        // sees a new inbound transport. Bounded generously for a loaded machine; the time is printed
        // (without the change: the 1 s ±20 % backoff after a loss, or 30 s of silence first).
        let start = ContinuousClock.now
        var redialled = false
        while !redialled && ContinuousClock.now - start < .seconds(10) {
            redialled = server.list().contains { $0.id != inboundBefore && $0.state == .up }
                && client.list().first?.state == .up
            if !redialled { usleep(5_000) }
        }
        XCTAssertTrue(redialled, "server: \(server.list()), client: \(client.list())")
        XCTAssertEqual(client.list().map(\.id), [first.id], "the same wanted entry, redialled")
        print("closed and redialled, up again \(ContinuousClock.now - start) after the change")
    }

    func testTransportOnAKeptAddressIsProbedAndStaysUp() throws {
        let (server, client, _) = try connected()
        let reaction = client.uplinkChanged(try change(vanishing: "10.9.9.9"))
        XCTAssertEqual(reaction.probed, 1)
        // The probe is answered: after the probe's window the transport is still the same one.
        usleep(UInt32(TransportManager.uplinkProbeTimeout.nanoseconds / 1000) + 500_000)
        let now = try XCTUnwrap(client.list().first)
        XCTAssertEqual(now.state, .up)
        XCTAssertNil(now.lastError)
        XCTAssertEqual(server.list().count, 1, "no new connection: \(server.list())")
    }

    // MARK: dmsg relay sessions

    /// A manager with a session to a real relay server on loopback (the session's local address
    /// is 127.0.0.1).
    private func relayed() throws -> (TransportManager, DmsgRelayServer) {
        let relayKey = KeyPair.generate()
        let relayLoop = try EpollEventLoop(name: "uplink-relay")
        let relay = try DmsgRelayServer(loop: relayLoop, identity: relayKey, clients: .any, logger: Logger(label: "relay"))
        let bound = try waitAsync { try await relay.start(address: SocketAddress(ipAddress: "127.0.0.1", port: 0)) }
        let port = try XCTUnwrap(bound?.port)
        let m = manager()
        try m.startRelays([DmsgServerAddress(publicKey: relayKey.publicKey, address: HostPort(host: "127.0.0.1", port: UInt16(port)))])
        try until("relay session up") { m.relaysReachableThrough == [relayKey.publicKey] }
        try until("relay counts the client") { try self.waitAsync { await relay.snapshot().clients } == 1 }
        return (m, relay)
    }

    private func until(_ what: String, seconds: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try condition() { return }
            usleep(10_000)
        }
        XCTFail("timed out: \(what)")
        throw CancellationError()
    }

    /// A relay session whose local address left the uplink is closed and redialled at once
    /// (without the change nothing would close it: the loopback connection stays fine).
    func testRelaySessionOnAVanishedAddressIsRedialledAtOnce() throws {
        let (client, relay) = try relayed()
        let pool = try XCTUnwrap(client.relayPool)
        XCTAssertEqual(pool.sessionsUp, 1)
        let reaction = client.uplinkChanged(try change(vanishing: "127.0.0.1"))
        XCTAssertEqual(reaction.probed, 1)
        let start = ContinuousClock.now
        try until("a new relay session") { pool.sessionsUp == 2 && client.relaysReachableThrough.count == 1 }
        print("relay session redialled, up again \(ContinuousClock.now - start) after the change")
        try until("the relay serves the new session") { try self.waitAsync { await relay.snapshot().clients } == 1 }
        _ = try? waitAsync { await relay.stop() }
    }

    /// A relay session on a kept address is probed (PING) and, answered, stays the same session.
    func testRelaySessionOnAKeptAddressIsProbedAndStays() throws {
        let (client, relay) = try relayed()
        let pool = try XCTUnwrap(client.relayPool)
        let reaction = client.uplinkChanged(try change(vanishing: "10.9.9.9"))
        XCTAssertEqual(reaction.probed, 1)
        usleep(UInt32(TransportManager.uplinkProbeTimeout.nanoseconds / 1000) + 500_000)
        XCTAssertEqual(client.relaysReachableThrough.count, 1)
        XCTAssertEqual(pool.sessionsUp, 1, "the same session: the relay answered the PING")
        _ = try? waitAsync { await relay.stop() }
    }

    private func waitAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let promise = group.next().makePromise(of: T.self)
        promise.completeWithTask(body)
        return try promise.futureResult.wait()
    }
}
