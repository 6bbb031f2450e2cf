import NIOCore
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport
@testable import SkywireWire

/// The datapath's pure pieces: the packet a `DatagramBatch` slot is sealed into, and the
/// counter/key bookkeeping of `SudphSessionBox` shared with the event loop.
final class SudphDatagramPathTests: XCTestCase {
    let sendBytes = [UInt8](repeating: 0x11, count: 32)
    let receiveBytes = [UInt8](repeating: 0x22, count: 32)

    private func box(confirmed: Bool = true) throws -> SudphSessionBox {
        let s = SudphPeer.Session(localIndex: 7, remoteIndex: 0x0102_0304, sendKey: try NoiseTransportKey(bytes: sendBytes),
                                  receiveKey: try NoiseTransportKey(bytes: receiveBytes), confirmed: confirmed)
        return SudphSessionBox(s, address: try SocketAddress(ipAddress: "127.0.0.1", port: 9))
    }

    /// Header `04 01 00 00 | index | counter`, then ChaChaPoly(record 0x01 ‖ DATAGRAM 0x08 dst src ‖ payload).
    func testSealedSlotIsAUnreliableDatagramPacket() throws {
        let b = try box()
        let r = try XCTUnwrap(try b.reserve(count: 1, allowUnconfirmed: false, now: .now(), rekeyInterval: .hours(1)))
        var slot = [UInt8](repeating: 0, count: DatagramBatch.slotSize)
        let payload: [UInt8] = [0x45, 0x00, 0xde, 0xad, 0xbe, 0xef]
        for (i, byte) in payload.enumerated() { slot[DatagramBatch.payloadOffset + i] = byte }
        let total = slot.withUnsafeMutableBytes {
            DatagramBatch.seal(slot: $0, payloadLength: payload.count, counter: 0x0a0b, reservation: r,
                                    destinationPort: 44, sourcePort: 43)
        }
        XCTAssertEqual(total, 16 + 1 + 5 + payload.count + 16)
        XCTAssertEqual(Array(slot[0..<16]), [0x04, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,
                                             0, 0, 0, 0, 0, 0, 0x0a, 0x0b])
        // The peer opens it with the same key and nonce, and finds the record and frame.
        let key = try NoiseTransportKey(bytes: sendBytes)
        var plain = [UInt8](repeating: 0, count: 64)
        let n = try slot.withUnsafeBytes { bytes in
            try plain.withUnsafeMutableBytes { out in
                try key.open(counter: 0x0a0b, ad: UnsafeRawBufferPointer(rebasing: bytes[0..<16]),
                             ciphertext: UnsafeRawBufferPointer(rebasing: bytes[16..<total]), into: out)
            }
        }
        XCTAssertEqual(Array(plain[0..<n]), [0x01, 0x08, 0x00, 44, 0x00, 43] + payload)
        let parsed = try slot.withUnsafeBytes { try SudphPacket.parse(UnsafeRawBufferPointer(rebasing: $0[0..<total])) }
        XCTAssertEqual(parsed, .data(receiverIndex: 0x0102_0304, counter: 0x0a0b, keyPhase: 0, ciphertext: 16..<total))
    }

    /// Batches reserve disjoint counter blocks; a due rotation happens before the block, so the
    /// whole block uses the new key and the flipped phase (§4.3).
    func testReservationsAreDisjointAndRotateBeforeTheBlock() throws {
        let b = try box()
        let a = try XCTUnwrap(try b.reserve(count: 64, allowUnconfirmed: false, now: .now(), rekeyInterval: .hours(1)))
        XCTAssertEqual(a.first, 0)
        XCTAssertFalse(a.rotated)
        let c = try XCTUnwrap(try b.reserve(count: 1, allowUnconfirmed: false, now: .now(), rekeyInterval: .hours(1)))
        XCTAssertEqual(c.first, 64)
        let d = try XCTUnwrap(try b.reserve(count: 10, allowUnconfirmed: false, now: .now() + .hours(2), rekeyInterval: .hours(1)))
        XCTAssertTrue(d.rotated)
        XCTAssertEqual(d.first, 65)
        XCTAssertEqual(d.phase, 1)
        XCTAssertEqual(d.key.exportBytes(), try NoiseTransportKey(bytes: sendBytes).rekeyed().exportBytes())
    }

    func testUnconfirmedResponderDoesNotSend() throws {
        let b = try box(confirmed: false)
        XCTAssertNil(try b.reserve(count: 1, allowUnconfirmed: false, now: .now(), rekeyInterval: .hours(1)))
        XCTAssertNotNil(try b.reserve(count: 1, allowUnconfirmed: true, now: .now(), rekeyInterval: .hours(1)))
    }

    /// The receive side: replays are refused, the peer's next key is adopted on its first
    /// authenticated packet, and late packets of the old phase still open with the old key.
    func testReceiveReplayAndPeerRotation() throws {
        let b = try box(confirmed: false)
        let (k0, next0) = try XCTUnwrap(try b.receiveKey(counter: 5, phase: 0))
        XCTAssertFalse(next0)
        XCTAssertTrue(b.commitReceived(counter: 5, phase: 0, key: k0, isNext: false))
        XCTAssertNil(try b.receiveKey(counter: 5, phase: 0))
        XCTAssertFalse(b.commitReceived(counter: 5, phase: 0, key: k0, isNext: false))
        let (k1, next1) = try XCTUnwrap(try b.receiveKey(counter: 10, phase: 1))
        XCTAssertTrue(next1)
        XCTAssertEqual(k1.exportBytes(), try NoiseTransportKey(bytes: receiveBytes).rekeyed().exportBytes())
        XCTAssertTrue(b.commitReceived(counter: 10, phase: 1, key: k1, isNext: true))
        let (late, lateNext) = try XCTUnwrap(try b.receiveKey(counter: 7, phase: 0))
        XCTAssertFalse(lateNext)
        XCTAssertEqual(late.exportBytes(), receiveBytes)
        // Committing a packet confirms the session for a responder.
        XCTAssertNotNil(try b.reserve(count: 1, allowUnconfirmed: false, now: .now(), rekeyInterval: .hours(1)))
    }
}
