import CSodium

/// WireGuard's pre-authentication MACs and cookies (whitepaper §5.4.4 and §5.4.7), with BLAKE2b
/// (`crypto_generichash`) in place of BLAKE2s and libsodium's XChaCha20-Poly1305 (PROTOCOL.md §2.1):
///
/// * `mac1 = MAC(HASH("mac1----" ‖ Spub_r), msg_α)`: anyone who knows the responder's static key
///   can compute it, so it costs a responder one keyed hash to drop random packets before any DH.
/// * `mac2 = MAC(cookie, msg_β)`, 16 zero bytes when the initiator holds no cookie.
/// * `cookie = MAC(R, source address)`, with a secret `R` the responder replaces every
///   `CookieSecret.lifetime`; it reaches the initiator encrypted:
///   `XAEAD(HASH("cookie--" ‖ Spub_r), nonce, cookie, mac1)`.
///
/// `HASH` is unkeyed BLAKE2b with a 32-byte output; `MAC(k, m)` is keyed BLAKE2b with a 16-byte
/// output. `Spub_r` is the responder's X25519 static public key (PROTOCOL.md §1).
public enum HandshakeMAC {
    public static let macLength = 16
    public static let cookieLength = 16
    public static let keyLength = 32
    public static let nonceLength = 24
    /// The sealed cookie: 16 bytes of cookie and the 16-byte Poly1305 tag.
    public static let sealedCookieLength = cookieLength + NoiseConstants.tagLength
    static let mac1Label = Array("mac1----".utf8)
    static let cookieLabel = Array("cookie--".utf8)

    /// `HASH("mac1----" ‖ responderStatic)`: the key of every mac1 sent to that responder.
    public static func mac1Key(responderStatic: [UInt8]) -> [UInt8] {
        hash(mac1Label + responderStatic)
    }

    /// `HASH("cookie--" ‖ responderStatic)`: the key that seals cookies from that responder.
    public static func cookieKey(responderStatic: [UInt8]) -> [UInt8] {
        hash(cookieLabel + responderStatic)
    }

    /// `MAC(key, message)`: keyed BLAKE2b, 16-byte output. Keys are 32 bytes (mac1) or the
    /// 16-byte cookie (mac2, as in WireGuard).
    public static func mac(key: [UInt8], _ message: UnsafeRawBufferPointer) -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(key.count == keyLength || key.count == cookieLength, "MAC keys are 32 or 16 bytes")
        var out = [UInt8](repeating: 0, count: macLength)
        // A 16-byte output with a 32-byte key is within crypto_generichash's limits: cannot fail.
        _ = crypto_generichash(&out, macLength, message.baseAddress, UInt64(message.count), key, key.count)
        return out
    }

    public static func mac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { mac(key: key, $0) }
    }

    /// Constant-time comparison of `expected` (16 bytes) with `received` (`sodium_memcmp`).
    public static func matches(_ expected: [UInt8], _ received: UnsafeRawBufferPointer) -> Bool {
        guard expected.count == received.count, let base = received.baseAddress else { return false }
        return sodium_memcmp(expected, base, expected.count) == 0
    }

    /// Seals `cookie` for the initiator: XChaCha20-Poly1305 with associated data `mac1` (the mac1
    /// of the initiation it answers). Returns 32 bytes.
    public static func sealCookie(_ cookie: [UInt8], key: [UInt8], nonce: [UInt8], mac1: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        precondition(cookie.count == cookieLength && key.count == keyLength && nonce.count == nonceLength)
        var out = [UInt8](repeating: 0, count: sealedCookieLength)
        var outLength: UInt64 = 0
        // Valid lengths: crypto_aead_xchacha20poly1305_ietf_encrypt cannot fail.
        _ = crypto_aead_xchacha20poly1305_ietf_encrypt(&out, &outLength, cookie, UInt64(cookie.count),
                                                       mac1, UInt64(mac1.count), nil, nonce, key)
        return out
    }

    /// Opens a sealed cookie; nil when the tag does not verify (wrong responder, wrong mac1, forged).
    public static func openCookie(_ sealed: UnsafeRawBufferPointer, key: [UInt8], nonce: UnsafeRawBufferPointer,
                                  mac1: [UInt8]) -> [UInt8]? {
        Sodium.ensureInitialised()
        guard sealed.count == sealedCookieLength, nonce.count == nonceLength, key.count == keyLength,
              let sealedBase = sealed.baseAddress, let nonceBase = nonce.baseAddress else { return nil }
        var cookie = [UInt8](repeating: 0, count: cookieLength)
        var length: UInt64 = 0
        let rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &cookie, &length, nil, sealedBase.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count),
            mac1, UInt64(mac1.count), nonceBase.assumingMemoryBound(to: UInt8.self), key)
        return rc == 0 ? cookie : nil
    }

    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: keyLength)
        // Unkeyed, 32-byte output: cannot fail.
        _ = crypto_generichash(&out, keyLength, bytes, UInt64(bytes.count), nil, 0)
        return out
    }
}

/// The responder's changing secret `R` (WireGuard whitepaper §5.4.7): a cookie is
/// `MAC(R, source address)`, so it proves that the initiator receives packets at that address.
/// `R` is replaced every `lifetime`; the previous value is not kept, so a cookie stays valid
/// for at most `lifetime` (the initiator simply gets a new one).
public struct CookieSecret {
    /// WireGuard's COOKIE_SECRET_MAX_AGE.
    public static let lifetimeSeconds: Int64 = 120

    private var secret: [UInt8]
    private var bornSeconds: Int64

    /// `secret` for tests; a random one otherwise.
    public init(nowSeconds: Int64, secret: [UInt8]? = nil) {
        self.secret = secret ?? SecureRandom.bytes(HandshakeMAC.keyLength)
        self.bornSeconds = nowSeconds
    }

    /// The cookie for `address` (the source IP address bytes and the port, big-endian) at
    /// `nowSeconds` (a monotonic clock), replacing `R` first when it is too old.
    public mutating func cookie(for address: [UInt8], nowSeconds: Int64) -> [UInt8] {
        if nowSeconds - bornSeconds >= Self.lifetimeSeconds {
            secret = SecureRandom.bytes(HandshakeMAC.keyLength)
            bornSeconds = nowSeconds
        }
        return HandshakeMAC.mac(key: secret, address)
    }
}

/// The keys a visor's handshakes need, derived once from its identity (deriving the X25519 pair
/// is a scalar multiplication: never per packet).
public struct NoiseStaticIdentity: Sendable {
    public let identity: KeyPair
    /// The Noise static key pair (PROTOCOL.md §1).
    public let staticKeyPair: X25519KeyPair
    /// mac1 and cookie keys of handshakes addressed to this visor.
    public let mac1Key: [UInt8]
    public let cookieKey: [UInt8]

    public init(identity: KeyPair) throws {
        self.identity = identity
        staticKeyPair = try identity.noiseStaticKeyPair()
        mac1Key = HandshakeMAC.mac1Key(responderStatic: staticKeyPair.publicKey)
        cookieKey = HandshakeMAC.cookieKey(responderStatic: staticKeyPair.publicKey)
    }

    public var publicKey: PublicKey { identity.publicKey }
}
