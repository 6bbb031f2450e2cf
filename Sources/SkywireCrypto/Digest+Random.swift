import CSodium

/// Unkeyed BLAKE2b with a chosen output length (crypto_generichash, RFC 7693).
public enum Blake2b {
    /// BLAKE2b-256 of `bytes` (32-byte output), as used for discovery request bodies.
    public static func hash256(_ bytes: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 32)
        // With no key and a 32-byte output this cannot fail.
        _ = crypto_generichash(&out, 32, bytes, UInt64(bytes.count), nil, 0)
        return out
    }
}

/// Random bytes from libsodium's CSPRNG (randombytes_buf).
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: count)
        // An empty array may have no storage (nil base address): nothing to fill.
        out.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
        return out
    }
}

/// Lowercase hex, the canonical form of keys and signatures (public face of `Hex`).
public enum HexCoding {
    public static func encode(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }
    /// nil unless `s` is lowercase hex of even length.
    public static func decode(_ s: String) -> [UInt8]? { Hex.decode(s) }
}
