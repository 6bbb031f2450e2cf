/// Constants of Noise_*_25519_ChaChaPoly_BLAKE2b (Noise spec rev. 34, §4 and §12) and of
/// skywire-swift's use of it (docs/PROTOCOL.md §2).
public enum NoiseConstants {
    /// The prologue every skywire-swift handshake mixes in (PROTOCOL.md §2).
    public static let prologue: [UInt8] = Array("skywire-swift/1".utf8)
    /// The protocol skywire-swift transports speak.
    public static let ikProtocolName = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
    /// DHLEN for Curve25519 (§12.1).
    public static let dhLength = 32
    /// HASHLEN for BLAKE2b (§12.8).
    public static let hashLength = 64
    /// BLOCKLEN for BLAKE2b, used by HMAC (§4.3, §12.8).
    public static let blockLength = 128
    /// Length of a ChaChaPoly key (§4.2).
    public static let keyLength = 32
    /// Length of the Poly1305 authentication tag (§4.2).
    public static let tagLength = 16
    /// Length of the IETF ChaCha20-Poly1305 nonce: 4 zero bytes || 64-bit little-endian counter (§12.3).
    public static let nonceLength = 12
    /// Length of a pre-shared key (§9).
    public static let pskLength = 32
    /// The largest Noise message, handshake or transport (§3).
    public static let maxMessageLength = 65535
    /// The largest transport plaintext: a maximal message minus the tag.
    public static let maxPlaintextLength = maxMessageLength - tagLength
    /// Nonce 2^64-1 is reserved (§5.1) and used only by Rekey (§4.2).
    public static let reservedNonce = UInt64.max
}
