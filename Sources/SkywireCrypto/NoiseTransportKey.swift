import CSodium

/// A ChaChaPoly key (Noise spec rev. 34 §12.3) used with explicit nonces:
/// `crypto_aead_chacha20poly1305_ietf_*`, nonce = 4 zero bytes || 64-bit little-endian counter,
/// ciphertext = encrypted plaintext || 16-byte tag.
///
/// `seal`/`open` write into caller buffers and do not allocate; `plaintext`/`ciphertext` and the
/// output may be the very same memory (in-place), but must not partially overlap. This is what
/// sudph uses (PROTOCOL.md §4.1, Noise §11.4 out-of-order transport messages).
/// Immutable after creation (the key is never changed in place; Rekey makes a new key), so it is
/// safe to share between threads without a lock.
public final class NoiseTransportKey: @unchecked Sendable {
    let key: SecureBytes

    /// A key from 32 bytes (e.g. from `CipherState.key` or a test).
    public convenience init(bytes: [UInt8]) throws {
        guard bytes.count == NoiseConstants.keyLength else {
            throw NoiseError.badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: bytes.count)
        }
        self.init(secure: SecureBytes(copying: bytes))
    }

    init(secure: SecureBytes) {
        Sodium.ensureInitialised()
        self.key = secure
    }

    /// ENCRYPT(k, n, ad, plaintext) into `output`; returns the bytes written (plaintext + 16).
    public func seal(counter: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard counter != NoiseConstants.reservedNonce else { throw NoiseError.nonceExhausted }
        return try sealAllowingReserved(counter: counter, ad: ad, plaintext: plaintext, into: output)
    }

    /// DECRYPT(k, n, ad, ciphertext) into `output`; returns the plaintext length. A tag mismatch
    /// is `NoiseError.decryptFailed` (the output bytes are then unspecified).
    public func open(counter: UInt64, ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard counter != NoiseConstants.reservedNonce else { throw NoiseError.nonceExhausted }
        guard ciphertext.count >= NoiseConstants.tagLength else {
            throw NoiseError.badLength(what: "ciphertext (at least the tag)", expected: NoiseConstants.tagLength,
                                       got: ciphertext.count)
        }
        guard ciphertext.count <= NoiseConstants.maxMessageLength else {
            throw NoiseError.messageTooLong(ciphertext.count)
        }
        let plainLength = ciphertext.count - NoiseConstants.tagLength
        guard output.count >= plainLength else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes, plaintext needs \(plainLength)")
        }
        try Self.checkOverlap(UnsafeRawBufferPointer(start: ciphertext.baseAddress, count: plainLength), output)
        // Checked above: at least the tag, so the pointer is non-nil.
        guard let cipherBase = ciphertext.uint8Pointer else { throw NoiseError.decryptFailed }
        var nonce = Self.nonce(counter)
        var written: UInt64 = 0
        let rc = withUnsafeBytes(of: &nonce) { noncePtr in
            crypto_aead_chacha20poly1305_ietf_decrypt(
                output.uint8Pointer, &written, nil,
                cipherBase, UInt64(ciphertext.count),
                ad.uint8Pointer, UInt64(ad.count),
                noncePtr.baseAddress!.assumingMemoryBound(to: UInt8.self), key.nonNullBytes)
        }
        guard rc == 0 else { throw NoiseError.decryptFailed }
        return Int(written)
    }

    /// REKEY(k) (§4.2): the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes).
    public func rekeyed() throws -> NoiseTransportKey {
        let zeros = [UInt8](repeating: 0, count: NoiseConstants.keyLength)
        var out = [UInt8](repeating: 0, count: NoiseConstants.keyLength + NoiseConstants.tagLength)
        defer { wipe(&out) }
        _ = try zeros.withUnsafeBytes { z in
            try out.withUnsafeMutableBytes { o in
                try sealAllowingReserved(counter: NoiseConstants.reservedNonce,
                                         ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext: z, into: o)
            }
        }
        return NoiseTransportKey(secure: SecureBytes(copying: out.prefix(NoiseConstants.keyLength)))
    }

    /// The raw key bytes; for tests and for handing a key to an interop peer. Wipe the copy.
    public func exportBytes() -> [UInt8] { key.bytes }

    // MARK: - Internals

    private func sealAllowingReserved(counter: UInt64, ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                                      into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard plaintext.count <= NoiseConstants.maxPlaintextLength else {
            throw NoiseError.messageTooLong(plaintext.count + NoiseConstants.tagLength)
        }
        let needed = plaintext.count + NoiseConstants.tagLength
        guard output.count >= needed else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes, ciphertext needs \(needed)")
        }
        try Self.checkOverlap(plaintext, UnsafeMutableRawBufferPointer(rebasing: output[0..<needed]))
        // Checked above: room for at least the tag, so the pointer is non-nil.
        guard let outBase = output.uint8Pointer else { throw NoiseError.badBuffer("empty output") }
        var nonce = Self.nonce(counter)
        var written: UInt64 = 0
        let rc = withUnsafeBytes(of: &nonce) { noncePtr in
            crypto_aead_chacha20poly1305_ietf_encrypt(
                outBase, &written,
                plaintext.uint8Pointer, UInt64(plaintext.count),
                ad.uint8Pointer, UInt64(ad.count), nil,
                noncePtr.baseAddress!.assumingMemoryBound(to: UInt8.self), key.nonNullBytes)
        }
        guard rc == 0 else { throw NoiseError.badBuffer("crypto_aead_chacha20poly1305_ietf_encrypt failed") }
        return Int(written)
    }

    /// The 96-bit IETF nonce of Noise §12.3: 32 zero bits, then the counter little-endian.
    @inline(__always)
    static func nonce(_ counter: UInt64) -> (UInt32, UInt32, UInt32) {
        (0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }

    /// Input and output must be the same memory or disjoint.
    @inline(__always)
    static func checkOverlap(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer) throws {
        guard let inBase = input.baseAddress, let outBase = output.baseAddress,
              input.count > 0, output.count > 0 else { return }
        if UnsafeRawPointer(outBase) == inBase { return }
        let inEnd = inBase + input.count
        let outEnd = UnsafeRawPointer(outBase) + output.count
        if inBase < outEnd && UnsafeRawPointer(outBase) < inEnd {
            throw NoiseError.badBuffer("input and output partially overlap")
        }
    }
}
