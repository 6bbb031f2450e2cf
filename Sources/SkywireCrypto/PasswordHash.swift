import CSodium

/// Argon2id password hashes in libsodium's string form (`$argon2id$v=19$m=...`), for the web
/// UI's password (docs/ui.md): `crypto_pwhash_str` and `crypto_pwhash_str_verify`.
public enum PasswordHash {
    /// Longest password accepted (bytes): bounds the hashing input, far above any real one.
    public static let maxPasswordBytes = 1024
    /// Shortest password accepted: a UI that drives the visor deserves more than a PIN.
    public static let minPasswordBytes = 8
    /// The prefix every hash this module writes or accepts starts with.
    public static let prefix = "$argon2id$"

    /// libsodium's "interactive" limits: 2 passes over 64 MiB, about 0.1-0.5 s on a board.
    static var opsLimit: UInt64 { UInt64(crypto_pwhash_opslimit_interactive()) }
    static var memLimit: Int { crypto_pwhash_memlimit_interactive() }

    public enum Failure: Error, Equatable, CustomStringConvertible, Sendable {
        case length(Int)
        case outOfMemory

        public var description: String {
            switch self {
            case .length(let n):
                return "a password must be \(PasswordHash.minPasswordBytes)...\(PasswordHash.maxPasswordBytes) bytes, not \(n)"
            case .outOfMemory: return "crypto_pwhash_str failed (not enough memory for Argon2id)"
            }
        }
    }

    /// `crypto_pwhash_str`: a fresh salt, Argon2id, the encoded string.
    public static func hash(_ password: [UInt8]) throws(Failure) -> String {
        Sodium.ensureInitialised()
        guard (minPasswordBytes...maxPasswordBytes).contains(password.count) else { throw .length(password.count) }
        var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
        let rc = password.map { CChar(bitPattern: $0) }.withUnsafeBufferPointer { c in
            c.baseAddress.map { crypto_pwhash_str(&out, $0, UInt64(c.count), opsLimit, memLimit) } ?? -1
        }
        guard rc == 0 else { throw .outOfMemory }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `crypto_pwhash_str_verify`. False for a wrong password, an over-long one and for a
    /// stored string that is not an Argon2id hash (nothing else is ever accepted).
    public static func verify(_ password: [UInt8], against stored: String) -> Bool {
        Sodium.ensureInitialised()
        guard isWellFormed(stored), password.count <= maxPasswordBytes else { return false }
        var cstr = Array(stored.utf8CString)
        // One extra byte so the buffer is never empty (its address is passed); the length excludes it.
        let input = password.map { CChar(bitPattern: $0) } + [0]
        return input.withUnsafeBufferPointer { c in
            c.baseAddress.map { crypto_pwhash_str_verify(&cstr, $0, UInt64(password.count)) == 0 } ?? false
        }
    }

    /// An Argon2id string of plausible length (printable ASCII, shorter than `crypto_pwhash_STRBYTES`).
    public static func isWellFormed(_ stored: String) -> Bool {
        let u = Array(stored.utf8)
        return stored.hasPrefix(prefix) && u.count < Int(crypto_pwhash_STRBYTES) && u.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }
}
