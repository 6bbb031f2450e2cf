import Synchronization

/// A ChaChaPoly key (Noise spec rev. 34 §12.3) used with explicit nonces: ChaCha20-Poly1305
/// (RFC 8439 §2.8) on OpenSSL libcrypto (`ChaChaPolyCipher`), nonce = 4 zero bytes || 64-bit
/// little-endian counter, ciphertext = encrypted plaintext || 16-byte tag.
///
/// `seal`/`open` write into caller buffers and do not allocate; `plaintext`/`ciphertext` and the
/// output may be the very same memory (in-place), but must not partially overlap. This is what
/// sudph uses (PROTOCOL.md §4.1, Noise §11.4 out-of-order transport messages).
/// The key never changes (Rekey makes a new key) and several threads may seal with it at once
/// (sudph's event loop and the VPN threads): each record borrows a cipher context. The first
/// context is made on the key's first record and lives in `primary`, taken and put back with
/// one atomic exchange each (no lock on the hot path); a thread that finds it lent out takes a
/// spare from `spares` (a Mutex) or makes one, so a key holds one context, or as many as
/// threads used it at the same moment (at most 1 + `maxSpareCiphers` kept).
public final class NoiseTransportKey: @unchecked Sendable {
    // @unchecked Sendable: `key` is immutable; a cipher context is reached only through
    // `primary` (an Atomic: exchange acquiring, put back releasing) or `spares` (a Mutex), and
    // each is used by the one thread that took it out until it puts it back.
    let key: SecureBytes
    /// The context most records use, +1 retained while parked here; nil while lent out or
    /// before the first record.
    private let primary = Atomic<Unmanaged<ChaChaPolyCipher>?>(nil)
    private let spares = Mutex<[ChaChaPolyCipher]>([])
    /// Spare contexts kept beside `primary` for threads that seal or open at the same moment;
    /// more threads at once than 1 + this allocate and free the extra ones.
    static let maxSpareCiphers = 3

    /// A key from 32 bytes (e.g. from `CipherState.key` or a test).
    public convenience init(bytes: [UInt8]) throws {
        guard bytes.count == NoiseConstants.keyLength else {
            throw NoiseError.badLength(what: "ChaChaPoly key", expected: NoiseConstants.keyLength, got: bytes.count)
        }
        self.init(secure: SecureBytes(copying: bytes))
    }

    init(secure: SecureBytes) {
        self.key = secure
    }

    /// Releases the parked context (EVP_CIPHER_CTX_free wipes its key state); spares go with `spares`.
    deinit {
        primary.load(ordering: .acquiring)?.release()
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

    /// Runs `body` with a cipher context of this key no other thread uses meanwhile: `primary`
    /// if it is parked, else a spare, else a new one; it is put back afterwards (`putBack`).
    @inline(__always)
    private func withCipher(_ body: (ChaChaPolyCipher) throws(NoiseError) -> Void) throws(NoiseError) {
        let lent: Unmanaged<ChaChaPolyCipher>
        if let parked = primary.exchange(nil, ordering: .acquiring) {
            lent = parked
        } else {
            lent = try spareOrNewCipher()
        }
        defer { putBack(lent) }
        try body(lent.takeUnretainedValue())
    }

    /// A spare context, or a new one (the first record of the key, or more threads at once).
    private func spareOrNewCipher() throws(NoiseError) -> Unmanaged<ChaChaPolyCipher> {
        if let spare = spares.withLock({ $0.popLast() }) { return .passRetained(spare) }
        _ = LibCrypto.initialised
        return .passRetained(try ChaChaPolyCipher(key: key))
    }

    /// Parks `cipher` in `primary` if that is empty, else keeps it as a spare (up to
    /// `maxSpareCiphers`) or frees it.
    @inline(__always)
    private func putBack(_ cipher: Unmanaged<ChaChaPolyCipher>) {
        if primary.compareExchange(expected: nil, desired: cipher, successOrdering: .releasing,
                                   failureOrdering: .relaxed).exchanged { return }
        let owned = cipher.takeRetainedValue()
        spares.withLock { contexts in
            if contexts.count < Self.maxSpareCiphers { contexts.append(owned) }
        }
    }

    /// Contexts this key holds while none is lent out (for tests: 0 before the first record).
    var heldCiphers: Int {
        (primary.load(ordering: .acquiring) == nil ? 0 : 1) + spares.withLock { $0.count }
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
