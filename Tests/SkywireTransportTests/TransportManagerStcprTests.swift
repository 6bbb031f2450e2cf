#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireTestSupport
import XCTest
@testable import SkywireTransport
import SkywireIO

/// Two transport managers over stcpr on loopback: the raw datapath end to end (listener, dial,
/// `RawStcprLink`, mux streams on `EpollEventLoop`s) and the redial after the peer restarts; and
/// over sudph, held stream buffers against `SudphPeer`'s reused frame buffer.
final class TransportManagerStcprTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    private var managers: [TransportManager] = []
    static let echoPort: UInt16 = 7

    override func tearDown() async throws {
        for m in managers { await m.shutdown() }
        managers = []
        try await group.shutdownGracefully()
    }

    /// Port 0: no stcpr listener, no sudph socket.
    private func manager(identity: KeyPair = .generate(), stcprPort: Int = 0, sudphPort: Int = 0) -> TransportManager {
        var settings = TransportSettings(identity: identity, listenHost: "127.0.0.1",
                                         stcprPort: stcprPort, sudphPort: sudphPort, peers: [:])
        settings.handshakeTimeout = 2
        let m = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        managers.append(m)
        return m
    }

    /// Sends `payload` on a new stream to `remote`'s echo port, finishes, and returns what came back
    /// before the echo's FIN, with whether the stream ran on an `EpollEventLoop`.
    private func echo(_ payload: [UInt8], via m: TransportManager, to remote: PublicKey) throws -> ([UInt8], Bool) {
        let stream = try m.openStream(to: remote, port: Self.echoPort, sourcePort: 100).wait()
        let collector = EchoCollector()
        let transfer = LoopTransfer(value: stream)
        let loop = stream.eventLoop
        try loop.submit {
            transfer.value.setDelegate(collector)
            transfer.value.write(ByteBuffer(bytes: payload))
            transfer.value.finish()
        }.wait()
        let got = try collector.done.futureResult.wait()
        return (got, loop is EpollEventLoop)
    }

    func testStreamsEchoOverStcprOnDatapathLoopsAtBothEnds() throws {
        let server = manager(stcprPort: Int(try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))))
        let router = EchoRouter()
        server.router = router
        try waitAsync { try await server.start() }
        let address = try XCTUnwrap(server.stcprListenAddress)
        let client = manager()
        let info = try waitAsync { try await client.add(remote: server.localKey, type: .stcpr, address: address) }
        XCTAssertEqual(info.state, .up)
        XCTAssertEqual(info.remoteAddress, address)
        for round in 0..<4 {
            let payload = (0..<(64 * 1024 + round)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ round) }
            let (back, raw) = try echo(payload, via: client, to: server.localKey)
            XCTAssertEqual(back, payload, "round \(round)")
            XCTAssertTrue(raw, "the dialling end's stream is on a datapath loop")
        }
        XCTAssertEqual(router.streamsOnDatapathLoops.withLockedValue { $0 }, [true, true, true, true])
        // One transport each way: dialled (wanted) at the client, accepted at the server.
        let inbound = server.list()
        XCTAssertEqual(inbound.count, 1)
        XCTAssertEqual(inbound.first?.remoteKey, client.localKey)
        XCTAssertEqual(inbound.first?.initiator, false)
        XCTAssertEqual(client.list().map(\.initiator), [true])
    }

    /// The receiving `SudphPeer` copies each in-order frame into one reused buffer. An app that
    /// keeps the buffers it was given (as a stream whose socket is not writable keeps its slices)
    /// must find them unchanged after the later frames arrived.
    func testBuffersKeptOverSudphAreNotOverwrittenByLaterFrames() throws {
        let server = manager(sudphPort: Int(try unusedLoopbackPort(Int32(SOCK_DGRAM.rawValue))))
        let router = EchoRouter(holdUntilFinish: true)
        server.router = router
        try waitAsync { try await server.start() }
        let address = try XCTUnwrap(server.sudphListenAddress)
        let client = manager(sudphPort: Int(try unusedLoopbackPort(Int32(SOCK_DGRAM.rawValue))))
        try waitAsync { try await client.start() }   // binds its sudph socket
        let info = try waitAsync { try await client.add(remote: server.localKey, type: .sudph, address: address) }
        XCTAssertEqual(info.state, .up)
        // Some 170 DATA frames of at most 1200 bytes, within one stream window (256 KiB).
        let size = 200 * 1024
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 9) }
        let (back, _) = try echo(payload, via: client, to: server.localKey)
        XCTAssertEqual(back.count, payload.count)
        XCTAssertTrue(back == payload, "a held buffer changed after it was delivered")
        XCTAssertGreaterThan(router.buffersHeld.withLockedValue { $0 }, size / SudphPeer.maxDataPayload)
    }

    func testDialledTransportIsRedialledWhenThePeerComesBack() throws {
        let port = Int(try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue)))
        let identity = KeyPair.generate()
        let first = manager(identity: identity, stcprPort: port)
        first.router = EchoRouter()
        try waitAsync { try await first.start() }
        let client = manager()
        _ = try waitAsync { try await client.add(remote: identity.publicKey, type: .stcpr, address: "127.0.0.1:\(port)") }
        XCTAssertEqual(try echo([1, 2, 3], via: client, to: identity.publicKey).0, [1, 2, 3])

        try waitAsync { await first.shutdown() }
        try waitUntil("the client sees the transport down") { client.list().first?.state != .up }
        XCTAssertEqual(client.list().count, 1, "a wanted transport stays listed while it redials")

        let second = manager(identity: identity, stcprPort: port)
        second.router = EchoRouter()
        try waitAsync { try await second.start() }
        // Backoff starts at 1 s (±20 %); a refused redial doubles it to 2 s.
        try waitUntil("the client redials", seconds: 8) { client.list().first?.state == .up }
        XCTAssertEqual(try echo([4, 5, 6], via: client, to: identity.publicKey).0, [4, 5, 6])
    }

    // MARK: Helpers

    private func waitUntil(_ what: String, seconds: Double = 5, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return }
            usleep(20_000)
        }
        XCTFail("timed out: \(what)")
        throw CancellationError()
    }

    private func waitAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let promise = group.next().makePromise(of: T.self)
        promise.completeWithTask(body)
        return try promise.futureResult.wait()
    }

    // MARK: dmsg (through a relay double: the manager's side of issue 18)

    /// A manager without listeners whose only path is `relay`.
    private func relayedManager(_ relay: FakeRelay, resolver: PeerResolver? = nil) throws -> TransportManager {
        let m = manager()
        m.relaySessionFactory = relay.factory(for: m.localKey)
        m.resolver = resolver
        try m.startRelays([relay.server])
        try waitUntil("relay session up") { m.relaysReachableThrough == [relay.key] }
        return m
    }

    func testDmsgTransportRunsStcprInsideARelayStreamAndCarriesStreams() throws {
        let relay = FakeRelay()
        let server = try relayedManager(relay)
        server.router = EchoRouter()
        let client = try relayedManager(relay)
        let info = try waitAsync { try await client.connect(remote: server.localKey, type: .dmsg) }
        XCTAssertEqual(info.type, .dmsg)
        XCTAssertEqual(info.relayKey, relay.key)
        XCTAssertEqual(info.remoteAddress, "relay \(relay.key.short)")
        let payload = (0..<(200 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        XCTAssertEqual(try echo(payload, via: client, to: server.localKey).0, payload)
        try waitUntil("inbound dmsg transport listed") { server.list().first?.state == .up }
        let inbound = try XCTUnwrap(server.list().first)
        XCTAssertEqual(inbound.type, .dmsg)
        XCTAssertEqual(inbound.remoteKey, client.localKey)
        XCTAssertEqual(inbound.relayKey, relay.key)
        XCTAssertFalse(inbound.initiator)
    }

    /// Two relays (issue 18): the peer is only on R2, we only on R1. Its discovery entry lists
    /// R2, so the dial opens an on-demand session to R2 (address from R2's entry) and goes through it.
    func testDmsgDialOpensASessionToThePeersRelay() throws {
        let r1 = FakeRelay(), r2 = FakeRelay()
        let server = try relayedManager(r2)
        server.router = EchoRouter()
        let resolver = RelayTableResolver([server.localKey: ResolvedPeer(stcpr: [], sudph: nil, dmsg: [r2.key]),
                                           r2.key: ResolvedPeer(stcpr: [r2.server.address], sudph: nil)])
        let client = manager()
        client.relaySessionFactory = FakeRelay.factory(for: client.localKey, among: [r1, r2])
        client.resolver = resolver
        try client.startRelays([r1.server])
        try waitUntil("relay session up") { client.relaysReachableThrough == [r1.key] }
        let info = try waitAsync { try await client.connect(remote: server.localKey, type: .dmsg) }
        XCTAssertEqual(info.relayKey, r2.key)
        XCTAssertEqual(r1.opened, 0, "R1 is not tried: the peer is not listed there")
        XCTAssertEqual(r2.opened, 1)
        XCTAssertEqual(client.relayPool?.onDemandCount, 1)
        XCTAssertEqual(client.relaysReachableThrough, [r1.key], "the on-demand relay is not advertised")
        let payload = [UInt8](repeating: 9, count: 4096)
        XCTAssertEqual(try echo(payload, via: client, to: server.localKey).0, payload)
    }

    /// Without the peer's relays (no entry lists them) only our own relays are tried, and the
    /// error names each; beyond `RelayPool.maxOnDemand` on-demand sessions a peer's relay is not dialled.
    func testDmsgDialWithoutThePeersRelaysAndTheOnDemandLimit() throws {
        let own = FakeRelay()
        let others = (0...RelayPool.maxOnDemand).map { _ in FakeRelay() }
        let servers = try others.map { relay -> TransportManager in
            let m = try relayedManager(relay)
            m.router = EchoRouter()
            return m
        }
        var table: [PublicKey: ResolvedPeer] = [:]
        for (relay, server) in zip(others, servers) {
            table[server.localKey] = ResolvedPeer(stcpr: [], sudph: nil, dmsg: [relay.key])
            table[relay.key] = ResolvedPeer(stcpr: [relay.server.address], sudph: nil)
        }
        let unlisted = try relayedManager(others[0])
        let client = manager()
        client.relaySessionFactory = FakeRelay.factory(for: client.localKey, among: [own] + others)
        client.resolver = RelayTableResolver(table)
        try client.startRelays([own.server])
        try waitUntil("relay session up") { client.relaysReachableThrough == [own.key] }
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: unlisted.localKey, type: .dmsg) }) { error in
            XCTAssertTrue("\(error)".contains("relay \(own.key.short)"), "\(error)")
        }
        for server in servers.prefix(RelayPool.maxOnDemand) {
            _ = try waitAsync { try await client.connect(remote: server.localKey, type: .dmsg) }
        }
        XCTAssertEqual(client.relayPool?.onDemandCount, RelayPool.maxOnDemand)
        let last = try XCTUnwrap(servers.last)
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: last.localKey, type: .dmsg) }) { error in
            XCTAssertTrue("\(error)".contains("on-demand relay sessions are open already"), "\(error)")
        }
        XCTAssertEqual(others.last?.opened, 0)
    }

    /// By key alone with no address anywhere: the direct steps fail and are named, dmsg succeeds.
    func testKeyAloneFallsBackToDmsgAfterTheDirectStepsFail() throws {
        let relay = FakeRelay()
        let server = try relayedManager(relay)
        server.router = EchoRouter()
        let closedPort = try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))
        let resolver = StcprOnlyResolver(address: HostPort(host: "127.0.0.1", port: closedPort))
        let client = try relayedManager(relay, resolver: resolver)
        let info = try waitAsync { try await client.connect(remote: server.localKey, within: 10) }
        XCTAssertEqual(info.type, .dmsg)
        // The direct step's lookup, then the dmsg step's (the peer's relays, `dmsg` of its entry).
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, 2, "the direct step came first")
        XCTAssertEqual(relay.opened, 1)

        // A key the relay has no session for: the error names the stcpr step and the dmsg step.
        let absent = KeyPair.generate().publicKey
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: absent, within: 10) }) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("stcpr 127.0.0.1:\(closedPort)"), text)
            XCTAssertTrue(text.contains("dmsg: "), text)
            XCTAssertTrue(text.contains("no session for"), text)
        }
    }

    // MARK: Moving to a direct transport that comes up later (issue 18)

    /// A client with `relay` and `resolver` whose background direct retry runs on `schedule`.
    private func retryingManager(_ relay: FakeRelay, resolver: PeerResolver, schedule: DirectRetrySchedule) throws -> TransportManager {
        var settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        settings.handshakeTimeout = 2
        settings.directRetry = schedule
        let m = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        managers.append(m)
        m.relaySessionFactory = relay.factory(for: m.localKey)
        m.resolver = resolver
        try m.startRelays([relay.server])
        try waitUntil("relay session up") { m.relaysReachableThrough == [relay.key] }
        return m
    }

    private func info(_ m: TransportManager, _ type: TransportType) -> TransportInfo? {
        m.list().first { $0.type == type && $0.state == .up }
    }

    /// Reached only through the relay (the peer's stcpr address refuses), the client retries a
    /// direct transport in the background; once the address works, a new stream takes stcpr,
    /// while a stream opened over the relay before runs on to its end there.
    func testNewStreamsMoveToADirectTransportThatComesUpLater() throws {
        let relay = FakeRelay()
        let server = manager(stcprPort: Int(try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))))
        server.router = EchoRouter()
        server.relaySessionFactory = relay.factory(for: server.localKey)
        try server.startRelays([relay.server])
        try waitAsync { try await server.start() }
        let listening = try XCTUnwrap(server.stcprListenAddress.flatMap { try? HostPort.parse($0).get() })
        let refusing = HostPort(host: "127.0.0.1", port: try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue)))
        let resolver = StcprOnlyResolver(address: refusing)
        let client = try retryingManager(relay, resolver: resolver,
                                         schedule: DirectRetrySchedule(initial: .milliseconds(200), maximum: .milliseconds(400)))
        XCTAssertEqual(try waitAsync { try await client.connect(remote: server.localKey, within: 10) }.type, .dmsg)

        // A stream over the relay, left open.
        let first = (0..<(128 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        let second = (0..<(96 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 1) }
        let old = try client.openStream(to: server.localKey, port: Self.echoPort, sourcePort: 100).wait()
        let oldCollector = EchoCollector()
        let oldStream = LoopTransfer(value: old)
        try old.eventLoop.submit {
            oldStream.value.setDelegate(oldCollector)
            oldStream.value.write(ByteBuffer(bytes: first))
        }.wait()
        XCTAssertEqual(client.directRetryPeers, [server.localKey], "the relay path is in use: direct retried in the background")
        try waitUntil("retried while the address refuses") { resolver.asked.withLockedValue { $0 } >= 3 }
        XCTAssertNil(info(client, .stcpr))

        // The peer's address now works: the next attempt brings stcpr up, without user action.
        resolver.address.withLockedValue { $0 = listening }
        try waitUntil("a direct transport came up", seconds: 10) { self.info(client, .stcpr) != nil }
        XCTAssertNotNil(info(client, .dmsg), "tp ls shows both")
        try waitUntil("the retry stopped") { client.directRetryPeers.isEmpty }

        let relayBefore = try XCTUnwrap(info(client, .dmsg)).bytesSent
        let directBefore = try XCTUnwrap(info(client, .stcpr)).bytesSent
        let payload = (0..<(256 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        XCTAssertEqual(try echo(payload, via: client, to: server.localKey).0, payload)
        let relayAfterNew = try XCTUnwrap(info(client, .dmsg)).bytesSent
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(info(client, .stcpr)).bytesSent - directBefore, UInt64(payload.count),
                                    "the new stream went over stcpr")
        XCTAssertLessThan(relayAfterNew - relayBefore, UInt64(payload.count / 4), "not over the relay")

        // The old stream still runs over the relay to its end.
        try old.eventLoop.submit {
            oldStream.value.write(ByteBuffer(bytes: second))
            oldStream.value.finish()
        }.wait()
        XCTAssertEqual(try oldCollector.done.futureResult.wait(), first + second)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(info(client, .dmsg)).bytesSent - relayAfterNew, UInt64(second.count),
                                    "the old stream's rest crossed the relay")
    }

    /// The retry stops when the relay path is idle (no lookups after it), starts again when an
    /// app opens a stream over the relay, and stops again once that stream ended.
    func testTheDirectRetryStopsWhenTheRelayPathIsIdle() throws {
        let relay = FakeRelay()
        let server = try relayedManager(relay)
        server.router = EchoRouter()
        let resolver = StcprOnlyResolver(address: HostPort(host: "127.0.0.1", port: try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))))
        let client = try retryingManager(relay, resolver: resolver,
                                         schedule: DirectRetrySchedule(initial: .milliseconds(100), maximum: .milliseconds(200)))
        XCTAssertEqual(try waitAsync { try await client.connect(remote: server.localKey, within: 10) }.type, .dmsg)
        try waitUntil("idle: the retry stopped") { client.directRetryPeers.isEmpty }
        let asked = resolver.asked.withLockedValue { $0 }
        usleep(600_000)
        XCTAssertEqual(resolver.asked.withLockedValue { $0 }, asked, "no lookups while idle")

        let stream = try client.openStream(to: server.localKey, port: Self.echoPort, sourcePort: 100).wait()
        let collector = EchoCollector()
        let transfer = LoopTransfer(value: stream)
        try stream.eventLoop.submit { transfer.value.setDelegate(collector) }.wait()
        XCTAssertEqual(client.directRetryPeers, [server.localKey])
        try waitUntil("retried while the stream is open") { resolver.asked.withLockedValue { $0 } >= asked + 2 }
        try stream.eventLoop.submit { transfer.value.finish() }.wait()
        _ = try collector.done.futureResult.wait()
        try waitUntil("stopped after the stream ended") { client.directRetryPeers.isEmpty }
    }

    /// End to end through the real relay server (`DmsgRelayServer` on loopback) and client
    /// (`DmsgClientSession`): a dmsg transport carries 1 MiB each way through a mux stream.
    func testDmsgTransportThroughTheRelayServerOnLoopback() throws {
        let relayLoop = try EpollEventLoop(name: "relay")
        defer { relayLoop.shutdown() }
        let relayKey = KeyPair.generate()
        let relay = try DmsgRelayServer(loop: relayLoop, identity: relayKey, clients: .any, logger: Logger(label: "relay"))
        let bound = try waitAsync { try await relay.start(address: SocketAddress(ipAddress: "127.0.0.1", port: 0)) }
        defer { _ = try? waitAsync { await relay.stop() } }
        let address = DmsgServerAddress(publicKey: relayKey.publicKey,
                                        address: HostPort(host: "127.0.0.1", port: UInt16(try XCTUnwrap(bound?.port))))
        let server = manager(), client = manager()
        server.router = EchoRouter()
        for m in [server, client] {
            try m.startRelays([address])
            try waitUntil("relay session up") { m.relaysReachableThrough == [relayKey.publicKey] }
        }
        let info = try waitAsync { try await client.connect(remote: server.localKey, type: .dmsg) }
        XCTAssertEqual(info.type, .dmsg)
        XCTAssertEqual(info.relayKey, relayKey.publicKey)
        let payload = (0..<(1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ ($0 >> 9)) }
        XCTAssertEqual(try echo(payload, via: client, to: server.localKey).0, payload)
        let stats = try waitAsync { await relay.snapshot() }
        XCTAssertEqual(stats.clients, 2)
        XCTAssertGreaterThan(stats.bytesIn, UInt64(2 * payload.count), "both directions crossed the relay")
    }

    /// Without relay servers, dialling by key alone fails as before (no dmsg step), and `-t dmsg`
    /// says there are no relays.
    func testWithoutRelaysThereIsNoDmsgStep() throws {
        let client = manager()
        let remote = KeyPair.generate().publicKey
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: remote, type: nil) }) { error in
            XCTAssertTrue("\(error)".contains("no discovery to ask"), "\(error)")
            XCTAssertFalse("\(error)".contains("dmsg"), "\(error)")
        }
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: remote, type: .dmsg) }) { error in
            XCTAssertTrue("\(error)".contains("no dmsg relay servers"), "\(error)")
        }
    }

    /// A relay that connects our stream to someone else: the inner handshake (mac1 keyed by the
    /// key we expect) fails, and the wrong visor gets no transport.
    func testRelayThatMisroutesAStreamCannotImpersonateThePeer() throws {
        let relay = FakeRelay()
        let wanted = try relayedManager(relay)
        let impostor = try relayedManager(relay)
        let client = try relayedManager(relay)
        relay.misrouteTo = impostor.localKey
        XCTAssertThrowsError(try waitAsync { try await client.connect(remote: wanted.localKey, type: .dmsg) }) { error in
            XCTAssertTrue("\(error)".contains("dmsg to \(wanted.localKey.hex) through a dmsg relay"), "\(error)")
        }
        XCTAssertEqual(relay.opened, 1)
        XCTAssertTrue(impostor.list().isEmpty)
        XCTAssertTrue(client.list().isEmpty)
    }
}

/// A resolver double with a fixed table.
private final class RelayTableResolver: PeerResolver {
    let name = "test discovery"
    let table: [PublicKey: ResolvedPeer]
    init(_ table: [PublicKey: ResolvedPeer]) { self.table = table }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        guard let peer = table[key] else { throw TransportError(.notFound, "\(key.short) not in the table") }
        return peer
    }
}

/// A resolver double that knows every key at one stcpr address (none for sudph) and counts lookups.
private final class StcprOnlyResolver: PeerResolver {
    let name = "test discovery"
    /// Changed by a test when the peer's address starts to work.
    let address: NIOLockedValueBox<HostPort>
    let asked = NIOLockedValueBox(0)
    init(address: HostPort) { self.address = NIOLockedValueBox(address) }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        asked.withLockedValue { $0 += 1 }
        return ResolvedPeer(stcpr: [address.withLockedValue { $0 }], sudph: nil)
    }
}

/// Echoes every stream on `TransportManagerStcprTests.echoPort` and notes whether it arrived on an
/// `EpollEventLoop`.
private final class EchoRouter: AppRouter, @unchecked Sendable {
    // @unchecked Sendable: the boxes are locked; `echoes` is guarded by `lock`.
    let streamsOnDatapathLoops = NIOLockedValueBox<[Bool]>([])
    /// Buffers the finished echoes held (`holdUntilFinish`).
    let buffersHeld = NIOLockedValueBox(0)
    private let holdUntilFinish: Bool
    private let lock = NIOLock()
    private var echoes: [ObjectIdentifier: Echo] = [:]

    init(holdUntilFinish: Bool = false) { self.holdUntilFinish = holdUntilFinish }

    func route(stream: AppStream, destinationPort: UInt16) -> AppStreamResetCode? {
        guard destinationPort == TransportManagerStcprTests.echoPort else { return .noSuchPort }
        streamsOnDatapathLoops.withLockedValue { $0.append(stream.eventLoop is EpollEventLoop) }
        let echo = Echo(holdUntilFinish: holdUntilFinish) { [weak self] id, held in
            self?.buffersHeld.withLockedValue { $0 += held }
            self?.lock.withLock { _ = self?.echoes.removeValue(forKey: id) }
        }
        lock.withLock { echoes[ObjectIdentifier(echo)] = echo }
        stream.setDelegate(echo)
        return nil
    }

    func route(datagram: ByteBuffer, from: PublicKey, destinationPort: UInt16, sourcePort: UInt16) {}
}

/// Writes back what it receives, at once or, with `holdUntilFinish`, keeping every buffer as
/// given until the peer finishes; finishes when the peer finishes. `done` gets the buffers held.
private final class Echo: AppStreamDelegate {
    private let holdUntilFinish: Bool
    private var held: [ByteBuffer] = []
    private let done: (ObjectIdentifier, Int) -> Void
    init(holdUntilFinish: Bool, done: @escaping (ObjectIdentifier, Int) -> Void) {
        self.holdUntilFinish = holdUntilFinish
        self.done = done
    }
    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        if holdUntilFinish { held.append(data) } else { stream.write(data) }
    }
    func appStreamDidReceiveFinish(_ stream: AppStream) {
        for buffer in held { stream.write(buffer) }
        stream.finish()
        done(ObjectIdentifier(self), held.count)
        held = []
    }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { done(ObjectIdentifier(self), held.count) }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}

/// Collects a stream's bytes until its FIN.
private final class EchoCollector: AppStreamDelegate, @unchecked Sendable {
    // @unchecked Sendable: `bytes` is touched only on the stream's loop; `done` is a promise.
    private var bytes: [UInt8] = []
    let done = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: [UInt8].self)
    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) { bytes += data.readableBytesView }
    func appStreamDidReceiveFinish(_ stream: AppStream) { done.succeed(bytes) }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        done.fail(TransportError(.closed, "stream reset: \(code)"))
    }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}
