import XCTest
@testable import SkywireCrypto

final class NoiseHandshakeTests: XCTestCase {
    struct Session {
        let initiator: NoiseHandshake
        let responder: NoiseHandshake
        let message1: [UInt8]
        let message2: [UInt8]
        let claimed: PublicKey
    }

    /// A full IK handshake between two visor identities, as stcpr/sudph run it (PROTOCOL.md §2).
    func handshake(_ a: KeyPair, _ b: KeyPair) throws -> Session {
        let initiator = try NoiseHandshake.ikInitiator(identity: a, remote: b.publicKey)
        let responder = try NoiseHandshake.ikResponder(identity: b)
        let message1 = try initiator.writeMessage(payload: IdentityClaim.encode(a.publicKey, timestamp: .now()))
        let payload1 = try responder.readMessage(message1)
        let claimed = try IdentityClaim.verify(payload: payload1, remoteStatic: responder.remoteStaticKey).key
        let message2 = try responder.writeMessage()
        XCTAssertEqual(try initiator.readMessage(message2), [])
        return Session(initiator: initiator, responder: responder, message1: message1, message2: message2,
                       claimed: claimed)
    }

    func testIKRoundTripWithDerivedKeys() throws {
        let a = KeyPair.generate(), b = KeyPair.generate()
        let s = try handshake(a, b)
        XCTAssertEqual(s.message1.count, IdentityClaim.message1Length)
        XCTAssertEqual(s.message1.count, 141)
        XCTAssertEqual(s.message2.count, IdentityClaim.message2Length)
        XCTAssertEqual(s.message2.count, 48)
        XCTAssertEqual(s.claimed, a.publicKey)
        XCTAssertTrue(s.initiator.isComplete)
        XCTAssertTrue(s.responder.isComplete)
        XCTAssertEqual(s.responder.remoteStaticKey, try a.publicKey.x25519())
        XCTAssertEqual(s.initiator.remoteStaticKey, try b.publicKey.x25519())
        XCTAssertEqual(s.initiator.handshakeHash, s.responder.handshakeHash)
        XCTAssertEqual(s.initiator.handshakeHash.count, NoiseConstants.hashLength)

        let i = try s.initiator.split(), r = try s.responder.split()
        for round in 0..<5 {
            let ping = Array("ping \(round)".utf8)
            XCTAssertEqual(try r.receive.decryptWithAd([], i.send.encryptWithAd([], ping)), ping)
            let pong = Array("pong \(round)".utf8)
            XCTAssertEqual(try i.receive.decryptWithAd([], r.send.encryptWithAd([], pong)), pong)
        }
        XCTAssertEqual(i.send.nonce, 5)
        XCTAssertEqual(r.receive.nonce, 5)
        // Split is handed out once.
        XCTAssertThrowsError(try s.initiator.split())
    }

    func testWrongResponderKeyFails() throws {
        let a = KeyPair.generate(), b = KeyPair.generate(), c = KeyPair.generate()
        // The initiator believes it dials c, but b answers.
        let initiator = try NoiseHandshake.ikInitiator(identity: a, remote: c.publicKey)
        let responder = try NoiseHandshake.ikResponder(identity: b)
        let message1 = try initiator.writeMessage(payload: IdentityClaim.encode(a.publicKey, timestamp: .now()))
        XCTAssertThrowsError(try responder.readMessage(message1)) { error in
            XCTAssertEqual(error as? NoiseError, .decryptFailed)
        }
        // A failed handshake is abandoned.
        XCTAssertThrowsError(try responder.writeMessage()) { error in
            guard case .wrongState = error as? NoiseError else { return XCTFail("\(error)") }
        }
    }

    func testForgedIdentityClaimRejected() throws {
        let a = KeyPair.generate(), b = KeyPair.generate(), mallory = KeyPair.generate()
        let initiator = try NoiseHandshake.ikInitiator(identity: mallory, remote: b.publicKey)
        let responder = try NoiseHandshake.ikResponder(identity: b)
        // Mallory's static key, but claiming to be a.
        let payload = try responder.readMessage(initiator.writeMessage(payload: IdentityClaim.encode(a.publicKey, timestamp: .now())))
        XCTAssertThrowsError(try IdentityClaim.verify(payload: payload, remoteStatic: responder.remoteStaticKey)) { error in
            guard case .badPayload = error as? NoiseError else { return XCTFail("\(error)") }
        }
        var badVersion = payload
        badVersion[0] = 0x01
        XCTAssertThrowsError(try IdentityClaim.verify(payload: badVersion, remoteStatic: responder.remoteStaticKey))
        XCTAssertThrowsError(try IdentityClaim.verify(payload: Array(payload.dropLast()),
                                                      remoteStatic: responder.remoteStaticKey))
    }

    func testTamperedMessagesFail() throws {
        let a = KeyPair.generate(), b = KeyPair.generate()
        let reference = try handshake(a, b)
        // Every byte position of message 1 is covered by the AEAD or the DH: flipping any fails.
        for position in stride(from: 0, to: reference.message1.count, by: 7) {
            let initiator = try NoiseHandshake.ikInitiator(identity: a, remote: b.publicKey)
            let responder = try NoiseHandshake.ikResponder(identity: b)
            var message1 = try initiator.writeMessage(payload: IdentityClaim.encode(a.publicKey, timestamp: .now()))
            message1[position] ^= 0x40
            XCTAssertThrowsError(try responder.readMessage(message1), "byte \(position)")
        }
        // Message 2.
        let initiator = try NoiseHandshake.ikInitiator(identity: a, remote: b.publicKey)
        let responder = try NoiseHandshake.ikResponder(identity: b)
        _ = try responder.readMessage(initiator.writeMessage(payload: IdentityClaim.encode(a.publicKey, timestamp: .now())))
        var message2 = try responder.writeMessage()
        message2[40] ^= 0x01
        XCTAssertThrowsError(try initiator.readMessage(message2)) { error in
            XCTAssertEqual(error as? NoiseError, .decryptFailed)
        }
        // A transport message; a failed decryption does not advance the nonce (§5.1).
        let i = try reference.initiator.split(), r = try reference.responder.split()
        let good = try i.send.encryptWithAd([], Array("hello".utf8))
        var bad = good
        bad[bad.count - 1] ^= 0x80
        XCTAssertThrowsError(try r.receive.decryptWithAd([], bad)) { error in
            XCTAssertEqual(error as? NoiseError, .decryptFailed)
        }
        XCTAssertEqual(r.receive.nonce, 0)
        XCTAssertEqual(try r.receive.decryptWithAd([], good), Array("hello".utf8))
    }

    func testReplayOfMessage1ToFinishedResponderFails() throws {
        let s = try handshake(KeyPair.generate(), KeyPair.generate())
        XCTAssertThrowsError(try s.responder.readMessage(s.message1)) { error in
            XCTAssertEqual(error as? NoiseError, .wrongState("handshake already complete"))
        }
        XCTAssertThrowsError(try s.initiator.readMessage(s.message2))
    }

    func testWrongTurnAndEarlySplit() throws {
        let b = KeyPair.generate()
        let responder = try NoiseHandshake.ikResponder(identity: b)
        XCTAssertFalse(responder.isMyTurnToWrite)
        XCTAssertThrowsError(try responder.writeMessage()) { error in
            XCTAssertEqual(error as? NoiseError, .wrongState("it is the peer's turn to send"))
        }
        let initiator = try NoiseHandshake.ikInitiator(identity: KeyPair.generate(), remote: b.publicKey)
        XCTAssertThrowsError(try initiator.split()) { error in
            XCTAssertEqual(error as? NoiseError, .wrongState("handshake not complete"))
        }
        XCTAssertThrowsError(try initiator.readMessage([UInt8](repeating: 0, count: 48)))
    }

    func testGarbageNeverCrashes() throws {
        let b = KeyPair.generate()
        var rng = SystemRandomNumberGenerator()
        let lengths = [0, 1, 31, 32, 33, 79, 80, 95, 96, 128, 129, 130, 1000, NoiseConstants.maxMessageLength,
                       NoiseConstants.maxMessageLength + 1]
        for length in lengths {
            let responder = try NoiseHandshake.ikResponder(identity: b)
            let garbage = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try responder.readMessage(garbage), "length \(length)")
        }
        let initiator = try NoiseHandshake.ikInitiator(identity: KeyPair.generate(), remote: b.publicKey)
        XCTAssertThrowsError(try initiator.writeMessage(payload: [UInt8](repeating: 0, count: NoiseConstants.maxMessageLength))) { error in
            guard case .messageTooLong = error as? NoiseError else { return XCTFail("\(error)") }
        }
    }

    func testInjectedEphemeralsAreDeterministic() throws {
        let si = X25519KeyPair.generate(), sr = X25519KeyPair.generate()
        let ei = X25519KeyPair.generate(), er = X25519KeyPair.generate()
        func run() throws -> [UInt8] {
            let i = try NoiseHandshake.ikInitiator(localStatic: si, remoteStatic: sr.publicKey, ephemeral: ei)
            let r = try NoiseHandshake.ikResponder(localStatic: sr, ephemeral: er)
            let m1 = try i.writeMessage(payload: [1, 2, 3])
            _ = try r.readMessage(m1)
            let m2 = try r.writeMessage()
            _ = try i.readMessage(m2)
            return m1 + m2 + i.handshakeHash
        }
        XCTAssertEqual(try run(), try run())
        XCTAssertEqual(Array(try run().prefix(32)), ei.publicKey)
    }

    func testLowOrderRemoteStaticFails() throws {
        let initiator = try NoiseHandshake.ikInitiator(localStatic: X25519KeyPair.generate(),
                                                       remoteStatic: [UInt8](repeating: 0, count: 32))
        XCTAssertThrowsError(try initiator.writeMessage()) { error in
            XCTAssertEqual(error as? NoiseError, .dhFailed)
        }
    }

    func testUnsupportedProtocols() {
        for name in ["Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", "Noise_IK_448_ChaChaPoly_BLAKE2b",
                     "Noise_IK_25519_AESGCM_SHA256", "Noise_ZZ_25519_ChaChaPoly_BLAKE2b", "Noise_NNpsk9_25519_ChaChaPoly_BLAKE2b",
                     "Noise_IK_25519_ChaChaPoly", "garbage"] {
            XCTAssertThrowsError(try NoiseProtocol(name: name), name) { error in
                guard case .unsupported = error as? NoiseError else { return XCTFail("\(name): \(error)") }
            }
        }
        XCTAssertEqual(try HandshakePattern.named("NNpsk0+psk2").pskCount, 2)
        XCTAssertEqual(try HandshakePattern.named("IK").messages, [[.e, .es, .s, .ss], [.e, .ee, .se]])
    }
}
