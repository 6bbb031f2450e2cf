import NIOConcurrencyHelpers
import SkywireCrypto
import SkywireWire
import XCTest
@testable import SkywireTransport

/// `DatagramSinks.deliver` with a `DatagramSinkBatch`: the table is read once per port and read
/// burst, every datagram still reaches its port's sink, and each sink hears of the burst's end once.
final class DatagramSinkBatchTests: XCTestCase {
    private final class CountingSink: DatagramSink, @unchecked Sendable {
        // @unchecked Sendable: the counters are NIOLockedValueBoxes.
        let received = NIOLockedValueBox<[UInt8]>([])
        let ended = NIOLockedValueBox(0)
        func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from: PublicKey, sourcePort: UInt16) {
            received.withLockedValue { $0.append(payload.first ?? 0) }
        }
        func datagramBatchEnded() { ended.withLockedValue { $0 += 1 } }
    }

    private func frame(port: UInt16, byte: UInt8) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: MuxFrameLayout.datagramHeader + 1)
        bytes.withUnsafeMutableBytes {
            MuxFrameLayout.writeDatagramHeader(destinationPort: port, sourcePort: 9, into: $0)
        }
        bytes[MuxFrameLayout.datagramHeader] = byte
        return bytes
    }

    private let remote = KeyPair.generate().publicKey

    private func deliver(_ sinks: DatagramSinks, port: UInt16, byte: UInt8, batch: inout DatagramSinkBatch) -> Bool {
        var f = frame(port: port, byte: byte)
        return f.withUnsafeMutableBytes { sinks.deliver($0, headroom: 0, from: remote, batch: &batch) }
    }

    func testOneLookupPerPortAndBurst() {
        let sinks = DatagramSinks()
        let a = CountingSink()
        let b = CountingSink()
        sinks.set(a, port: 1)
        sinks.set(a, port: 2)
        var batch = DatagramSinkBatch()
        XCTAssertTrue(deliver(sinks, port: 1, byte: 1, batch: &batch))
        XCTAssertTrue(deliver(sinks, port: 2, byte: 2, batch: &batch))
        // Replaced during the burst: the rest of the burst still goes where port 1 went.
        sinks.set(b, port: 1)
        XCTAssertTrue(deliver(sinks, port: 1, byte: 3, batch: &batch))
        XCTAssertFalse(deliver(sinks, port: 3, byte: 4, batch: &batch), "no sink: the mux path")
        batch.end()
        XCTAssertEqual(a.received.withLockedValue { $0 }, [1, 2, 3])
        XCTAssertEqual(a.ended.withLockedValue { $0 }, 1, "one end per sink, whatever its ports")
        // The next burst looks the table up again.
        XCTAssertTrue(deliver(sinks, port: 1, byte: 5, batch: &batch))
        sinks.set(nil, port: 2)
        XCTAssertFalse(deliver(sinks, port: 2, byte: 6, batch: &batch))
        batch.end()
        XCTAssertEqual(b.received.withLockedValue { $0 }, [5])
        XCTAssertEqual(b.ended.withLockedValue { $0 }, 1)
        XCTAssertEqual(a.ended.withLockedValue { $0 }, 1)
    }
}
