import CSodium

/// SHA-256 over data fed in pieces (libsodium `crypto_hash_sha256_init/update/final`): the
/// checksum `skywire cli pty cp` verifies, computed while a file streams (docs/pty.md).
public final class SHA256Stream {
    public static let digestLength = 32
    private var state = crypto_hash_sha256_state()

    public init() {
        Sodium.ensureInitialised()
        _ = crypto_hash_sha256_init(&state)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest. Call once: the state is used up.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.digestLength)
        _ = crypto_hash_sha256_final(&state, &out)
        return out
    }
}
