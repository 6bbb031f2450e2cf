/// What the visor's `pty` app sends a session host (`skywire pty-host`, docs/pty.md "Session
/// host") before the session's `PtyFrame`s: whom the visor admitted and as whom the session runs.
/// `magic:4 ("SKPH") | version:u8 (1) | peer:32 (the client's public key) | user_len:u8 | user`.
/// The host trusts it: only root reaches its socket, and the whitelist was checked by the visor.
public struct PtyHostHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("SKPH".utf8)
    public static let version: UInt8 = 1
    public static let keyLength = 32
    /// A user name's longest form (useradd's limit).
    public static let maxUserLength = 32
    /// The longest header: what a host reads before it has one.
    public static let maxLength = magic.count + 1 + keyLength + 1 + maxUserLength

    /// The admitted client's public key.
    public let peer: [UInt8]
    /// The account the session runs as.
    public let user: String

    public init(peer: [UInt8], user: String) throws(PtyProtocolError) {
        guard peer.count == Self.keyLength else { throw PtyProtocolError("pty host header: a key has \(Self.keyLength) bytes") }
        guard Self.isUserName(user) else { throw PtyProtocolError("pty host header: '\(user)' is not a user name") }
        self.peer = peer
        self.user = user
    }

    /// A POSIX-portable user name, as `--user` and the board's provisioning accept:
    /// `[a-z_][a-z0-9_-]*`, at most 32 characters.
    public static func isUserName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= maxUserLength else { return false }
        func lower(_ b: UInt8) -> Bool { b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") }
        func digit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
        guard lower(first) || first == UInt8(ascii: "_") else { return false }
        return bytes.dropFirst().allSatisfy { lower($0) || digit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    public var encoded: [UInt8] {
        Self.magic + [Self.version] + peer + [UInt8(user.utf8.count)] + Array(user.utf8)
    }

    /// The header at the start of `bytes` and its length, nil while incomplete; throws on a
    /// wrong magic, version or user name (the host then closes the connection).
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(PtyProtocolError) -> (header: PtyHostHeader, length: Int)? {
        let fixed = magic.count + 1 + keyLength + 1
        let start = bytes.startIndex
        let prefix = bytes.prefix(magic.count)
        guard prefix.elementsEqual(magic.prefix(prefix.count)) else { throw PtyProtocolError("pty host header: bad magic") }
        guard bytes.count >= fixed else { return nil }
        guard bytes[start + magic.count] == version else { throw PtyProtocolError("pty host header: unknown version") }
        let userLength = Int(bytes[start + fixed - 1])
        guard userLength <= maxUserLength else { throw PtyProtocolError("pty host header: user name too long") }
        guard bytes.count >= fixed + userLength else { return nil }
        let keyStart = start + magic.count + 1
        let peer = Array(bytes[keyStart..<(keyStart + keyLength)])
        guard let user = String(validating: bytes[(start + fixed)..<(start + fixed + userLength)], as: UTF8.self) else {
            throw PtyProtocolError("pty host header: user name is not UTF-8")
        }
        return (try PtyHostHeader(peer: peer, user: user), fixed + userLength)
    }
}
