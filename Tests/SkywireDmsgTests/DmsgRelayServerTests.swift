import Logging
import NIOCore
import XCTest
import SkywireCrypto
import SkywireDmsg
import SkywireIO
@testable import SkywireTransport

/// `DmsgRelayServer` with `DmsgClientSession`s over loopback (PROTOCOL.md §7): the client API
/// dmsgtp builds the `dmsg` transport on, against the real relay.
final class DmsgRelayServerTests: XCTestCase {
    private var loop: EpollEventLoop!
    private var server: DmsgRelayServer!
    private var port = 0
    private let relayKey = KeyPair.generate()
    private var logger: Logger { var l = Logger(label: "dmsg-test"); l.logLevel = .warning; return l }

    private func startRelay(_ limits: DmsgRelayServer.Limits = .init(), clients: DmsgClientPolicy = .any) async throws {
        loop = try EpollEventLoop(name: "dmsg-test")
        server = try DmsgRelayServer(loop: loop, identity: relayKey, limits: limits, clients: clients, logger: logger)
        let bound = try await server.start(address: SocketAddress(ipAddress: "127.0.0.1", port: 0))
        port = try XCTUnwrap(bound?.port)
    }

    override func tearDown() async throws {
        await server?.stop()
    }

    /// Everything a test client saw, filled on the loop and read after `wait`.
    final class Client: @unchecked Sendable {
        // @unchecked Sendable: written on the test's EpollEventLoop only, read after a hop there.
        let keyPair = KeyPair.generate()
        var session: DmsgClientSession?
        var up = false
        var closedReason: String?
        var incoming: [DmsgStream] = []
        var echo = true
        var refuse = false
    }

    private func connect(_ client: Client) async throws {
        try await dial(client)
        try await until("\(client.keyPair.publicKey.short) established") { client.up }
        // The relay admits the client once it has read the confirmation.
        try await until("relay counts the client") { await self.server.snapshot().clients >= 1 }
    }

    /// Starts `client`'s session (no wait).
    private func dial(_ client: Client) async throws {
        let (relay, relayPort, log) = (relayKey.publicKey, port, logger)
        try await loop.submit {
            let hooks = DmsgClientSession.Hooks(
                incoming: { stream in
                    if client.refuse { return false }
                    client.incoming.append(stream)
                    if client.echo { stream.onData = { stream.write($0) } }
                    return true
                },
                established: { client.up = true },
                closed: { client.closedReason = $0 })
            client.session = try DmsgClientSession(loop: self.loop, identity: client.keyPair, relay: relay, host: "127.0.0.1",
                                                   port: relayPort, logger: log, hooks: hooks)
        }.get()
    }

    private func until(_ what: String, timeout: Double = 10, _ condition: @escaping () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("timed out waiting for: \(what)")
        throw CancellationError()
    }

    /// Opens a stream from `from` to `to`; the result is confined to the loop (`LoopTransfer`).
    private func open(_ from: Client, to: Client) async throws -> LoopTransfer<Result<DmsgStream, DmsgOpenError>> {
        let promise = loop.makePromise(of: LoopTransfer<Result<DmsgStream, DmsgOpenError>>.self)
        let target = to.keyPair.publicKey
        loop.execute { from.session?.open(to: target) { promise.succeed(LoopTransfer(value: $0)) } }
        return try await promise.futureResult.get()
    }

    func testStreamCarriesBytesBothWaysAndCloses() async throws {
        try await startRelay()
        let a = Client(), b = Client()
        try await connect(a)
        try await connect(b)
        try await until("two clients") { await self.server.snapshot().clients == 2 }
        let opened = try await open(a, to: b)
        let total = 3 << 20
        final class Box: @unchecked Sendable {
            // @unchecked Sendable: touched on the loop only.
            var received: [UInt8] = []
            var closed: String?
        }
        let box = Box()
        let pattern = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 11)) }
        try await loop.submit {
            guard case .success(let stream) = opened.value else { return XCTFail("open failed: \(opened.value)") }
            XCTAssertEqual(b.incoming.first?.remoteKey, a.keyPair.publicKey, "the relay names the opener's key")
            stream.onData = { box.received += Array($0.readableBytesView) }
            stream.onClosed = { box.closed = $0 }
            var offset = 0
            func fill() {
                while offset < total {
                    let n = min(50_000, total - offset)
                    let more = stream.write(ByteBuffer(bytes: pattern[offset..<offset + n]))
                    offset += n
                    if !more { return }
                }
            }
            stream.onWritable = fill
            fill()
        }.get()
        try await until("echo of \(total) bytes", timeout: 60) { try await self.loop.submit { box.received.count >= total }.get() }
        let received = try await loop.submit { box.received }.get()
        XCTAssertEqual(received.count, total)
        XCTAssertTrue(received == pattern, "the echo is the bytes sent, in order")
        var stats = await server.snapshot()
        XCTAssertEqual(stats.streams, 1)
        XCTAssertEqual(stats.core.bytesOpenerToAcceptor, UInt64(total))
        XCTAssertEqual(stats.core.bytesAcceptorToOpener, UInt64(total))
        // B closes: A's stream ends, the relay forgets it.
        try await loop.submit { b.incoming.first?.close() }.get()
        try await until("A sees the close") { try await self.loop.submit { box.closed != nil }.get() }
        stats = await server.snapshot()
        XCTAssertEqual(stats.streams, 0)
    }

    /// A receiver that pauses reading gets at most its window; the sender stops (its writes queue)
    /// and everything arrives once reading resumes.
    func testPausedReaderBoundsWhatIsSent() async throws {
        try await startRelay()
        let a = Client(), b = Client()
        b.echo = false
        try await connect(a)
        try await connect(b)
        let opened = try await open(a, to: b)
        final class Box: @unchecked Sendable { var received = 0 } // @unchecked Sendable: loop only.
        let box = Box()
        let total = 2 << 20
        try await loop.submit {
            guard case .success(let stream) = opened.value, let incoming = b.incoming.first else { return XCTFail("open failed") }
            incoming.pauseReading()
            incoming.onData = { box.received += $0.readableBytes }
            var offset = 0
            func fill() {
                while offset < total {
                    offset += 65536
                    if !stream.write(ByteBuffer(repeating: 0xAB, count: 65536)) { return }
                }
            }
            stream.onWritable = fill
            fill()
        }.get()
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let whilePaused = try await loop.submit { box.received }.get()
        XCTAssertEqual(whilePaused, Int(DmsgClientSession.streamWindow), "a paused reader receives exactly its window")
        try await loop.submit { b.incoming.first?.resumeReading() }.get()
        try await until("everything arrives after resume", timeout: 30) { try await self.loop.submit { box.received == total }.get() }
    }

    func testOpenRefusals() async throws {
        try await startRelay()
        let a = Client(), b = Client(), absent = Client()
        b.refuse = true
        try await connect(a)
        try await connect(b)
        guard case .failure(.rejected(.noSession)) = try await open(a, to: absent).value else { return XCTFail("absent key opened") }
        guard case .failure(.rejected(.refused)) = try await open(a, to: b).value else { return XCTFail("refused stream opened") }
        let stats = await server.snapshot()
        XCTAssertEqual(stats.core.refusals, ["no-session": 1, "refused": 1])
    }

    func testSessionEndClosesItsStreams() async throws {
        try await startRelay()
        let a = Client(), b = Client()
        try await connect(a)
        try await connect(b)
        let opened = try await open(a, to: b)
        final class Box: @unchecked Sendable { var closed: String? } // @unchecked Sendable: loop only.
        let box = Box()
        try await loop.submit {
            guard case .success(let stream) = opened.value else { return XCTFail("open failed") }
            stream.onClosed = { box.closed = $0 }
        }.get()
        try await loop.submit { b.session?.close(reason: "test") }.get()
        try await until("A's stream ends") { try await self.loop.submit { box.closed != nil }.get() }
        let reason = try await loop.submit { box.closed }.get()
        XCTAssertEqual(reason, "the peer's relay session ended")
    }

    func testIdleSessionIsClosed() async throws {
        var limits = DmsgRelayServer.Limits()
        limits.idleTimeout = .milliseconds(600)
        try await startRelay(limits)
        let a = Client()
        try await connect(a)
        // Clients PING every 30 s: this one stays silent for longer than the relay allows.
        try await until("the relay closes the idle session") { try await self.loop.submit { a.closedReason != nil }.get() }
        let stats = await server.snapshot()
        XCTAssertEqual(stats.idleClosed, 1)
        XCTAssertEqual(stats.clients, 0)
    }

    func testWrongRelayKeyNeverAuthenticates() async throws {
        try await startRelay()
        let a = Client()
        let log = logger
        let wrongRelay = KeyPair.generate().publicKey
        try await loop.submit {
            a.session = try DmsgClientSession(loop: self.loop, identity: a.keyPair, relay: wrongRelay, host: "127.0.0.1", port: self.port,
                                              logger: log, hooks: .init(incoming: { _ in false }, established: { a.up = true },
                                                                        closed: { a.closedReason = $0 }))
        }.get()
        try await until("the relay refuses") { try await self.loop.submit { a.closedReason != nil }.get() }
        let up = try await loop.submit { a.up }.get()
        XCTAssertFalse(up)
        let stats = await server.snapshot()
        XCTAssertEqual(stats.handshakeRefusals["mac1"], 1, "message 1 keyed to another relay fails mac1 before any DH")
        XCTAssertEqual(stats.clients, 0)
    }

    /// Closed by default (docs/dmsg.md): an unlisted key is refused right after its handshake with
    /// REFUSED (the client reports why), and no session of it appears; a listed key is served.
    func testUnlistedKeyIsRefusedAfterTheHandshake() async throws {
        let listed = Client(), unlisted = Client()
        try await startRelay(clients: .keys([listed.keyPair.publicKey]))
        try await connect(listed)
        try await dial(unlisted)
        try await until("the unlisted client is closed") { try await self.loop.submit { unlisted.closedReason != nil }.get() }
        let reason = try await loop.submit { unlisted.closedReason }.get()
        XCTAssertEqual(reason, DmsgSessionRefusal.notListed.description)
        let stats = await server.snapshot()
        XCTAssertEqual(stats.refusedKeys, 1)
        XCTAssertEqual(stats.clients, 1, "only the listed client holds a session")
        XCTAssertEqual(stats.clientPolicy, "1 listed key")
        // The listed client cannot reach the refused key: it has no session.
        guard case .failure(.rejected(.noSession)) = try await open(listed, to: unlisted).value else {
            return XCTFail("a stream reached a refused key")
        }
    }

    func testNoClientListRefusesEveryone() async throws {
        try await startRelay(clients: .nobody)
        let a = Client()
        try await dial(a)
        try await until("the client is refused") { try await self.loop.submit { a.closedReason != nil }.get() }
        let stats = await server.snapshot()
        XCTAssertEqual(stats.refusedKeys, 1)
        XCTAssertEqual(stats.clients, 0)
    }

    /// A new list (SIGHUP) cuts off sessions whose key it no longer lists, and serves added keys.
    func testNewClientListClosesDelistedSessions() async throws {
        let a = Client(), b = Client()
        try await startRelay(clients: .keys([a.keyPair.publicKey]))
        try await connect(a)
        await server.setClients(.keys([b.keyPair.publicKey]))
        try await until("A is cut off") { try await self.loop.submit { a.closedReason != nil }.get() }
        let reason = try await loop.submit { a.closedReason }.get()
        XCTAssertEqual(reason, DmsgSessionRefusal.notListed.description)
        try await connect(b)
        let stats = await server.snapshot()
        XCTAssertEqual(stats.clients, 1)
        XCTAssertEqual(stats.refusedKeys, 1)
    }

    /// Beyond `maxClients` the client is told the relay is full.
    func testFullRelaySaysSo() async throws {
        var limits = DmsgRelayServer.Limits()
        limits.core.maxClients = 1
        try await startRelay(limits)
        let a = Client(), b = Client()
        try await connect(a)
        try await dial(b)
        try await until("B is refused") { try await self.loop.submit { b.closedReason != nil }.get() }
        let reason = try await loop.submit { b.closedReason }.get()
        XCTAssertEqual(reason, DmsgSessionRefusal.full.description)
    }
}
