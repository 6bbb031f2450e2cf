#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireTestSupport
import SkywireWire
import XCTest
@testable import SkywireTransport
import SkywireIO
import SkywireSystem

/// The VPN's batch path over stcpr (`DatagramBatch` → `StcprDatagramQueue` → one write on the
/// link; in place into the peer's `DatagramSink`), between two managers on loopback.
final class StcprDatagramBatchTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    private var managers: [TransportManager] = []
    static let port: UInt16 = 44
    /// Bounds for waiting on the loopback peer (generous: a loaded 2-core machine).
    static let deliveryTimeout: TimeAmount = .seconds(20)

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

    /// A client with an stcpr transport to a server whose port `port` has `sink`; the client's path.
    private func connected(sink: DatagramSink) async throws -> (client: TransportManager, server: TransportManager, path: DatagramPath) {
        let server = manager(stcprPort: Int(try unusedLoopbackPort(Int32(SOCK_STREAM.rawValue))))
        server.setDatagramSink(sink, port: Self.port)
        try await server.start()
        let address = try XCTUnwrap(server.stcprListenAddress)
        let client = manager()
        _ = try await client.add(remote: server.localKey, type: .stcpr, address: address)
        let path = try XCTUnwrap(client.datagramPath(to: server.localKey, destinationPort: Self.port, sourcePort: 45))
        guard case .stcpr = path.route else { XCTFail("an stcpr transport gives an stcpr path"); throw CancellationError() }
        return (client, server, path)
    }

    /// Fills the batch with `n` packets: packet `i` is `size(i)` bytes of `(i + first) & 0xff`.
    private static func fill(_ batch: DatagramBatch, path: DatagramPath, count n: Int, first: Int = 0) {
        for i in 0..<n {
            let length = 60 + (i * 37) % 1300
            let room = batch.nextPayload
            room.initializeMemory(as: UInt8.self, repeating: UInt8((i + first) & 0xff))
            batch.commit(length: length, path: path)
        }
    }

    /// Holds `loop` in a task until the returned box is set to false (or `deliveryTimeout`);
    /// returns once the loop is held.
    private static func hold(_ loop: EpollEventLoop) -> NIOLockedValueBox<Bool> {
        let hold = NIOLockedValueBox(true)
        let held = NIOLockedValueBox(false)
        loop.execute {
            held.withLockedValue { $0 = true }
            let until = NIODeadline.now() + Self.deliveryTimeout
            while hold.withLockedValue({ $0 }) && NIODeadline.now() < until { usleep(1000) }
        }
        while !held.withLockedValue({ $0 }) { usleep(1000) }
        return hold
    }

    func testABatchArrivesIntactAndInOrder() async throws {
        let sink = CollectingSink()
        let (client, server, path) = try await connected(sink: sink)
        let batch = DatagramBatch()
        let n = batch.capacity
        Self.fill(batch, path: path, count: n)
        batch.flush()
        XCTAssertEqual(batch.dropped, 0)

        XCTAssertTrue(sink.wait(forCount: n, timeout: Self.deliveryTimeout), "got \(sink.count) of \(n)")
        let got = sink.packets.withLockedValue { $0 }
        XCTAssertEqual(got.count, n)
        for (i, packet) in got.enumerated() {
            XCTAssertEqual(packet.payload.count, 60 + (i * 37) % 1300, "packet \(i)")
            XCTAssertTrue(packet.payload.allSatisfy { $0 == UInt8(i & 0xff) }, "packet \(i) altered or out of order")
            XCTAssertEqual(packet.from, client.localKey)
            XCTAssertEqual(packet.sourcePort, 45)
        }
        XCTAssertGreaterThan(sink.batchesEnded.withLockedValue { $0 }, 0, "the read burst's end reached the sink")
        // Delivered in place: the mux session never saw them (no router on the server).
        _ = server
    }

    func testDatagramsBeyondTheQueueAreDroppedAndCountedWithoutBlocking() async throws {
        let sink = CollectingSink()
        let (_, _, path) = try await connected(sink: sink)
        guard case .stcpr(let queue) = path.route else { return XCTFail("stcpr path") }
        // The link's loop is held, so nothing drains: the queue fills to its bound. A batch that
        // does not wait for room (the exit's, serving every client) drops at once, however long
        // a waiting one would wait.
        queue.setFullWait(Self.deliveryTimeout)
        let hold = Self.hold(queue.loop)
        let batch = DatagramBatch(waitsForRoom: false)
        let batches = 8
        let perBatch = batch.capacity
        let started = NIODeadline.now()
        for b in 0..<batches {
            Self.fill(batch, path: path, count: perBatch, first: b * perBatch)
            batch.flush()  // returns although the loop is held: never blocks
        }
        XCTAssertLessThan(NIODeadline.now() - started, Self.deliveryTimeout, "the flushes did not wait for room")
        let total = batches * perBatch
        let droppedAtOnce = batch.dropped
        XCTAssertGreaterThan(droppedAtOnce, 0, "more than the queue's bound was offered")
        XCTAssertEqual(droppedAtOnce, queue.dropped.load(ordering: .relaxed))
        let queuedBytesBound = StcprDatagramQueue.maxPendingBytes
        XCTAssertLessThanOrEqual(UInt64(total) - droppedAtOnce, UInt64(queuedBytesBound / (60 + StcprDatagramQueue.lengthPrefix)))
        hold.withLockedValue { $0 = false }

        // Everything not dropped arrives, in order; every datagram is either delivered or counted.
        let expected = total - Int(droppedAtOnce)
        XCTAssertTrue(sink.wait(forCount: expected, timeout: Self.deliveryTimeout), "got \(sink.count) of \(expected)")
        let linkDrops = Int(queue.dropped.load(ordering: .relaxed) - droppedAtOnce)
        XCTAssertEqual(sink.count + linkDrops, expected)
        let firsts = sink.packets.withLockedValue { $0.map { $0.payload.first ?? 0 } }
        XCTAssertEqual(Array(firsts.prefix(3)), [0, 1, 2], "the first batch leads")
    }

    /// Back-pressure (the VPN over stcpr, issue 17): a datapath thread that finds the queue full
    /// waits for the loop to take it instead of dropping, so nothing is lost while the loop is
    /// only behind. Before, every datagram beyond `maxPendingBytes` was dropped at once.
    func testAFullQueueWaitsForTheLoopInsteadOfDropping() async throws {
        let sink = CollectingSink()
        let (_, _, path) = try await connected(sink: sink)
        guard case .stcpr(let queue) = path.route else { return XCTFail("stcpr path") }
        queue.setFullWait(Self.deliveryTimeout)
        let hold = Self.hold(queue.loop)
        let batches = 8
        let perBatch = DatagramBatch().capacity
        let total = batches * perBatch
        let offered = batches * (0..<perBatch).reduce(0) { $0 + 60 + ($1 * 37) % 1300 }
        XCTAssertGreaterThan(offered, 2 * StcprDatagramQueue.maxPendingBytes, "more than the queue holds is offered")
        let flushed = NIOLockedValueBox(false)
        let droppedBySender = NIOLockedValueBox<UInt64>(0)
        let sender = try SystemThread(name: "sender") {
            let batch = DatagramBatch(waitsForRoom: true)
            for b in 0..<batches {
                Self.fill(batch, path: path, count: perBatch, first: b * perBatch)
                batch.flush()
            }
            droppedBySender.withLockedValue { $0 = batch.dropped }
            flushed.withLockedValue { $0 = true }
        }
        defer { sender.join() }
        // The loop is held while the sender offers more than the queue takes: it waits.
        usleep(100_000)
        hold.withLockedValue { $0 = false }
        let until = NIODeadline.now() + Self.deliveryTimeout
        while !flushed.withLockedValue({ $0 }) && NIODeadline.now() < until { usleep(1000) }
        XCTAssertTrue(flushed.withLockedValue { $0 }, "the sender finished once the loop drained")
        XCTAssertEqual(droppedBySender.withLockedValue { $0 }, 0, "nothing dropped while the loop was only behind")
        XCTAssertEqual(queue.dropped.load(ordering: .relaxed), 0)
        XCTAssertTrue(sink.wait(forCount: total, timeout: Self.deliveryTimeout), "got \(sink.count) of \(total)")
        let firsts = sink.packets.withLockedValue { $0.map { $0.payload.first ?? 0 } }
        XCTAssertEqual(firsts, (0..<total).map { UInt8($0 & 0xff) }, "every datagram, in order")
    }
}

/// Collects every datagram a sink gets (from a transport's loop) for the test thread.
private final class CollectingSink: DatagramSink, @unchecked Sendable {
    // @unchecked Sendable: `packets` and `batchesEnded` are locked boxes; nothing else is stored.
    struct Packet {
        var payload: [UInt8]
        var from: PublicKey
        var sourcePort: UInt16
    }

    let packets = NIOLockedValueBox<[Packet]>([])
    let batchesEnded = NIOLockedValueBox(0)

    var count: Int { packets.withLockedValue { $0.count } }

    func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from: PublicKey, sourcePort: UInt16) {
        let packet = Packet(payload: Array(payload), from: from, sourcePort: sourcePort)
        packets.withLockedValue { $0.append(packet) }
    }

    func datagramBatchEnded() { batchesEnded.withLockedValue { $0 += 1 } }

    func wait(forCount n: Int, timeout: TimeAmount) -> Bool {
        let until = NIODeadline.now() + timeout
        while count < n {
            guard NIODeadline.now() < until else { return false }
            usleep(2000)
        }
        return true
    }
}
