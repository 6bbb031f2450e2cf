import CSodium

/// libsodium's ChaCha20-Poly1305 (`crypto_aead_chacha20poly1305_ietf_*`), which the transports
/// used before `ChaChaPolyCipher` (OpenSSL): kept as the reference that the equivalence tests
/// and the AEAD benchmark (bench/aead.sh) compare OpenSSL's bytes and speed against. Same
/// nonce layout as `NoiseTransportKey` (Noise §12.3); no in-place or length checks beyond
/// libsodium's own: callers pass disjoint buffers of the right sizes.
public struct ChaChaPolyReference: Sendable {
    private let key: SecureBytes

    public init(key bytes: [UInt8]) throws {
        guard bytes.count == NoiseConstants.keyLength else {
            throw NoiseError.badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: bytes.count)
        }
        Sodium.ensureInitialised()
        key = SecureBytes(copying: bytes)
    }

    /// crypto_aead_chacha20poly1305_ietf_encrypt into `output` (at least plaintext + 16 bytes);
    /// returns the bytes written.
    public func seal(counter: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard output.count >= plaintext.count + NoiseConstants.tagLength, let outBase = output.uint8Pointer else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes")
        }
        var written: UInt64 = 0
        let rc = NoiseTransportKey.withNonce(counter) { n in
            crypto_aead_chacha20poly1305_ietf_encrypt(outBase, &written, plaintext.uint8Pointer, UInt64(plaintext.count),
                                                      ad.uint8Pointer, UInt64(ad.count), nil, n, key.nonNullBytes)
        }
        guard rc == 0 else { throw NoiseError.badBuffer("crypto_aead_chacha20poly1305_ietf_encrypt failed") }
        return Int(written)
    }

    /// crypto_aead_chacha20poly1305_ietf_decrypt into `output`; returns the plaintext length,
    /// `NoiseError.decryptFailed` on a tag mismatch.
    public func open(counter: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard ciphertext.count >= NoiseConstants.tagLength, let cipherBase = ciphertext.uint8Pointer else {
            throw NoiseError.decryptFailed
        }
        guard output.count >= ciphertext.count - NoiseConstants.tagLength else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes")
        }
        var written: UInt64 = 0
        let rc = NoiseTransportKey.withNonce(counter) { n in
            crypto_aead_chacha20poly1305_ietf_decrypt(output.uint8Pointer, &written, nil, cipherBase, UInt64(ciphertext.count),
                                                      ad.uint8Pointer, UInt64(ad.count), n, key.nonNullBytes)
        }
        guard rc == 0 else { throw NoiseError.decryptFailed }
        return Int(written)
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
