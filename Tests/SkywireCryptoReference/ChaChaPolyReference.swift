import CSodium
import SkywireCrypto

/// libsodium's ChaCha20-Poly1305 (`crypto_aead_chacha20poly1305_ietf_*`), which the transports
/// used before `ChaChaPolyCipher` (OpenSSL): kept as the reference that the equivalence tests
/// and the AEAD benchmark (bench/aead.sh) compare OpenSSL's bytes and speed against. Its own
/// module beside the tests, so the visor does not carry it. Same nonce layout as
/// `NoiseTransportKey` (Noise §12.3), built here independently; no in-place or length checks
/// beyond libsodium's own: callers pass disjoint buffers of the right sizes.
public struct ChaChaPolyReference: Sendable {
    private let key: [UInt8]

    public init(key bytes: [UInt8]) throws {
        guard bytes.count == NoiseConstants.keyLength else {
            throw NoiseError.badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: bytes.count)
        }
        // sodium_init() is idempotent and thread-safe; < 0 means libsodium cannot run here.
        guard sodium_init() >= 0 else { throw NoiseError.cipher("sodium_init() failed") }
        key = bytes
    }

    /// crypto_aead_chacha20poly1305_ietf_encrypt into `output` (at least plaintext + 16 bytes);
    /// returns the bytes written.
    public func seal(counter: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard output.count >= plaintext.count + NoiseConstants.tagLength,
              let outBase = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes")
        }
        var written: UInt64 = 0
        let nonce = Self.nonce(counter)
        let rc = crypto_aead_chacha20poly1305_ietf_encrypt(
            outBase, &written, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(plaintext.count),
            ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count), nil, nonce, key)
        guard rc == 0 else { throw NoiseError.badBuffer("crypto_aead_chacha20poly1305_ietf_encrypt failed") }
        return Int(written)
    }

    /// crypto_aead_chacha20poly1305_ietf_decrypt into `output`; returns the plaintext length,
    /// `NoiseError.decryptFailed` on a tag mismatch.
    public func open(counter: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard ciphertext.count >= NoiseConstants.tagLength,
              let cipherBase = ciphertext.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw NoiseError.decryptFailed
        }
        guard output.count >= ciphertext.count - NoiseConstants.tagLength else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes")
        }
        var written: UInt64 = 0
        let nonce = Self.nonce(counter)
        let rc = crypto_aead_chacha20poly1305_ietf_decrypt(
            output.baseAddress?.assumingMemoryBound(to: UInt8.self), &written, nil, cipherBase, UInt64(ciphertext.count),
            ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count), nonce, key)
        guard rc == 0 else { throw NoiseError.decryptFailed }
        return Int(written)
    }

    /// The 96-bit IETF nonce of Noise §12.3: 4 zero bytes, then the counter little-endian.
    static func nonce(_ counter: UInt64) -> [UInt8] {
        [0, 0, 0, 0] + (0..<8).map { UInt8(truncatingIfNeeded: counter >> (8 * $0)) }
    }
}

/// Seal and open with explicit counters, as both ChaCha20-Poly1305 implementations offer them
/// (`NoiseTransportKey` on OpenSSL, `ChaChaPolyReference` on libsodium): what the equivalence
/// tests and the AEAD benchmark drive.
public protocol ChaChaPolySealing {
    func seal(counter: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawBufferPointer) throws -> Int
    func open(counter: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
              into output: UnsafeMutableRawBufferPointer) throws -> Int
}

extension NoiseTransportKey: ChaChaPolySealing {}
extension ChaChaPolyReference: ChaChaPolySealing {}
