import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireIO
import SkywireSystem
@testable import SkywireTransport
import SkywireTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The sudph socket is closed while VPN datapath threads send on it through their
/// `DatagramPath`s (as NIO could close it under them before it had one owner): their sends
/// fail and are counted, nothing crashes, and the descriptor number the kernel gives out next
/// never receives a datagram of theirs.
final class SudphSocketCloseTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    static let senderThreads = 6
    /// Bounds: flushes per thread, the whole test; how long the threads go on after the reuse.
    static let maxFlushesPerThread = 1_000_000
    static let timeLimit: TimeAmount = .seconds(20)
    static let sendingAfterReuse: useconds_t = 200_000
    static let vpnPort: UInt16 = 44

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    private func manager() throws -> TransportManager {
        let settings = TransportSettings(identity: KeyPair.generate(), listenHost: "127.0.0.1", stcprPort: 0,
                                         sudphPort: Int(try unusedLoopbackPort(Int32(SOCK_DGRAM.rawValue))), peers: [:])
        return TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
    }

    func testClosingTheSocketUnderSendingThreadsNeverWritesToAReusedDescriptor() async throws {
        let exit = try manager()
        try await exit.start()
        let a = try manager()
        try await a.start()
        _ = try await a.add(remote: exit.localKey, type: .sudph, address: try XCTUnwrap(exit.sudphListenAddress))
        let path = try XCTUnwrap(a.datagramPath(to: exit.localKey, destinationPort: Self.vpnPort, sourcePort: Self.vpnPort))
        let endpoint = try XCTUnwrap(a.lock.withLock { a.sudph })
        let number = try endpoint.socket.withDescriptor { $0 }

        let closed = ManagedAtomic(false)
        let stop = ManagedAtomic(false)
        let started = ManagedAtomic(0)
        let results = NIOLockedValueBox<[(sentBefore: UInt64, sentAfterClose: UInt64, refused: Bool)]>([])
        let deadline = NIODeadline.now() + Self.timeLimit
        var threads: [SystemThread] = []
        for index in 0..<Self.senderThreads {
            threads.append(try SystemThread(name: "vpn-sender\(index)") {
                // A TUN reader's loop: fill slots, seal and send them in one batch.
                let batch = DatagramBatch()
                var sentBefore: UInt64 = 0
                var sentAfterClose: UInt64 = 0
                var flushes = 0
                while flushes < Self.maxFlushesPerThread && !stop.load(ordering: .relaxed) && NIODeadline.now() < deadline {
                    flushes += 1
                    let wasClosed = closed.load(ordering: .acquiring)
                    let before = batch.sent
                    while !batch.isFull {
                        let room = batch.nextPayload
                        room.initializeMemory(as: UInt8.self, repeating: 0x45)
                        batch.commit(length: 1000, path: path)
                    }
                    batch.flush()
                    if wasClosed { sentAfterClose += batch.sent - before } else { sentBefore += batch.sent - before }
                    if sentBefore > 0, before == 0 { started.wrappingIncrement(ordering: .relaxed) }
                }
                let refused = (batch.lastError as? SystemError) == UDPSocket.closedError
                results.withLockedValue { $0.append((sentBefore, sentAfterClose, refused)) }
            })
        }
        while started.load(ordering: .relaxed) < Self.senderThreads && NIODeadline.now() < deadline { usleep(1000) }
        // The socket closes under the threads while their session is still open.
        try await endpoint.eventLoop.submit { endpoint.closeSocket() }.get()
        closed.store(true, ordering: .releasing)
        let reused = ReusedDescriptor(number)
        usleep(Self.sendingAfterReuse)
        stop.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }

        XCTAssertTrue(path.isOpen, "the session stayed up: only the socket closed")
        XCTAssertTrue(reused.taken, "the test needs the closed number reused")
        XCTAssertEqual(reused.written, [], "a send reached the reused descriptor after the close")
        let all = results.withLockedValue { $0 }
        XCTAssertEqual(all.count, Self.senderThreads)
        for result in all {
            XCTAssertGreaterThan(result.sentBefore, 0)
            XCTAssertEqual(result.sentAfterClose, 0)
            XCTAssertTrue(result.refused, "a thread's sends after the close did not fail with closedError")
        }
        await a.shutdown()
        await exit.shutdown()
    }
}
