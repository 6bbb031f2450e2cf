import NIOCore
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport

/// `StcprSession` as a pure state machine (PROTOCOL.md §3): messages in, messages and frames out.
final class StcprSessionTests: XCTestCase {
    private let alloc = ByteBufferAllocator()
    private let keyA = try! NoiseStaticIdentity(identity: KeyPair.generate())
    private let keyB = try! NoiseStaticIdentity(identity: KeyPair.generate())
    private let stamp = TAI64N(unixSeconds: 1_700_000_000, nanoseconds: 0)

    /// Splits one record (2-byte length + message) off `records`.
    private func nextMessage(_ records: inout ByteBuffer) -> ByteBuffer? {
        guard let length = records.readInteger(as: UInt16.self) else { return nil }
        return records.readSlice(length: Int(length))
    }

    private func handshake() throws -> (StcprSession, StcprSession) {
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey, timestamp: stamp)
        var b = try StcprSession(identity: keyB, expectedRemote: nil)
        XCTAssertNil(try b.start(), "a responder sends nothing first")
        // The record lengths RawStcprLink enforces on each length prefix, state by state.
        XCTAssertEqual(b.expectedHandshakeRecordLength, 157, "responder: message 1 with its mac1")
        XCTAssertEqual(a.expectedHandshakeRecordLength, IdentityClaim.message2Length, "initiator: message 2")
        let msg1 = try XCTUnwrap(try a.start())
        XCTAssertEqual(msg1.count, IdentityClaim.message1Length + HandshakeMAC.macLength)
        XCTAssertEqual(msg1.count, 157)
        XCTAssertNil(try a.start(), "message 1 is sent once")
        XCTAssertTrue(b.checkInitiation(ByteBuffer(bytes: msg1)))
        guard case .handshakeComplete(let claimed, let claimedStamp?, let reply) = try b.receive(ByteBuffer(bytes: msg1), allocator: alloc) else {
            XCTFail("responder did not complete"); throw CancellationError()
        }
        XCTAssertEqual(claimed, keyA.publicKey)
        XCTAssertEqual(claimedStamp, stamp)
        XCTAssertEqual(reply.count, IdentityClaim.message2Length)
        XCTAssertFalse(b.isEstablished, "the responder waits for the initiator's confirmation")
        XCTAssertEqual(b.expectedHandshakeRecordLength, NoiseConstants.tagLength, "responder: the 16-byte confirmation")
        var early = ByteBuffer()
        XCTAssertFalse(try b.seal(ByteBuffer(string: "early"), into: &early), "no frame before confirmation")
        guard case .handshakeComplete(let remote, nil, let confirmation) = try a.receive(ByteBuffer(bytes: reply), allocator: alloc) else {
            XCTFail("initiator did not complete"); throw CancellationError()
        }
        XCTAssertEqual(remote, keyB.publicKey)
        XCTAssertEqual(confirmation.count, NoiseConstants.tagLength, "the confirmation is an empty transport message")
        guard case .confirmed = try b.receive(ByteBuffer(bytes: confirmation), allocator: alloc) else {
            XCTFail("responder not confirmed"); throw CancellationError()
        }
        XCTAssertTrue(a.isEstablished && b.isEstablished)
        XCTAssertNil(a.expectedHandshakeRecordLength)
        XCTAssertNil(b.expectedHandshakeRecordLength, "established: frames of any length")
        return (a, b)
    }

    func testMac1IsCheckedBeforeAnyDH() throws {
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey, timestamp: stamp)
        let b = try StcprSession(identity: keyB, expectedRemote: nil)
        var msg1 = try XCTUnwrap(try a.start())
        // mac1 = keyed BLAKE2b-128 of the Noise message under HASH("mac1----" ‖ B's X25519 key).
        let key = HandshakeMAC.mac1Key(responderStatic: try keyB.publicKey.x25519())
        XCTAssertEqual(Array(msg1.suffix(16)), HandshakeMAC.mac(key: key, Array(msg1.prefix(141))))
        msg1[msg1.count - 1] ^= 1
        XCTAssertFalse(b.checkInitiation(ByteBuffer(bytes: msg1)))
        XCTAssertFalse(b.checkInitiation(ByteBuffer(bytes: Array(msg1.prefix(141)))), "message 1 without mac1")
        let other = try StcprSession(identity: try NoiseStaticIdentity(identity: KeyPair.generate()), expectedRemote: nil)
        msg1[msg1.count - 1] ^= 1
        XCTAssertTrue(b.checkInitiation(ByteBuffer(bytes: msg1)))
        XCTAssertFalse(other.checkInitiation(ByteBuffer(bytes: msg1)), "mac1 is bound to the responder's key")
    }

    func testResponderRefusesFramesBeforeTheConfirmation() throws {
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey, timestamp: stamp)
        var b = try StcprSession(identity: keyB, expectedRemote: nil)
        guard case .handshakeComplete(_, _, let reply) = try b.receive(ByteBuffer(bytes: try XCTUnwrap(try a.start())), allocator: alloc) else {
            return XCTFail()
        }
        _ = try a.receive(ByteBuffer(bytes: reply), allocator: alloc)
        // A frame where the empty confirmation must come (e.g. a replayer guessing) is refused.
        var records = ByteBuffer()
        XCTAssertTrue(try a.seal(ByteBuffer(string: "frame"), into: &records))
        XCTAssertThrowsError(try b.receive(nextMessage(&records)!, allocator: alloc))
        XCTAssertFalse(b.isEstablished)
    }

    func testHandshakeThenFramesBothWaysInOrder() throws {
        var (a, b) = try handshake()
        var records = ByteBuffer()
        for text in ["one", "", String(repeating: "x", count: 16 * 1024)] {
            XCTAssertTrue(try a.seal(ByteBuffer(string: text), into: &records))
        }
        XCTAssertEqual(records.readableBytes, [3, 0, 16 * 1024].map { StcprSession.recordSize(ofFrame: $0) }.reduce(0, +))
        var texts: [String] = []
        while let message = nextMessage(&records) {
            guard case .frame(let frame) = try b.receive(message, allocator: alloc) else { return XCTFail() }
            texts.append(String(buffer: frame))
        }
        XCTAssertEqual(texts, ["one", "", String(repeating: "x", count: 16 * 1024)])
        var back = ByteBuffer()
        XCTAssertTrue(try b.seal(ByteBuffer(string: "pong"), into: &back))
        guard case .frame(let pong) = try a.receive(nextMessage(&back)!, allocator: alloc) else { return XCTFail() }
        XCTAssertEqual(String(buffer: pong), "pong")
    }

    func testNothingIsSealedBeforeTheHandshakeOrAfterClose() throws {
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey, timestamp: stamp)
        var out = ByteBuffer()
        XCTAssertFalse(try a.seal(ByteBuffer(string: "early"), into: &out))
        XCTAssertEqual(out.readableBytes, 0)
        var (established, _) = try handshake()
        XCTAssertTrue(established.close())
        XCTAssertFalse(established.close(), "close reports only the first time")
        XCTAssertFalse(try established.seal(ByteBuffer(string: "late"), into: &out))
        guard case .nothing = try established.receive(ByteBuffer(string: "anything"), allocator: alloc) else {
            return XCTFail("a closed session ignores records")
        }
    }

    func testTamperedRecordAndWrongHandshakeLengthsAreRefused() throws {
        var (a, b) = try handshake()
        var records = ByteBuffer()
        XCTAssertTrue(try a.seal(ByteBuffer(string: "payload"), into: &records))
        var message = nextMessage(&records)!
        message.setInteger(message.getInteger(at: message.readerIndex, as: UInt8.self)! ^ 1, at: message.readerIndex)
        XCTAssertThrowsError(try b.receive(message, allocator: alloc))

        var responder = try StcprSession(identity: keyB, expectedRemote: nil)
        XCTAssertThrowsError(try responder.receive(ByteBuffer(bytes: [1, 2, 3]), allocator: alloc)) { error in
            XCTAssertTrue("\(error)".contains("message 1"), "\(error)")
        }
        var initiator = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey, timestamp: stamp)
        _ = try initiator.start()
        XCTAssertThrowsError(try initiator.receive(ByteBuffer(bytes: [1, 2, 3]), allocator: alloc)) { error in
            XCTAssertTrue("\(error)".contains("message 2"), "\(error)")
        }
    }

    func testResponderRefusesMessageOneForAnotherKey() throws {
        var a = try StcprSession(identity: keyA, expectedRemote: KeyPair.generate().publicKey, timestamp: stamp)
        var b = try StcprSession(identity: keyB, expectedRemote: nil)
        let msg1 = try XCTUnwrap(try a.start())
        XCTAssertThrowsError(try b.receive(ByteBuffer(bytes: msg1), allocator: alloc))
        XCTAssertFalse(b.isEstablished)
        XCTAssertNil(b.remoteKey)
    }
}
