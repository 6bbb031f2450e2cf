import Foundation
import XCTest
@testable import SkywireCrypto

/// Runs the cacophony test vectors (public domain) for Noise_*_25519_ChaChaPoly_BLAKE2b:
/// every handshake and transport message byte for byte, and the handshake hash.
final class NoiseVectorTests: XCTestCase {
    struct VectorFile: Decodable {
        let vectors: [Vector]
    }

    struct Vector: Decodable {
        let protocol_name: String
        let init_prologue: String
        let init_psks: [String]?
        let init_static: String?
        let init_ephemeral: String?
        let init_remote_static: String?
        let resp_prologue: String
        let resp_psks: [String]?
        let resp_static: String?
        let resp_ephemeral: String?
        let resp_remote_static: String?
        let handshake_hash: String?
        let messages: [Message]
    }

    struct Message: Decodable {
        let payload: String
        let ciphertext: String
    }

    static func loadVectors() throws -> [Vector] {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Vectors", withExtension: nil))
        let data = try Data(contentsOf: dir.appendingPathComponent("noise-25519-chachapoly-blake2b.json"))
        return try JSONDecoder().decode(VectorFile.self, from: data).vectors
    }

    func testAllVectors() throws {
        let vectors = try Self.loadVectors()
        XCTAssertFalse(vectors.isEmpty)
        var ran: [String] = []
        var skipped: [String] = []
        var messagesChecked = 0
        for vector in vectors {
            let proto: NoiseProtocol
            do {
                proto = try NoiseProtocol(name: vector.protocol_name)
            } catch NoiseError.unsupported {
                skipped.append(vector.protocol_name)
                continue
            }
            messagesChecked += try run(vector, proto)
            ran.append(vector.protocol_name)
        }
        print("Noise vectors: \(ran.count) ran, \(skipped.count) skipped \(skipped), \(messagesChecked) messages checked")
        XCTAssertGreaterThan(ran.count, 0)
        XCTAssertEqual(ran.count + skipped.count, vectors.count)
        // The engine implements every pattern in the file; a skip means a regression.
        XCTAssertEqual(skipped, [])
    }

    private func run(_ v: Vector, _ proto: NoiseProtocol) throws -> Int {
        let name = v.protocol_name
        func key(_ hex: String?) throws -> X25519KeyPair? { try hex.map { try X25519KeyPair(secretKey: bytes($0)) } }
        let initiator = try HandshakeState(
            protocol: proto, initiator: true, prologue: bytes(v.init_prologue),
            localStatic: key(v.init_static), localEphemeral: key(v.init_ephemeral),
            remoteStatic: v.init_remote_static.map(bytes), psks: (v.init_psks ?? []).map(bytes))
        let responder = try HandshakeState(
            protocol: proto, initiator: false, prologue: bytes(v.resp_prologue),
            localStatic: key(v.resp_static), localEphemeral: key(v.resp_ephemeral),
            remoteStatic: v.resp_remote_static.map(bytes), psks: (v.resp_psks ?? []).map(bytes))

        var initiatorCiphers: (send: CipherState, receive: CipherState)?
        var responderCiphers: (send: CipherState, receive: CipherState)?
        for (index, message) in v.messages.enumerated() {
            let payload = bytes(message.payload)
            let expected = bytes(message.ciphertext)
            if !initiator.isComplete {
                let fromInitiator = index % 2 == 0
                let (writer, reader) = fromInitiator ? (initiator, responder) : (responder, initiator)
                XCTAssertTrue(writer.isMyTurnToWrite, "\(name) message \(index)")
                let written = try writer.writeMessage(payload: payload)
                XCTAssertEqual(hex(written), message.ciphertext, "\(name) handshake message \(index)")
                let read = try reader.readMessage(written)
                XCTAssertEqual(read, payload, "\(name) handshake payload \(index)")
                if initiator.isComplete {
                    XCTAssertTrue(responder.isComplete, name)
                    if let h = v.handshake_hash {
                        XCTAssertEqual(hex(initiator.handshakeHash), h, "\(name) initiator handshake hash")
                        XCTAssertEqual(hex(responder.handshakeHash), h, "\(name) responder handshake hash")
                    }
                    let i = try initiator.split()
                    let r = try responder.split()
                    initiatorCiphers = (i.initiatorToResponder, i.responderToInitiator)
                    responderCiphers = (r.responderToInitiator, r.initiatorToResponder)
                }
                continue
            }
            let i = try XCTUnwrap(initiatorCiphers), r = try XCTUnwrap(responderCiphers)
            // After the handshake, one-way patterns only send initiator→responder; interactive
            // ones keep alternating (the cacophony convention).
            let fromInitiator = proto.pattern.isOneWay || index % 2 == 0
            let (send, receive) = fromInitiator ? (i.send, r.receive) : (r.send, i.receive)
            let written = try send.encryptWithAd([], payload)
            XCTAssertEqual(written, expected, "\(name) transport message \(index)")
            XCTAssertEqual(try receive.decryptWithAd([], written), payload, "\(name) transport payload \(index)")
        }
        XCTAssertTrue(initiator.isComplete && responder.isComplete, "\(name) handshake did not complete")
        return v.messages.count
    }
}

func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(hex.utf8).makeIterator()
    while let hi = chars.next(), let lo = chars.next() {
        out.append(UInt8(String(decoding: [hi, lo], as: UTF8.self), radix: 16) ?? 0)
    }
    return out
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}
