import CSodium

/// libsodium initialisation: `sodium_init()` must run once before any other call.
enum Sodium {
    static let initialised: Bool = {
        sodium_init() >= 0
    }()

    @inline(__always)
    static func ensureInitialised() {
        precondition(initialised, "sodium_init() failed")
    }
}

/// Errors raised by the key and crypto wrappers.
public enum CryptoError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidHex(String)
    case invalidLength(expected: Int, got: Int)
    case invalidPublicKey
    case keyMismatch
    case decryptFailed
    case dhFailed

    public var description: String {
        switch self {
        case .invalidHex(let what): return "\(what): not valid lowercase hex"
        case .invalidLength(let expected, let got): return "expected \(expected) bytes, got \(got)"
        case .invalidPublicKey: return "not a valid Ed25519 public key"
        case .keyMismatch: return "secret key does not match the public key"
        case .decryptFailed: return "authentication failed"
        case .dhFailed: return "X25519 produced an all-zero shared secret"
        }
    }
}

enum Hex {
    static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes lowercase hex only (the canonical form used everywhere).
    static func decode(_ s: String) -> [UInt8]? {
        let utf8 = Array(s.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
