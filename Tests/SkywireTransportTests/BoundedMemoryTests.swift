import Logging
import NIOCore
import NIOPosix
import SkywireCrypto
import XCTest
@testable import SkywireTransport
import SkywireWire

/// The pure bounds of docs/hardening.md "Bounded memory per peer": queue accounting, stcpr
/// admission, inbound transports per key.
final class BoundedMemoryTests: XCTestCase {
    // MARK: ByteQueue

    func testTinyChunksShareBuffersAndKeepTheirOrder() {
        var queue = ByteQueue()
        var expected: [UInt8] = []
        // 10,000 one-byte slices of one big storage, as 1-byte DATA frames would deliver them.
        let big = ByteBuffer(bytes: (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        for i in 0..<10_000 {
            queue.append(big.getSlice(at: i, length: 1)!)
            expected.append(UInt8(truncatingIfNeeded: i &* 7))
        }
        XCTAssertEqual(queue.bytes, 10_000)
        // The first as it came, then one chunk per `coalescedCapacity` bytes instead of one per byte.
        XCTAssertEqual(queue.chunkCount, 1 + (9_999 + ByteQueue.coalescedCapacity - 1) / ByteQueue.coalescedCapacity)
        var got: [UInt8] = []
        while let chunk = queue.popFirst() { got += chunk.readableBytesView }
        XCTAssertEqual(got, expected)
        XCTAssertEqual(queue.bytes, 0)
        XCTAssertTrue(queue.isEmpty)
    }

    func testLargeChunksAreQueuedAsTheyAreAndPartialConsumptionIsCounted() {
        var queue = ByteQueue()
        let large = ByteBuffer(bytes: [UInt8](repeating: 1, count: ByteQueue.coalesceLimit + 1))
        queue.append(large)
        queue.append(ByteBuffer(bytes: [2, 3]))
        queue.append(large)
        XCTAssertEqual(queue.chunkCount, 3)   // the small one after a large one starts its own buffer
        XCTAssertEqual(queue.bytes, 2 * large.readableBytes + 2)
        queue.consumeFirst(10)
        XCTAssertEqual(queue.bytes, 2 * large.readableBytes + 2 - 10)
        XCTAssertEqual(queue.first?.readableBytes, large.readableBytes - 10)
        _ = queue.popFirst()
        XCTAssertEqual(queue.popFirst().map { Array($0.readableBytesView) }, [2, 3])
        queue.append(ByteBuffer(bytes: [4]))   // after a large tail: a new coalescing buffer
        XCTAssertEqual(queue.chunkCount, 2)
        queue.removeAll()
        XCTAssertEqual(queue.bytes, 0)
        XCTAssertTrue(queue.isEmpty)
    }

    // MARK: StcprAdmission

    func testAdmissionCapsHalfOpenSocketsPerAddressAndInTotal() {
        let admission = StcprAdmission(limits: .init(perAddress: 4, total: 6, halfOpenPerAddress: 2, halfOpenTotal: 3))
        XCTAssertNil(admission.admit("a"))
        XCTAssertNil(admission.admit("a"))
        XCTAssertEqual(admission.admit("a"), .halfOpenPerAddress)
        XCTAssertNil(admission.admit("b"))
        XCTAssertEqual(admission.admit("c"), .halfOpenTotal)
        // A completed handshake frees its half-open slot, not its connection slot.
        admission.handshakeCompleted("a")
        admission.handshakeCompleted("a")
        XCTAssertEqual(admission.current.open, 3)
        XCTAssertEqual(admission.current.halfOpen, 1)
        XCTAssertNil(admission.admit("a"))
        XCTAssertNil(admission.admit("a"))
        admission.handshakeCompleted("a")
        XCTAssertEqual(admission.admit("a"), .perAddress)   // 4 open from a
        XCTAssertNil(admission.admit("c"))
        admission.handshakeCompleted("c")
        XCTAssertEqual(admission.admit("d"), .total)   // 6 open
        // Releases give both back; an unknown or already released address changes nothing.
        XCTAssertFalse(admission.released("a", halfOpen: true))   // a's last one is half-open
        XCTAssertFalse(admission.released("zz", halfOpen: true))
        XCTAssertEqual(admission.current.open, 5)
        XCTAssertEqual(admission.current.halfOpen, 1)
        XCTAssertNil(admission.admit("d"))
    }

    func testMassCloseAsksForATrimOnce() {
        let admission = StcprAdmission()
        let n = StcprAdmission.trimAfterReleases
        for i in 0..<n { XCTAssertNil(admission.admit("10.0.\(i / 250).\(i % 250)")) }
        var trims = 0
        for i in 0..<n where admission.released("10.0.\(i / 250).\(i % 250)", halfOpen: true) { trims += 1 }
        XCTAssertEqual(trims, 1)
        XCTAssertEqual(admission.current.open, 0)
        XCTAssertEqual(admission.current.halfOpen, 0)
    }

    func testSourceKeyGroupsIPv6By64AndUnmapsIPv4() {
        XCTAssertEqual(StcprAdmission.sourceKey("192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(StcprAdmission.sourceKey("::ffff:192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(StcprAdmission.sourceKey("2001:db8:1:2:aaaa::1"), StcprAdmission.sourceKey("2001:db8:1:2::99"))
        XCTAssertNotEqual(StcprAdmission.sourceKey("2001:db8:1:2::1"), StcprAdmission.sourceKey("2001:db8:1:3::1"))
        XCTAssertEqual(StcprAdmission.sourceKey(nil), "?")
    }

    // MARK: Transports per key

    /// Inbound transports per key and type (PROTOCOL.md §3): however often a key registers, the
    /// visor holds at most `maxInboundTransportsPerKey` of each type for it, the newest ones.
    func testInboundTransportsPerKeyAreBounded() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let manager = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        let remote = KeyPair.generate().publicKey
        func entry(_ type: TransportType, _ key: PublicKey = remote) -> TransportEntry {
            TransportEntry(manager: manager, id: manager.newID(), remote: key, type: type, host: "192.0.2.1", port: 1,
                           initiator: false, wanted: false)
        }
        var registered: [TransportEntry] = []
        for _ in 0..<10 {
            let e = entry(.stcpr)
            XCTAssertTrue(manager.registerInbound(e))
            registered.append(e)
        }
        let limit = TransportManager.maxInboundTransportsPerKey
        XCTAssertEqual(manager.list().count, limit)
        XCTAssertTrue(manager.list().map(\.id).contains(registered[registered.count - 1].id), "the newest is kept")
        // Other types and other keys are counted separately.
        XCTAssertTrue(manager.registerInbound(entry(.sudph)))
        XCTAssertTrue(manager.registerInbound(entry(.stcpr, KeyPair.generate().publicKey)))
        XCTAssertEqual(manager.list().count, limit + 2)
        await manager.shutdown()
        try await group.shutdownGracefully()
    }

    // MARK: sudph overflow

    /// Reliable frames for a peer that acknowledges nothing (here: one that never answered the
    /// handshake) queue beyond the ARQ's 1024 segments; past `SudphPeer.maxOverflowCost` the peer
    /// is closed instead of growing (before: without bound).
    func testSudphPeerThatAcknowledgesNothingIsClosedAtTheOverflowBound() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let manager = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        let endpoint = try await SudphEndpoint.bind(host: "127.0.0.1", port: 0, manager: manager)
        let remote = KeyPair.generate().publicKey
        let entry = TransportEntry(manager: manager, id: manager.newID(), remote: remote, type: .sudph, host: "127.0.0.1",
                                   port: 9, initiator: true, wanted: false)
        let sent = try await endpoint.eventLoop.submit { () -> Int in
            let peer = try SudphPeer.dial(endpoint: endpoint, remote: remote, address: try SocketAddress(ipAddress: "127.0.0.1", port: 9),
                                          entry: entry, schedule: .normal(limitSeconds: 10))
            var pong = ByteBuffer()
            pong.writeInteger(MuxFrameType.pong.rawValue)
            pong.writeInteger(UInt64(0))
            var n = 0
            // 48 MiB / (9 + 64) bytes ≈ 690,000 frames; bounded at 1,000,000.
            while n < 1_000_000 && entry.info.state != .closed {
                peer.send(frame: pong, reliable: true)
                n += 1
            }
            return n
        }.get()
        XCTAssertLessThan(sent, 1_000_000, "the peer was never closed")
        XCTAssertEqual(entry.info.state, .closed)
        XCTAssertTrue(entry.info.lastError?.contains("does not acknowledge") == true, entry.info.lastError ?? "")
        await endpoint.close()
        await manager.shutdown()
        try await group.shutdownGracefully()
    }

}
