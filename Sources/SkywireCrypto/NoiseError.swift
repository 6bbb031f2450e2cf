/// Errors from the Noise engine. Every malformed or hostile input maps to one of these.
public enum NoiseError: Error, Equatable, CustomStringConvertible, Sendable {
    /// An input had the wrong size (`what` names it).
    case badLength(what: String, expected: Int, got: Int)
    /// A message would exceed, or exceeds, 65535 bytes (Noise spec §3).
    case messageTooLong(Int)
    /// A handshake message ended before all its tokens were read.
    case messageTooShort(what: String)
    /// The AEAD tag did not verify (wrong key, wrong nonce, tampered bytes).
    case decryptFailed
    /// An operation was called at the wrong time (e.g. reading when it is our turn to write).
    case wrongState(String)
    /// The nonce counter reached the reserved value 2^64-1 (Noise spec §5.1).
    case nonceExhausted
    /// X25519 produced the all-zero output (a low-order remote key).
    case dhFailed
    /// A key the pattern needs was not supplied, or one it forbids was.
    case missingKey(String)
    /// A protocol name or pattern this engine does not implement.
    case unsupported(String)
    /// A caller-supplied output buffer is too small or partially overlaps the input.
    case badBuffer(String)
    /// The handshake payload is malformed or its identity claim does not match the Noise static key.
    case badPayload(String)
    /// OpenSSL's cipher failed other than by a tag mismatch (the call and ERR_error_string's text).
    case cipher(String)

    public var description: String {
        switch self {
        case .badLength(let what, let expected, let got): return "\(what): expected \(expected) bytes, got \(got)"
        case .messageTooLong(let n): return "Noise message of \(n) bytes exceeds 65535"
        case .messageTooShort(let what): return "Noise message too short while reading \(what)"
        case .decryptFailed: return "Noise decryption failed (authentication tag mismatch)"
        case .wrongState(let why): return "Noise operation in wrong state: \(why)"
        case .nonceExhausted: return "Noise nonce exhausted (reached 2^64-1)"
        case .dhFailed: return "X25519 produced an all-zero shared secret"
        case .missingKey(let why): return "Noise key problem: \(why)"
        case .unsupported(let what): return "unsupported Noise protocol: \(what)"
        case .badBuffer(let why): return "bad buffer: \(why)"
        case .badPayload(let why): return "bad handshake payload: \(why)"
        case .cipher(let why): return "ChaCha20-Poly1305 (OpenSSL): \(why)"
        }
    }
}
