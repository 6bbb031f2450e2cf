import Logging
import NIOCore
import NIOPosix
import Dispatch
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

    /// With 10,000 transports, finding one peer's transports: the index against the scan of
    /// every entry it replaced (per stream open and per `sendDatagram`). Prints both figures
    /// (docs/scale.md); asserts only that both find the same.
    func testLookupByKeyAmongTenThousandTransports() {
        let count = 10_000, lookups = 100
        var table = TransportTable()
        var keys: [PublicKey] = []
        for _ in 0..<count {
            let e = entry(KeyPair.generate().publicKey)
            table[e.id] = e
            keys.append(e.remote)
        }
        func seconds(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        var found = 0, scanned = 0
        let indexed = seconds { for i in 0..<lookups { found += table.to(keys[i * 97]).count } }
        let scan = seconds { for i in 0..<lookups { scanned += table.values.filter { $0.remote == keys[i * 97] }.count } }
        XCTAssertEqual(found, lookups)
        XCTAssertEqual(scanned, lookups)
        print("TransportTable lookups among \(count) transports: index \(Int(indexed / Double(lookups) * 1e9)) ns, "
              + "scan of every entry \(Int(scan / Double(lookups) * 1e9)) ns per lookup")
    }
}
