import CSodium

/// A visor identity: an Ed25519 key pair from libsodium (crypto_sign_keypair).
/// The secret key is libsodium's 64-byte form (seed || public key).
public struct KeyPair: Sendable {
    public static let secretByteCount = 64
    public let publicKey: PublicKey
    public let secretKey: [UInt8]

    /// A fresh key pair from libsodium's CSPRNG.
    public static func generate() -> KeyPair {
        Sodium.ensureInitialised()
        var pk = [UInt8](repeating: 0, count: 32)
        var sk = [UInt8](repeating: 0, count: 64)
        let rc = crypto_sign_keypair(&pk, &sk)
        precondition(rc == 0, "crypto_sign_keypair failed")
        // crypto_sign_keypair always yields a valid point.
        return KeyPair(publicKey: try! PublicKey(bytes: pk), secretKey: sk)
    }

    /// Deterministic key pair from a 32-byte seed (crypto_sign_seed_keypair); for tests.
    public static func fromSeed(_ seed: [UInt8]) throws -> KeyPair {
        Sodium.ensureInitialised()
        guard seed.count == 32 else { throw CryptoError.invalidLength(expected: 32, got: seed.count) }
        var pk = [UInt8](repeating: 0, count: 32)
        var sk = [UInt8](repeating: 0, count: 64)
        guard crypto_sign_seed_keypair(&pk, &sk, seed) == 0 else { throw CryptoError.invalidPublicKey }
        return KeyPair(publicKey: try PublicKey(bytes: pk), secretKey: sk)
    }

    private init(publicKey: PublicKey, secretKey: [UInt8]) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Loads a stored key pair and checks that the secret key belongs to `publicKey`
    /// (crypto_sign_ed25519_sk_to_pk): a mismatch is an error, never a regeneration.
    public init(secretKeyHex: String, publicKey: PublicKey) throws {
        guard secretKeyHex.utf8.count == 128, let sk = Hex.decode(secretKeyHex) else {
            throw CryptoError.invalidHex("secret key")
        }
        Sodium.ensureInitialised()
        var derived = [UInt8](repeating: 0, count: 32)
        guard crypto_sign_ed25519_sk_to_pk(&derived, sk) == 0 else { throw CryptoError.keyMismatch }
        // Also check the seed really produces that public key, not only the stored copy.
        var seed = [UInt8](repeating: 0, count: 32)
        crypto_sign_ed25519_sk_to_seed(&seed, sk)
        var pk2 = [UInt8](repeating: 0, count: 32)
        var sk2 = [UInt8](repeating: 0, count: 64)
        crypto_sign_seed_keypair(&pk2, &sk2, seed)
        guard derived == publicKey.bytes, pk2 == publicKey.bytes else { throw CryptoError.keyMismatch }
        self.publicKey = publicKey
        self.secretKey = sk
    }

    public var secretKeyHex: String { Hex.encode(secretKey) }

    /// The Noise static private key: crypto_sign_ed25519_sk_to_curve25519.
    public func x25519Secret() -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 32)
        crypto_sign_ed25519_sk_to_curve25519(&out, secretKey)
        return out
    }
}
