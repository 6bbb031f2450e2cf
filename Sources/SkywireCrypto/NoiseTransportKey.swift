import Synchronization

/// A ChaChaPoly key (Noise spec rev. 34 §12.3) used with explicit nonces: ChaCha20-Poly1305
/// (RFC 8439 §2.8) on OpenSSL libcrypto (`ChaChaPolyCipher`), nonce = 4 zero bytes || 64-bit
/// little-endian counter, ciphertext = encrypted plaintext || 16-byte tag.
///
/// `seal`/`open` write into caller buffers and do not allocate; `plaintext`/`ciphertext` and the
/// output may be the very same memory (in-place), but must not partially overlap. This is what
/// sudph uses (PROTOCOL.md §4.1, Noise §11.4 out-of-order transport messages).
/// The key never changes (Rekey makes a new key) and several threads may seal with it at once
/// (sudph's event loop and the VPN threads). A key holds no cipher context: each thread keeps a
/// few (`ThreadCiphers`), each loaded with one key and tagged with that key's `id`, so a record
/// finds its thread's context for the key without a lock, and a key that is not in use costs
/// no OpenSSL memory (a relay or a visor holds thousands of idle sessions).
public final class NoiseTransportKey: Sendable {
    let key: SecureBytes
    /// Unique for the process's life (never reused, unlike an address), so a thread's context
    /// tagged with it holds this key and no other.
    let id: UInt64
    private static let nextID = Atomic<UInt64>(1)

    /// A key from 32 bytes (e.g. from `CipherState.key` or a test).
    public convenience init(bytes: [UInt8]) throws {
        guard bytes.count == NoiseConstants.keyLength else {
            throw NoiseError.badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: bytes.count)
        }
        self.init(secure: SecureBytes(copying: bytes))
    }

    init(secure: SecureBytes) {
        self.key = secure
        self.id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
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
        try Self.withNonce(counter) { n in
            try withCipher { cipher throws(NoiseError) in
                try cipher.open(nonce: n, ad: ad, ciphertext: ciphertext, into: output.uint8Pointer)
            }
        }
        return plainLength
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
        try Self.withNonce(counter) { n in
            try withCipher { cipher throws(NoiseError) in
                try cipher.seal(nonce: n, ad: ad, plaintext: plaintext, into: outBase)
            }
        }
        return needed
    }

    /// Runs `body` with this thread's cipher context loaded with this key.
    @inline(__always)
    private func withCipher(_ body: (ChaChaPolyCipher) throws(NoiseError) -> Void) throws(NoiseError) {
        try body(ThreadCiphers.current.cipher(for: self))
    }

    /// The 96-bit IETF nonce of Noise §12.3: 32 zero bits, then the counter little-endian.
    @inline(__always)
    static func nonce(_ counter: UInt64) -> (UInt32, UInt32, UInt32) {
        (0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    }

    /// Runs `body` with the nonce for `counter` as the 12 bytes the C APIs take.
    @inline(__always)
    static func withNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) throws -> R) rethrows -> R {
        var nonce = nonce(counter)
        return try withUnsafeMutablePointer(to: &nonce) { tuple in
            try body(UnsafeRawPointer(tuple).assumingMemoryBound(to: UInt8.self))
        }
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
