import CSodium

extension KeyPair {
    /// Ed25519 detached signature over `message` (crypto_sign_detached, RFC 8032 §5.1.6).
    public func sign(_ message: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var sig = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        var sigLen: UInt64 = 0
        let rc = crypto_sign_detached(&sig, &sigLen, message, UInt64(message.count), secretKey)
        precondition(rc == 0, "crypto_sign_detached failed")
        return sig
    }
}

extension PublicKey {
    /// Ed25519 signature length in bytes (crypto_sign_BYTES).
    public static let signatureByteCount = 64

    /// Checks a detached Ed25519 signature (crypto_sign_verify_detached, RFC 8032 §5.1.7).
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == Self.signatureByteCount else { return false }
        Sodium.ensureInitialised()
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}
