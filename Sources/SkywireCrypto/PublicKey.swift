import CSodium

/// A visor's address: its 32-byte Ed25519 public key, written as 64 lowercase hex characters.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible, Comparable {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// Accepts exactly 32 bytes that decode to a point on the curve.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == Self.byteCount else {
            throw CryptoError.invalidLength(expected: Self.byteCount, got: bytes.count)
        }
        self.bytes = bytes
        // An address must convert to an X25519 key (crypto_sign_ed25519_pk_to_curve25519).
        _ = try self.x25519()
    }

    /// Parses the canonical form: 64 lowercase hex characters.
    public init(hex: String) throws {
        guard hex.utf8.count == 64, let raw = Hex.decode(hex) else {
            throw CryptoError.invalidHex("public key")
        }
        try self.init(bytes: raw)
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    /// Short form for logs: first 8 hex characters and an ellipsis.
    public var short: String { String(hex.prefix(8)) + "…" }

    /// The Noise static key: crypto_sign_ed25519_pk_to_curve25519.
    public func x25519() throws -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: 32)
        let rc = crypto_sign_ed25519_pk_to_curve25519(&out, bytes)
        guard rc == 0 else { throw CryptoError.invalidPublicKey }
        return out
    }

    public static func < (a: PublicKey, b: PublicKey) -> Bool {
        a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}
