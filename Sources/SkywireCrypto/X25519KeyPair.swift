import CSodium

/// A Curve25519 key pair for Noise's DH functions (Noise spec rev. 34 §4.1, §12.1), on libsodium.
/// The secret lives in wiped-on-release memory and never leaves this type except through `dh`.
public struct X25519KeyPair: Sendable {
    /// The 32-byte public key (`crypto_scalarmult_base` of the secret).
    public let publicKey: [UInt8]
    let secret: SecureBytes

    /// GENERATE_KEYPAIR(): 32 random bytes from libsodium's CSPRNG (`randombytes_buf`).
    public static func generate() -> X25519KeyPair {
        Sodium.ensureInitialised()
        let secret = SecureBytes(count: NoiseConstants.dhLength) { _ in }
        randombytes_buf(UnsafeMutableRawPointer(mutating: secret.nonNullBytes), secret.count)
        // A fresh 32-byte secret always has a public key (scalarmult_base cannot fail on it).
        return (try? X25519KeyPair(secret: secret)) ?? generate()
    }

    /// A key pair from a given 32-byte secret (e.g. test vectors or an Ed25519-derived key).
    public init(secretKey: [UInt8]) throws {
        guard secretKey.count == NoiseConstants.dhLength else {
            throw NoiseError.badLength(what: "X25519 secret key", expected: NoiseConstants.dhLength, got: secretKey.count)
        }
        try self.init(secret: SecureBytes(copying: secretKey))
    }

    init(secret: SecureBytes) throws {
        Sodium.ensureInitialised()
        var pk = [UInt8](repeating: 0, count: NoiseConstants.dhLength)
        let rc = crypto_scalarmult_base(&pk, secret.nonNullBytes)
        guard rc == 0 else { throw NoiseError.dhFailed }
        self.secret = secret
        self.publicKey = pk
    }

    /// DH(key_pair, public_key) (§4.1): `crypto_scalarmult`. An all-zero output (a low-order or
    /// otherwise degenerate remote key) is rejected with `NoiseError.dhFailed`.
    public func dh(_ remotePublic: [UInt8]) throws -> [UInt8] {
        guard remotePublic.count == NoiseConstants.dhLength else {
            throw NoiseError.badLength(what: "X25519 public key", expected: NoiseConstants.dhLength, got: remotePublic.count)
        }
        var shared = [UInt8](repeating: 0, count: NoiseConstants.dhLength)
        let rc = crypto_scalarmult(&shared, secret.nonNullBytes, remotePublic)
        // libsodium already returns -1 on an all-zero result; check again so no version differs.
        guard rc == 0, sodium_is_zero(shared, shared.count) == 0 else {
            wipe(&shared)
            throw NoiseError.dhFailed
        }
        return shared
    }
}

extension KeyPair {
    /// The Noise static key pair of this identity (PROTOCOL.md §1): the secret half from
    /// `crypto_sign_ed25519_sk_to_curve25519`. Its public half equals `publicKey.x25519()`
    /// (`crypto_sign_ed25519_pk_to_curve25519`); this is checked, a mismatch is `keyMismatch`.
    public func noiseStaticKeyPair() throws -> X25519KeyPair {
        Sodium.ensureInitialised()
        guard secretKey.count == KeyPair.secretByteCount else { throw CryptoError.keyMismatch }
        let secret = SecureBytes(count: NoiseConstants.dhLength) { _ in }
        _ = crypto_sign_ed25519_sk_to_curve25519(UnsafeMutablePointer(mutating: secret.nonNullBytes), secretKey)
        let pair = try X25519KeyPair(secret: secret)
        guard try publicKey.x25519() == pair.publicKey else { throw CryptoError.keyMismatch }
        return pair
    }
}
