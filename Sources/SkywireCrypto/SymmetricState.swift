/// SymmetricState (Noise spec rev. 34 §5.2): chaining key `ck`, handshake hash `h` and a CipherState.
/// Used by HandshakeState; exposed for completeness and tests. `ck` is wiped on release.
public final class SymmetricState {
    public let cipherState = CipherState()
    private var chainingKey: [UInt8]
    /// `h`, the handshake hash so far.
    public private(set) var handshakeHash: [UInt8]

    /// InitializeSymmetric(protocol_name).
    public init(protocolName: String) {
        let name = Array(protocolName.utf8)
        if name.count <= NoiseConstants.hashLength {
            handshakeHash = name + [UInt8](repeating: 0, count: NoiseConstants.hashLength - name.count)
        } else {
            handshakeHash = NoiseHash.hash(name)
        }
        chainingKey = handshakeHash
    }

    deinit {
        wipe(&chainingKey)
    }

    /// MixKey(input_key_material).
    public func mixKey(_ inputKeyMaterial: [UInt8]) {
        var out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        wipe(&chainingKey)
        chainingKey = out[0]
        cipherState.initializeKey(Self.truncatedKey(out[1]))
        wipe(&out[1])
    }

    /// MixHash(data).
    public func mixHash(_ data: [UInt8]) {
        handshakeHash = NoiseHash.hash(handshakeHash, data)
    }

    /// MixKeyAndHash(input_key_material) (used by the psk token).
    public func mixKeyAndHash(_ inputKeyMaterial: [UInt8]) {
        var out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 3)
        wipe(&chainingKey)
        chainingKey = out[0]
        mixHash(out[1])
        cipherState.initializeKey(Self.truncatedKey(out[2]))
        wipe(&out[2])
    }

    /// EncryptAndHash(plaintext).
    public func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let ciphertext = try cipherState.encryptWithAd(handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// DecryptAndHash(ciphertext).
    public func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let plaintext = try cipherState.decryptWithAd(handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// Split(): two CipherStates, the first for initiator→responder, the second for the reverse.
    /// The chaining key is wiped afterwards.
    public func split() -> (CipherState, CipherState) {
        var out = NoiseHash.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        let c1 = CipherState(key: Self.truncatedKey(out[0]))
        let c2 = CipherState(key: Self.truncatedKey(out[1]))
        wipe(&out[0]); wipe(&out[1])
        wipe(&chainingKey)
        return (c1, c2)
    }

    /// HASHLEN is 64, so temp_k is truncated to 32 bytes (§5.2).
    private static func truncatedKey(_ material: [UInt8]) -> NoiseTransportKey {
        NoiseTransportKey(secure: SecureBytes(copying: material.prefix(NoiseConstants.keyLength)))
    }
}
