#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireIO
import SkywireTestSupport
import XCTest
@testable import SkywireTransport

/// Two transport managers over sudph on loopback, with a receiver that keeps every buffer it is
/// given until the stream ends (as a stream whose app socket is not writable keeps its slices).
/// `SudphPeer` copies each received in-order frame into one reused buffer: the bytes a stream
/// still holds must never be overwritten by the frames after them.
final class TransportManagerSudphTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    private var managers: [TransportManager] = []
    static let holdPort: UInt16 = 7
    /// Several hundred 1200-byte DATA frames, within one stream window (256 KiB).
    static let payloadBytes = 200 * 1024

    override func tearDown() async throws {
        for m in managers { await m.shutdown() }
        managers = []
        try await group.shutdownGracefully()
    }

    /// A manager with sudph on a free loopback port (port 0 turns sudph off).
    private func manager() throws -> TransportManager {
        let sudphPort = Int(try unusedLoopbackPort(Int32(SOCK_DGRAM.rawValue)))
        var settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1",
                                         stcprPort: 0, sudphPort: sudphPort, peers: [:])
        settings.handshakeTimeout = 2
        let m = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        managers.append(m)
        return m
    }

    private func waitAsync<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let promise = group.next().makePromise(of: T.self)
        promise.completeWithTask(body)
        return try promise.futureResult.wait()
    }

    func testBuffersAStreamKeepsAreNotOverwrittenByLaterFrames() throws {
        let server = try manager()
        let router = HoldingRouter()
        server.router = router
        try waitAsync { try await server.start() }
        let address = try XCTUnwrap(server.sudphListenAddress)
        let client = try manager()
        try waitAsync { try await client.start() }   // binds its sudph socket
        let info = try waitAsync { try await client.add(remote: server.localKey, type: .sudph, address: address) }
        XCTAssertEqual(info.state, .up)

        let payload = (0..<Self.payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 9) }
        let stream = try client.openStream(to: server.localKey, port: Self.holdPort, sourcePort: 100).wait()
        let collector = CopyingCollector()
        let transfer = LoopTransfer(value: stream)
        try stream.eventLoop.submit {
            transfer.value.setDelegate(collector)
            transfer.value.write(ByteBuffer(bytes: payload))
            transfer.value.finish()
        }.wait()
        let back = try collector.done.futureResult.wait()
        XCTAssertEqual(back.count, payload.count)
        XCTAssertTrue(back == payload, "the held buffers changed after they were delivered")
        // The buffers were held: more than one arrived (each frame is at most 1200 bytes).
        XCTAssertGreaterThan(router.buffersHeld.withLockedValue { $0 }, Self.payloadBytes / 1200)
    }
}

private final class HoldingRouter: AppRouter, @unchecked Sendable {
    // @unchecked Sendable: `buffersHeld` is a locked box; `holders` is guarded by `lock`.
    let buffersHeld = NIOLockedValueBox(0)
    private let lock = NIOLock()
    private var holders: [ObjectIdentifier: Holder] = [:]

    func route(stream: AppStream, destinationPort: UInt16) -> AppStreamResetCode? {
        guard destinationPort == TransportManagerSudphTests.holdPort else { return .noSuchPort }
        let holder = Holder { [weak self] id, count in
            self?.buffersHeld.withLockedValue { $0 += count }
            self?.lock.withLock { _ = self?.holders.removeValue(forKey: id) }
        }
        lock.withLock { holders[ObjectIdentifier(holder)] = holder }
        stream.setDelegate(holder)
        return nil
    }

    func route(datagram: ByteBuffer, from: PublicKey, destinationPort: UInt16, sourcePort: UInt16) {}
}

/// Keeps every buffer it receives, uncopied; at the peer's FIN writes them all back and finishes.
private final class Holder: AppStreamDelegate {
    private var held: [ByteBuffer] = []
    private let done: (ObjectIdentifier, Int) -> Void
    init(done: @escaping (ObjectIdentifier, Int) -> Void) { self.done = done }
    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) { held.append(data) }
    func appStreamDidReceiveFinish(_ stream: AppStream) {
        for buffer in held { stream.write(buffer) }
        stream.finish()
        done(ObjectIdentifier(self), held.count)
        held = []
    }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { done(ObjectIdentifier(self), held.count) }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}

/// Collects what comes back (copied at once) until the peer's FIN.
private final class CopyingCollector: AppStreamDelegate, @unchecked Sendable {
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
