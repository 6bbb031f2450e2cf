import NIOCore
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport

/// `StcprSession` as a pure state machine (PROTOCOL.md §3): messages in, messages and frames out.
final class StcprSessionTests: XCTestCase {
    private let alloc = ByteBufferAllocator()
    private let keyA = KeyPair.generate()
    private let keyB = KeyPair.generate()

    /// Splits one record (2-byte length + message) off `records`.
    private func nextMessage(_ records: inout ByteBuffer) -> ByteBuffer? {
        guard let length = records.readInteger(as: UInt16.self) else { return nil }
        return records.readSlice(length: Int(length))
    }

    private func handshake() throws -> (StcprSession, StcprSession) {
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey)
        var b = try StcprSession(identity: keyB, expectedRemote: nil)
        XCTAssertNil(try b.start(), "a responder sends nothing first")
        let msg1 = try XCTUnwrap(try a.start())
        XCTAssertEqual(msg1.count, IdentityClaim.message1Length)
        XCTAssertNil(try a.start(), "message 1 is sent once")
        guard case .handshakeComplete(let claimed, let reply?) = try b.receive(ByteBuffer(bytes: msg1), allocator: alloc) else {
            XCTFail("responder did not complete"); throw CancellationError()
        }
        XCTAssertEqual(claimed, keyA.publicKey)
        XCTAssertEqual(reply.count, IdentityClaim.message2Length)
        guard case .handshakeComplete(let remote, nil) = try a.receive(ByteBuffer(bytes: reply), allocator: alloc) else {
            XCTFail("initiator did not complete"); throw CancellationError()
        }
        XCTAssertEqual(remote, keyB.publicKey)
        XCTAssertTrue(a.isEstablished && b.isEstablished)
        return (a, b)
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
        var a = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey)
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
        var initiator = try StcprSession(identity: keyA, expectedRemote: keyB.publicKey)
        _ = try initiator.start()
        XCTAssertThrowsError(try initiator.receive(ByteBuffer(bytes: [1, 2, 3]), allocator: alloc)) { error in
            XCTAssertTrue("\(error)".contains("message 2"), "\(error)")
        }
    }

    func testResponderRefusesMessageOneForAnotherKey() throws {
        var a = try StcprSession(identity: keyA, expectedRemote: KeyPair.generate().publicKey)
        var b = try StcprSession(identity: keyB, expectedRemote: nil)
        let msg1 = try XCTUnwrap(try a.start())
        XCTAssertThrowsError(try b.receive(ByteBuffer(bytes: msg1), allocator: alloc))
        XCTAssertFalse(b.isEstablished)
        XCTAssertNil(b.remoteKey)
    }
}
