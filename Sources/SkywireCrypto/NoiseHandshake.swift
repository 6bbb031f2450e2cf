/// The Noise_IK_25519_ChaChaPoly_BLAKE2b handshake skywire-swift transports run (PROTOCOL.md §2).
/// A thin role-aware wrapper around `HandshakeState`. Not Sendable: one owner at a time.
public final class NoiseHandshake {
    public enum Role: Sendable, Equatable { case initiator, responder }

    public let role: Role
    private let state: HandshakeState

    private init(role: Role, state: HandshakeState) {
        self.role = role
        self.state = state
    }

    /// The dialling side: knows the responder's X25519 static key `remoteStatic` (the `<- s`
    /// pre-message). `ephemeral` is for tests only; leave it nil to draw a fresh one.
    public static func ikInitiator(localStatic: X25519KeyPair, remoteStatic: [UInt8],
                                   prologue: [UInt8] = NoiseConstants.prologue,
                                   ephemeral: X25519KeyPair? = nil) throws -> NoiseHandshake {
        let state = try HandshakeState(protocolName: NoiseConstants.ikProtocolName, initiator: true,
                                       prologue: prologue, localStatic: localStatic, localEphemeral: ephemeral,
                                       remoteStatic: remoteStatic)
        return NoiseHandshake(role: .initiator, state: state)
    }

    /// The listening side. The initiator's static key arrives in message 1 (`remoteStaticKey`).
    public static func ikResponder(localStatic: X25519KeyPair,
                                   prologue: [UInt8] = NoiseConstants.prologue,
                                   ephemeral: X25519KeyPair? = nil) throws -> NoiseHandshake {
        let state = try HandshakeState(protocolName: NoiseConstants.ikProtocolName, initiator: false,
                                       prologue: prologue, localStatic: localStatic, localEphemeral: ephemeral)
        return NoiseHandshake(role: .responder, state: state)
    }

    /// Initiator from visor identities: converts both Ed25519 keys (PROTOCOL.md §1).
    public static func ikInitiator(identity: KeyPair, remote: PublicKey,
                                   prologue: [UInt8] = NoiseConstants.prologue) throws -> NoiseHandshake {
        try ikInitiator(localStatic: identity.noiseStaticKeyPair(), remoteStatic: remote.x25519(), prologue: prologue)
    }

    /// Initiator from a visor's cached static keys (no per-handshake derivation of our own key).
    public static func ikInitiator(identity: NoiseStaticIdentity, remote: PublicKey,
                                   prologue: [UInt8] = NoiseConstants.prologue) throws -> NoiseHandshake {
        try ikInitiator(localStatic: identity.staticKeyPair, remoteStatic: remote.x25519(), prologue: prologue)
    }

    /// Responder from a visor's cached static keys.
    public static func ikResponder(identity: NoiseStaticIdentity,
                                   prologue: [UInt8] = NoiseConstants.prologue) throws -> NoiseHandshake {
        try ikResponder(localStatic: identity.staticKeyPair, prologue: prologue)
    }

    /// Responder from a visor identity.
    public static func ikResponder(identity: KeyPair,
                                   prologue: [UInt8] = NoiseConstants.prologue) throws -> NoiseHandshake {
        try ikResponder(localStatic: identity.noiseStaticKeyPair(), prologue: prologue)
    }

    /// Writes our next handshake message carrying `payload`.
    public func writeMessage(payload: [UInt8] = []) throws -> [UInt8] {
        try state.writeMessage(payload: payload)
    }

    /// Reads the peer's next handshake message and returns its decrypted payload.
    public func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        try state.readMessage(message)
    }

    /// Both IK messages have been exchanged.
    public var isComplete: Bool { state.isComplete }

    /// True when the next step is ours to write.
    public var isMyTurnToWrite: Bool { state.isMyTurnToWrite }

    /// The peer's X25519 static key: given for the initiator, learnt from message 1 by the responder.
    public var remoteStaticKey: [UInt8]? { state.remoteStaticKey }

    /// The handshake hash `h` (64 bytes), final once complete.
    public var handshakeHash: [UInt8] { state.handshakeHash }

    /// Split() oriented for our role (PROTOCOL.md §2): the initiator sends with the first
    /// CipherState, the responder with the second. Available once, after completion.
    public func split() throws -> (send: CipherState, receive: CipherState) {
        let (c1, c2) = try state.split()
        switch role {
        case .initiator: return (send: c1, receive: c2)
        case .responder: return (send: c2, receive: c1)
        }
    }
}

/// The message-1 payload of PROTOCOL.md §2: version byte 0x02, the initiator's Ed25519 public
/// key, which must convert to the Noise static key carried in the same message, and a TAI64N
/// stamp the responder uses to refuse replays (`HandshakeTimestamps`).
public enum IdentityClaim {
    /// Payload version 2 (version 1 had no timestamp; such peers are refused).
    public static let version: UInt8 = 0x02
    /// 1 version byte + 32-byte Ed25519 public key + 12-byte TAI64N.
    public static let length = 1 + PublicKey.byteCount + TAI64N.byteCount
    /// IK message 1 with this payload: e (32) + encrypted s (32 + 16) + payload (45 + 16) = 141.
    public static let message1Length = NoiseConstants.dhLength
        + (NoiseConstants.dhLength + NoiseConstants.tagLength) + (length + NoiseConstants.tagLength)
    /// IK message 2 with an empty payload: e (32) + empty payload tag (16) = 48.
    public static let message2Length = NoiseConstants.dhLength + NoiseConstants.tagLength

    /// The payload claiming `publicKey`, stamped `timestamp`.
    public static func encode(_ publicKey: PublicKey, timestamp: TAI64N) -> [UInt8] {
        [version] + publicKey.bytes + timestamp.bytes
    }

    /// Parses the payload and checks `crypto_sign_ed25519_pk_to_curve25519(claimed) == remoteStatic`.
    public static func verify(payload: [UInt8], remoteStatic: [UInt8]?) throws -> (key: PublicKey, timestamp: TAI64N) {
        guard payload.count == length else {
            throw NoiseError.badLength(what: "identity claim", expected: length, got: payload.count)
        }
        guard payload[0] == version else { throw NoiseError.badPayload("unknown claim version \(payload[0])") }
        let claimed: PublicKey
        do {
            claimed = try PublicKey(bytes: Array(payload[1...PublicKey.byteCount]))
        } catch {
            throw NoiseError.badPayload("claimed key is not a valid Ed25519 public key")
        }
        guard let timestamp = TAI64N(bytes: payload[(1 + PublicKey.byteCount)...]) else {
            throw NoiseError.badPayload("malformed TAI64N timestamp")
        }
        guard let remoteStatic, try claimed.x25519() == remoteStatic else {
            throw NoiseError.badPayload("claimed key \(claimed.short) does not match the Noise static key")
        }
        return (claimed, timestamp)
    }
}
