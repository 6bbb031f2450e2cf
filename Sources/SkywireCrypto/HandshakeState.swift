/// HandshakeState (Noise spec rev. 34 §5.3), driven by any `HandshakePattern` this module knows.
///
/// Bytes in, bytes out, no I/O. After any error the state is failed and refuses further use
/// (§5.3: a failed handshake must be abandoned). Not Sendable: one owner at a time.
public final class HandshakeState {
    public let protocolName: String
    public let pattern: HandshakePattern
    public let isInitiator: Bool

    private let symmetric: SymmetricState
    private let localStatic: X25519KeyPair?
    /// A preset ephemeral (tests, vectors); otherwise one is generated at the `e` token.
    private var localEphemeral: X25519KeyPair?
    private var localEphemeralUsed = false
    public private(set) var remoteStaticKey: [UInt8]?
    public private(set) var remoteEphemeralKey: [UInt8]?
    private var psks: [SecureBytes]
    private var messageIndex = 0
    private var failed = false
    private var cipherStates: (CipherState, CipherState)?
    private var splitTaken = false

    /// Initialize(handshake_pattern, initiator, prologue, s, e, rs, re) plus the PSKs in the order
    /// the pattern's `psk` tokens use them.
    public init(protocol noiseProtocol: NoiseProtocol, initiator: Bool, prologue: [UInt8],
                localStatic: X25519KeyPair? = nil, localEphemeral: X25519KeyPair? = nil,
                remoteStatic: [UInt8]? = nil, remoteEphemeral: [UInt8]? = nil, psks: [[UInt8]] = []) throws {
        protocolName = noiseProtocol.name
        pattern = noiseProtocol.pattern
        isInitiator = initiator
        self.localStatic = localStatic
        self.localEphemeral = localEphemeral
        remoteStaticKey = remoteStatic
        remoteEphemeralKey = remoteEphemeral
        for (what, key) in [("remote static key", remoteStatic), ("remote ephemeral key", remoteEphemeral)] {
            if let key, key.count != NoiseConstants.dhLength {
                throw NoiseError.badLength(what: what, expected: NoiseConstants.dhLength, got: key.count)
            }
        }
        guard psks.count == pattern.pskCount else {
            throw NoiseError.missingKey("pattern \(pattern.name) needs \(pattern.pskCount) PSKs, got \(psks.count)")
        }
        for psk in psks where psk.count != NoiseConstants.pskLength {
            throw NoiseError.badLength(what: "PSK", expected: NoiseConstants.pskLength, got: psk.count)
        }
        self.psks = psks.map { SecureBytes(copying: $0) }
        symmetric = SymmetricState(protocolName: protocolName)
        symmetric.mixHash(prologue)

        // Pre-messages (§7.1): the initiator's keys first, then the responder's.
        let preMessages: [(tokens: [NoiseToken], isLocal: Bool, fromInitiator: Bool)] = [
            (pattern.initiatorPreMessage, initiator, true),
            (pattern.responderPreMessage, !initiator, false),
        ]
        for (tokens, isLocal, fromInitiator) in preMessages {
            for token in tokens {
                let key: [UInt8]?
                switch (token, isLocal) {
                case (.s, true): key = localStatic?.publicKey
                case (.e, true): key = localEphemeral?.publicKey
                case (.s, false): key = remoteStatic
                case (.e, false): key = remoteEphemeral
                default: throw NoiseError.unsupported("token \(token) in a pre-message")
                }
                guard let key else {
                    throw NoiseError.missingKey("pre-message of the \(fromInitiator ? "initiator" : "responder") needs \(token)")
                }
                symmetric.mixHash(key)
                if token == .e {
                    if pattern.isPSK { symmetric.mixKey(key) }
                    if isLocal { localEphemeralUsed = true }
                }
            }
        }
    }

    /// Convenience: a protocol by name, e.g. "Noise_XX_25519_ChaChaPoly_BLAKE2b".
    public convenience init(protocolName: String, initiator: Bool, prologue: [UInt8],
                            localStatic: X25519KeyPair? = nil, localEphemeral: X25519KeyPair? = nil,
                            remoteStatic: [UInt8]? = nil, remoteEphemeral: [UInt8]? = nil,
                            psks: [[UInt8]] = []) throws {
        try self.init(protocol: NoiseProtocol(name: protocolName), initiator: initiator, prologue: prologue,
                      localStatic: localStatic, localEphemeral: localEphemeral, remoteStatic: remoteStatic,
                      remoteEphemeral: remoteEphemeral, psks: psks)
    }

    /// All handshake messages have been written or read.
    public var isComplete: Bool { messageIndex >= pattern.messages.count }

    /// True when the next handshake step is ours to write.
    public var isMyTurnToWrite: Bool {
        !isComplete && !failed && ((messageIndex % 2 == 0) == isInitiator)
    }

    /// `h`: the handshake hash (§11.2, channel binding). Final once `isComplete`.
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// WriteMessage(payload, message_buffer) (§5.3).
    public func writeMessage(payload: [UInt8] = []) throws -> [UInt8] {
        try checkUsable(writing: true)
        do {
            var out: [UInt8] = []
            for token in pattern.messages[messageIndex] {
                switch token {
                case .e:
                    let e = try takeEphemeral()
                    out += e.publicKey
                    mixEphemeral(e.publicKey)
                case .s:
                    guard let s = localStatic else { throw NoiseError.missingKey("token s needs a local static key") }
                    out += try symmetric.encryptAndHash(s.publicKey)
                default:
                    try processKeyToken(token)
                }
            }
            out += try symmetric.encryptAndHash(payload)
            guard out.count <= NoiseConstants.maxMessageLength else { throw NoiseError.messageTooLong(out.count) }
            finishMessage()
            return out
        } catch {
            failed = true
            throw error
        }
    }

    /// ReadMessage(message, payload_buffer) (§5.3); returns the payload.
    public func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        try checkUsable(writing: false)
        do {
            guard message.count <= NoiseConstants.maxMessageLength else { throw NoiseError.messageTooLong(message.count) }
            var offset = 0
            func take(_ n: Int, _ what: String) throws -> [UInt8] {
                guard message.count - offset >= n else { throw NoiseError.messageTooShort(what: what) }
                defer { offset += n }
                return Array(message[offset..<offset + n])
            }
            for token in pattern.messages[messageIndex] {
                switch token {
                case .e:
                    guard remoteEphemeralKey == nil else { throw NoiseError.wrongState("remote ephemeral already set") }
                    let re = try take(NoiseConstants.dhLength, "remote ephemeral key")
                    remoteEphemeralKey = re
                    mixEphemeral(re)
                case .s:
                    guard remoteStaticKey == nil else { throw NoiseError.wrongState("remote static already set") }
                    let length = NoiseConstants.dhLength + (symmetric.cipherState.hasKey ? NoiseConstants.tagLength : 0)
                    remoteStaticKey = try symmetric.decryptAndHash(take(length, "remote static key"))
                default:
                    try processKeyToken(token)
                }
            }
            let payload = try symmetric.decryptAndHash(Array(message[offset...]))
            finishMessage()
            return payload
        } catch {
            failed = true
            throw error
        }
    }

    /// The two CipherStates of Split(): `initiatorToResponder` is the first, `responderToInitiator`
    /// the second (§5.2). Available once, after the last handshake message.
    public func split() throws -> (initiatorToResponder: CipherState, responderToInitiator: CipherState) {
        guard let cipherStates, !splitTaken else {
            throw NoiseError.wrongState(splitTaken ? "Split() already taken" : "handshake not complete")
        }
        splitTaken = true
        self.cipherStates = nil
        return (cipherStates.0, cipherStates.1)
    }

    // MARK: - Internals

    private func checkUsable(writing: Bool) throws {
        guard !failed else { throw NoiseError.wrongState("handshake failed earlier") }
        guard !isComplete else { throw NoiseError.wrongState("handshake already complete") }
        guard isMyTurnToWrite == writing else {
            throw NoiseError.wrongState(writing ? "it is the peer's turn to send" : "it is our turn to send")
        }
    }

    private func takeEphemeral() throws -> X25519KeyPair {
        guard !localEphemeralUsed else { throw NoiseError.wrongState("local ephemeral already sent") }
        localEphemeralUsed = true
        if let e = localEphemeral { return e }
        let e = X25519KeyPair.generate()
        localEphemeral = e
        return e
    }

    /// The `e` token's hashing: MixHash(e.public_key), and in PSK handshakes MixKey too (§9.2).
    private func mixEphemeral(_ publicKey: [UInt8]) {
        symmetric.mixHash(publicKey)
        if pattern.isPSK { symmetric.mixKey(publicKey) }
    }

    /// ee, es, se, ss and psk, identical for reading and writing (§5.3).
    private func processKeyToken(_ token: NoiseToken) throws {
        switch token {
        case .ee:
            try mixDH(local: localEphemeral, remote: remoteEphemeralKey, token)
        case .es:
            if isInitiator { try mixDH(local: localEphemeral, remote: remoteStaticKey, token) }
            else { try mixDH(local: localStatic, remote: remoteEphemeralKey, token) }
        case .se:
            if isInitiator { try mixDH(local: localStatic, remote: remoteEphemeralKey, token) }
            else { try mixDH(local: localEphemeral, remote: remoteStaticKey, token) }
        case .ss:
            try mixDH(local: localStatic, remote: remoteStaticKey, token)
        case .psk:
            guard !psks.isEmpty else { throw NoiseError.missingKey("no PSK left for token psk") }
            let psk = psks.removeFirst()
            var bytes = psk.bytes
            symmetric.mixKeyAndHash(bytes)
            wipe(&bytes)
        case .e, .s:
            throw NoiseError.wrongState("token \(token) handled by the caller")
        }
    }

    private func mixDH(local: X25519KeyPair?, remote: [UInt8]?, _ token: NoiseToken) throws {
        guard let local, let remote else { throw NoiseError.missingKey("token \(token) lacks a key") }
        var shared = try local.dh(remote)
        symmetric.mixKey(shared)
        wipe(&shared)
    }

    private func finishMessage() {
        messageIndex += 1
        if isComplete {
            cipherStates = symmetric.split()
        }
    }
}
