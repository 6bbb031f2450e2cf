/// CipherState (Noise spec rev. 34 §5.1): a key `k` (possibly empty) and a 64-bit nonce `n`.
///
/// A reference type on purpose: copying a nonce counter would invite nonce reuse. Not Sendable;
/// keep each instance on one thread (e.g. one NIO channel handler). `key` is Sendable for
/// explicit-nonce use elsewhere.
public final class CipherState {
    /// The current key, nil while empty.
    public private(set) var key: NoiseTransportKey?
    /// The next nonce `n`.
    public private(set) var nonce: UInt64 = 0

    /// An empty CipherState (InitializeKey(empty)).
    public init() {}

    /// InitializeKey(key) with a 32-byte key.
    public init(key: NoiseTransportKey) {
        self.key = key
    }

    /// InitializeKey(key): sets `k` (nil = empty) and `n = 0`.
    public func initializeKey(_ key: NoiseTransportKey?) {
        self.key = key
        nonce = 0
    }

    /// HasKey().
    public var hasKey: Bool { key != nil }

    /// SetNonce(nonce) (§5.1, for out-of-order use §11.4).
    public func setNonce(_ n: UInt64) {
        nonce = n
    }

    /// EncryptWithAd(ad, plaintext) without allocation: writes into `output` (plaintext + 16 bytes
    /// with a key, the plaintext itself without), returns the bytes written, and increments `n`.
    public func encrypt(ad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                        into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let key else { return try Self.copy(plaintext, into: output) }
        guard nonce != NoiseConstants.reservedNonce else { throw NoiseError.nonceExhausted }
        let written = try key.seal(counter: nonce, ad: ad, plaintext: plaintext, into: output)
        nonce += 1
        return written
    }

    /// DecryptWithAd(ad, ciphertext) without allocation. On an authentication failure `n` is not
    /// incremented (§5.1) and `NoiseError.decryptFailed` is thrown.
    public func decrypt(ad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                        into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let key else { return try Self.copy(ciphertext, into: output) }
        guard nonce != NoiseConstants.reservedNonce else { throw NoiseError.nonceExhausted }
        let written = try key.open(counter: nonce, ad: ad, ciphertext: ciphertext, into: output)
        nonce += 1
        return written
    }

    /// EncryptWithAd(ad, plaintext) returning a new array.
    public func encryptWithAd(_ ad: [UInt8], _ plaintext: [UInt8]) throws -> [UInt8] {
        let overhead = hasKey ? NoiseConstants.tagLength : 0
        var out = [UInt8](repeating: 0, count: plaintext.count + overhead)
        let n = try ad.withUnsafeBytes { a in
            try plaintext.withUnsafeBytes { p in
                try out.withUnsafeMutableBytes { o in try encrypt(ad: a, plaintext: p, into: o) }
            }
        }
        out.removeLast(out.count - n)
        return out
    }

    /// DecryptWithAd(ad, ciphertext) returning a new array.
    public func decryptWithAd(_ ad: [UInt8], _ ciphertext: [UInt8]) throws -> [UInt8] {
        if hasKey && ciphertext.count < NoiseConstants.tagLength {
            throw NoiseError.badLength(what: "ciphertext (at least the tag)", expected: NoiseConstants.tagLength,
                                       got: ciphertext.count)
        }
        var out = [UInt8](repeating: 0, count: ciphertext.count)
        let n = try ad.withUnsafeBytes { a in
            try ciphertext.withUnsafeBytes { c in
                try out.withUnsafeMutableBytes { o in try decrypt(ad: a, ciphertext: c, into: o) }
            }
        }
        out.removeLast(out.count - n)
        return out
    }

    /// Rekey() (§4.2, §11.3): `k = REKEY(k)`; the nonce is unchanged.
    public func rekey() throws {
        guard let key else { throw NoiseError.wrongState("Rekey on a CipherState without a key") }
        self.key = try key.rekeyed()
    }

    private static func copy(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard input.count <= NoiseConstants.maxMessageLength else { throw NoiseError.messageTooLong(input.count) }
        guard output.count >= input.count else {
            throw NoiseError.badBuffer("output holds \(output.count) bytes, needs \(input.count)")
        }
        guard input.count > 0, let src = input.baseAddress, let dst = output.baseAddress else { return 0 }
        if UnsafeRawPointer(dst) != src { dst.copyMemory(from: src, byteCount: input.count) }
        return input.count
    }
}
