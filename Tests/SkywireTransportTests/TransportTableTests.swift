import Logging
import NIOCore
import NIOPosix
import SkywireCrypto
@testable import SkywireTransport
import XCTest

/// `TransportTable`: the manager's transports by id, and by remote key (docs/scale.md).
final class TransportTableTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var manager: TransportManager!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let settings = TransportSettings(identity: .generate(), listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        manager = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
    }

    override func tearDown() async throws {
        await manager.shutdown()
        try await group.shutdownGracefully()
    }

    private func entry(_ key: PublicKey, _ type: TransportType = .stcpr) -> TransportEntry {
        TransportEntry(manager: manager, id: manager.newID(), remote: key, type: type, host: "192.0.2.1", port: 1,
                       initiator: false, wanted: false)
    }

    func testTheIndexByKeyFollowsInsertReplaceAndRemove() {
        let k = KeyPair.generate().publicKey, l = KeyPair.generate().publicKey
        var table = TransportTable()
        let k1 = entry(k), k2 = entry(k, .sudph), l1 = entry(l)
        for e in [k1, k2, l1] { table[e.id] = e }
        XCTAssertEqual(Set(table.to(k).map(\.id)), [k1.id, k2.id])
        XCTAssertEqual(table.to(l).map(\.id), [l1.id])
        XCTAssertEqual(table.values.count, 3)
        // The same id given to another entry (another key): the old one leaves both indexes.
        let replacement = TransportEntry(manager: manager, id: k1.id, remote: l, type: .stcpr, host: "192.0.2.2", port: 1,
                                         initiator: false, wanted: false)
        table[k1.id] = replacement
        XCTAssertEqual(table.to(k).map(\.id), [k2.id])
        XCTAssertEqual(Set(table.to(l).map(\.id)), [l1.id, k1.id])
        XCTAssertTrue(table.removeValue(forKey: k2.id) === k2)
        XCTAssertTrue(table.to(k).isEmpty)
        XCTAssertNil(table.removeValue(forKey: k2.id))
        table[l1.id] = nil
        XCTAssertEqual(table.to(l).map(\.id), [k1.id])
        table.removeAll()
        XCTAssertTrue(table.to(l).isEmpty)
        XCTAssertTrue(table.values.isEmpty)
    }

    /// Inbound transports evicted for newer ones from the same key leave the index too, so a
    /// stream to that key finds only the transports still held.
    func testEvictedInboundTransportsLeaveTheIndex() {
        let remote = KeyPair.generate().publicKey
        for _ in 0..<10 { XCTAssertTrue(manager.registerInbound(entry(remote))) }
        let listed = Set(manager.list().map(\.id))
        let indexed = manager.lock.withLock { manager.entries.to(remote).map(\.id) }
        XCTAssertEqual(indexed.count, TransportManager.maxInboundTransportsPerKey)
        XCTAssertEqual(Set(indexed), listed)
    }
}
