import CLibCrypto

/// One OpenSSL `EVP_CIPHER_CTX` for ChaCha20-Poly1305 (RFC 8439 §2.8, `EVP_chacha20_poly1305`)
/// holding one key: the key is set once when the context is made (EVP_CipherInit_ex), each
/// record sets only its 96-bit nonce, so sealing or opening allocates nothing. OpenSSL's one-pass
/// AVX-512/AVX2 (x86-64) and NEON (aarch64) code runs under it; the bytes are libsodium's
/// `crypto_aead_chacha20poly1305_ietf_*` (the same construction; `ChaChaPolyReference`).
///
/// Not thread-safe: one record at a time. Each thread keeps its own (`ThreadCiphers`) and loads
/// the key of the record's `NoiseTransportKey` into one when it is not there yet.
final class ChaChaPolyCipher: @unchecked Sendable {
    // @unchecked Sendable: confined to the one thread whose `ThreadCiphers` made it (a
    // pthread-specific value, never handed to another thread).
    private let context: OpaquePointer

    /// A context for `key` (32 bytes), libcrypto initialised first (`LibCrypto.initialised`).
    /// Throws `NoiseError.cipher` with OpenSSL's error text. A throw after `context` is set runs
    /// `deinit`, which frees it (so it is not freed here).
    init(key: SecureBytes) throws(NoiseError) {
        _ = LibCrypto.initialised
        guard let context = EVP_CIPHER_CTX_new() else { throw LibCrypto.error("EVP_CIPHER_CTX_new") }
        self.context = context
        guard EVP_CipherInit_ex(context, EVP_chacha20_poly1305(), nil, nil, nil, LibCrypto.keepDirection) == 1 else {
            throw LibCrypto.error("EVP_CipherInit_ex(chacha20-poly1305)")
        }
        try load(key: key)
    }

    /// Replaces the key (EVP_CipherInit_ex with only the key): the context then seals and opens
    /// with `key` as if made for it; nothing is allocated.
    func load(key: SecureBytes) throws(NoiseError) {
        guard key.count == NoiseConstants.keyLength else {
            throw .badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: key.count)
        }
        guard EVP_CipherInit_ex(context, nil, nil, key.nonNullBytes, nil, LibCrypto.keepDirection) == 1 else {
            throw LibCrypto.error("EVP_CipherInit_ex(key)")
        }
    }

    /// EVP_CIPHER_CTX_free wipes the key state (OPENSSL_clear_free) and frees the context.
    deinit { EVP_CIPHER_CTX_free(context) }

    /// Seals `plaintext` into `output` (ciphertext, then the 16-byte tag at `output + count`).
    /// The caller checked lengths and overlap; `output` may be `plaintext`'s own memory.
    func seal(nonce: UnsafePointer<UInt8>, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
              into output: UnsafeMutablePointer<UInt8>) throws(NoiseError) {
        guard EVP_EncryptInit_ex(context, nil, nil, nil, nonce) == 1 else { throw LibCrypto.error("EVP_EncryptInit_ex") }
        var written: Int32 = 0
        if let adBase = ad.uint8Pointer, ad.count > 0 {
            guard EVP_EncryptUpdate(context, nil, &written, adBase, Int32(ad.count)) == 1 else {
                throw LibCrypto.error("EVP_EncryptUpdate(ad)")
            }
        }
        if let plainBase = plaintext.uint8Pointer, plaintext.count > 0 {
            guard EVP_EncryptUpdate(context, output, &written, plainBase, Int32(plaintext.count)) == 1,
                  Int(written) == plaintext.count else { throw LibCrypto.error("EVP_EncryptUpdate") }
        }
        let tag = output + plaintext.count
        guard EVP_EncryptFinal_ex(context, tag, &written) == 1 else { throw LibCrypto.error("EVP_EncryptFinal_ex") }
        // The tag straight from the provider (EVP_CIPHER_CTX_get_params), not through
        // EVP_CIPHER_CTX_ctrl(EVP_CTRL_AEAD_GET_TAG), which builds the same parameter and more.
        let ok = LibCrypto.withTagParameter(tag) { EVP_CIPHER_CTX_get_params(context, $0) }
        guard ok == 1 else { throw LibCrypto.error("EVP_CIPHER_CTX_get_params(tag)") }
    }

    /// Opens `ciphertext` (at least the tag; checked by the caller) into `output`; a tag that
    /// does not verify is `NoiseError.decryptFailed` (the output bytes are then unspecified).
    func open(nonce: UnsafePointer<UInt8>, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
              into output: UnsafeMutablePointer<UInt8>?) throws(NoiseError) {
        let plainLength = ciphertext.count - NoiseConstants.tagLength
        guard let cipherBase = ciphertext.uint8Pointer, plainLength >= 0 else { throw .decryptFailed }
        // The nonce and the expected tag in one call: the provider's dinit sets the nonce, then
        // its parameters (the tag, copied; OpenSSL takes a non-const pointer and never writes).
        let tag = UnsafeMutablePointer(mutating: cipherBase + plainLength)
        let ok = LibCrypto.withTagParameter(tag) { EVP_DecryptInit_ex2(context, nil, nil, nonce, $0) }
        guard ok == 1 else { throw LibCrypto.error("EVP_DecryptInit_ex2(nonce, tag)") }
        var written: Int32 = 0
        if let adBase = ad.uint8Pointer, ad.count > 0 {
            guard EVP_DecryptUpdate(context, nil, &written, adBase, Int32(ad.count)) == 1 else {
                throw LibCrypto.error("EVP_DecryptUpdate(ad)")
            }
        }
        if plainLength > 0 {
            guard let output, EVP_DecryptUpdate(context, output, &written, cipherBase, Int32(plainLength)) == 1,
                  Int(written) == plainLength else { throw LibCrypto.error("EVP_DecryptUpdate") }
        }
        // Final checks the tag (CRYPTO_memcmp) and writes nothing for a stream cipher.
        var scratch = UInt8(0)
        guard EVP_DecryptFinal_ex(context, &scratch, &written) == 1 else {
            ERR_clear_error()
            throw .decryptFailed
        }
    }
}

/// OpenSSL libcrypto helpers.
enum LibCrypto {
    /// EVP_CipherInit_ex's `enc` argument that leaves the direction as it is (-1).
    static let keepDirection: Int32 = -1
    /// Room for one ERR_error_string_n line.
    static let errorTextCapacity = 256
    /// OSSL_CIPHER_PARAM_AEAD_TAG, NUL-terminated and static (an OSSL_PARAM keeps the pointer).
    static let tagKey: StaticString = "tag"
    /// OSSL_PARAM_UNMODIFIED: `return_size` before the provider sets it.
    static let parameterUnmodified = Int(bitPattern: UInt.max)

    /// `body` with an OSSL_PARAM list holding one octet string, the 16-byte AEAD tag at `tag`
    /// (OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, ...), OSSL_PARAM_END), built on the
    /// stack: nothing to allocate per record.
    @inline(__always)
    static func withTagParameter(_ tag: UnsafeMutablePointer<UInt8>, _ body: (UnsafeMutablePointer<OSSL_PARAM>) -> Int32) -> Int32 {
        let key = UnsafeRawPointer(tagKey.utf8Start).assumingMemoryBound(to: CChar.self)
        var params = (OSSL_PARAM(key: key, data_type: UInt32(OSSL_PARAM_OCTET_STRING), data: UnsafeMutableRawPointer(tag),
                                 data_size: NoiseConstants.tagLength, return_size: parameterUnmodified),
                      OSSL_PARAM())
        return withUnsafeMutablePointer(to: &params) { tuple in
            tuple.withMemoryRebound(to: OSSL_PARAM.self, capacity: 2) { body($0) }
        }
    }

    /// The oldest error on this thread's OpenSSL error queue as `NoiseError.cipher`, naming the
    /// call that failed (ERR_get_error, ERR_error_string_n); the queue is cleared.
    static func error(_ call: String) -> NoiseError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return .cipher("\(call) failed (no OpenSSL error queued)") }
        var text = [CChar](repeating: 0, count: errorTextCapacity)
        ERR_error_string_n(code, &text, text.count)
        let line = text.withUnsafeBufferPointer { buffer in
            String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return .cipher("\(call) failed: \(line)")
    }
}
