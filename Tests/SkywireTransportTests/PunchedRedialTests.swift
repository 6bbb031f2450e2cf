import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
@testable import SkywireTransport
import SkywireTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A resolver double that knows one key at one sudph address and counts its punches.
private final class OneKeyResolver: PeerResolver {
    let name = "test discovery"
    let key: PublicKey
    let at: HostPort
    let punches = NIOLockedValueBox(0)
    init(key: PublicKey, at: HostPort) {
        self.key = key
        self.at = at
    }
    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        guard key == self.key else { throw TransportError(.notFound, "\(key.hex) not found in \(name)") }
        return ResolvedPeer(stcpr: [], sudph: at)
    }
    func punch(_ key: PublicKey) async throws -> HostPort {
        punches.withLockedValue { $0 += 1 }
        return at
    }
}

/// A transport that came up after a punch and is lost is redialled after a new punch (the peer's
/// NAT may have dropped the old mapping), with the punched handshake schedule.
final class PunchedRedialTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    private func unusedUDPPort() throws -> Int { Int(try unusedLoopbackPort(Int32(SOCK_DGRAM.rawValue))) }

    private func manager(sudphPort: Int) -> TransportManager {
        var settings = TransportSettings(identity: KeyPair.generate(), listenHost: "127.0.0.1", stcprPort: 0,
                                         sudphPort: sudphPort, peers: [:])
        settings.handshakeTimeout = 2
        return TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
    }

    func testALostPunchedTransportIsPunchedAgainBeforeItsRedial() async throws {
        let exit = manager(sudphPort: try unusedUDPPort())
        try await exit.start()
        let at = try HostPort.parse(try XCTUnwrap(exit.sudphListenAddress)).get()
        let a = manager(sudphPort: try unusedUDPPort())
        try await a.start()
        let resolver = OneKeyResolver(key: exit.localKey, at: at)
        a.resolver = resolver
        let first = try await a.connect(remote: exit.localKey)
        XCTAssertEqual(resolver.punches.withLockedValue { $0 }, 1)
        let entry = try XCTUnwrap(a.lock.withLock { a.entries[first.id] })
        XCTAssertTrue(entry.punched)
        XCTAssertEqual(entry.handshakeSchedule, .punched)
        let before = try XCTUnwrap(first.establishedAt)
        // The link is lost: the wanted entry redials after its backoff (1 s ± 20 %).
        entry.linkClosed(reason: "test: link lost")
        var redialled = false
        for _ in 0..<160 {   // bounded: 8 s
            let info = entry.info
            if resolver.punches.withLockedValue({ $0 }) == 2, info.state == .up { redialled = true; break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertTrue(redialled, "\(entry.info)")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(entry.info.establishedAt), before)
        XCTAssertEqual(a.list().map(\.id), [first.id])
        await a.shutdown()
        await exit.shutdown()
    }
}
