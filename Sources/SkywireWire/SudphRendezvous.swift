// sudph rendezvous datagrams (PROTOCOL.md §4.5, docs/discovery.md "UDP rendezvous"):
// BIND (0x10), BIND_OK (0x11) and PUNCH (0x12) share the sudph socket with the Noise packets.
// Pure codec: bytes in, values out; signatures are checked by the caller.

/// An IPv4 or IPv6 address and UDP port as carried in BIND_OK and PUNCH (`family ‖ addr ‖ port`).
public struct RendezvousAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), network order.
    public let address: [UInt8]
    public let port: UInt16

    public init?(address: [UInt8], port: UInt16) {
        guard address.count == 4 || address.count == 16 else { return nil }
        self.address = address
        self.port = port
    }

    /// The family byte: 4 or 6.
    public var family: UInt8 { address.count == 4 ? 4 : 6 }

    /// `a.b.c.d:port` or `[v6]:port` (RFC 5952 is not applied; groups are written in full hex).
    public var description: String {
        if address.count == 4 {
            return address.map(String.init).joined(separator: ".") + ":\(port)"
        }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) {
            groups.append(String(UInt16(address[i]) << 8 | UInt16(address[i + 1]), radix: 16))
        }
        return "[" + groups.joined(separator: ":") + "]:\(port)"
    }

    var encodedSize: Int { 1 + address.count + 2 }

    func append(to out: inout [UInt8]) {
        out.append(family)
        out.append(contentsOf: address)
        out.append(UInt8(port >> 8))
        out.append(UInt8(port & 0xff))
    }

    /// Parses `family ‖ addr ‖ port` at `offset`, which must end exactly at the end of `bytes`.
    static func parse(_ bytes: ArraySlice<UInt8>, type: SudphRendezvousType) throws(SudphRendezvousError) -> RendezvousAddress {
        guard let family = bytes.first else { throw .truncated(type, length: bytes.count, minimum: 1) }
        let addrLen: Int
        switch family {
        case 4: addrLen = 4
        case 6: addrLen = 16
        default: throw .badFamily(type, family)
        }
        let expected = 1 + addrLen + 2
        guard bytes.count == expected else { throw .wrongLength(type, length: bytes.count, expected: expected) }
        let start = bytes.startIndex + 1
        let addr = Array(bytes[start ..< start + addrLen])
        let port = UInt16(bytes[start + addrLen]) << 8 | UInt16(bytes[start + addrLen + 1])
        return RendezvousAddress(address: addr, port: port)!
    }
}

/// The first byte of a rendezvous datagram.
public enum SudphRendezvousType: UInt8, Sendable, CustomStringConvertible {
    case bind = 0x10
    case bindOK = 0x11
    case punch = 0x12

    public var description: String {
        switch self {
        case .bind: "BIND"
        case .bindOK: "BIND_OK"
        case .punch: "PUNCH"
        }
    }

    /// True when `firstByte` is one of the rendezvous types (0x10–0x12), so a sudph socket can
    /// route the datagram here instead of to the Noise packet parser.
    public static func isRendezvous(_ firstByte: UInt8) -> Bool { SudphRendezvousType(rawValue: firstByte) != nil }
}

/// Why a datagram is not a well-formed rendezvous message (dropped without an answer).
public enum SudphRendezvousError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case unknownType(UInt8)
    case truncated(SudphRendezvousType, length: Int, minimum: Int)
    case wrongLength(SudphRendezvousType, length: Int, expected: Int)
    case badFamily(SudphRendezvousType, UInt8)

    public var description: String {
        switch self {
        case .empty: "empty rendezvous datagram"
        case .unknownType(let t): "not a rendezvous datagram: type 0x\(String(t, radix: 16))"
        case .truncated(let t, let n, let min): "\(t) truncated: \(n) bytes, at least \(min) needed"
        case .wrongLength(let t, let n, let exp): "\(t) has \(n) bytes, expected exactly \(exp)"
        case .badFamily(let t, let f): "\(t): address family \(f), expected 4 or 6"
        }
    }
}

/// A parsed rendezvous datagram. BIND carries a fresh random token (covered by its signature);
/// BIND_OK and PUNCH echo the token of the addressee's latest BIND, so an off-path attacker, who
/// never sees a BIND, cannot forge them even with the rendezvous as spoofed source (PROTOCOL.md §4.5).
public enum SudphRendezvous: Equatable, Sendable {
    /// visor → service: `0x10 ‖ pk(32) ‖ timestamp_ms(8, BE) ‖ token(16) ‖ sig(64)`.
    case bind(publicKey: [UInt8], timestampMs: UInt64, token: [UInt8], signature: [UInt8])
    /// service → visor: `0x11 ‖ token(16) ‖ family ‖ addr ‖ port`, the visor's observed address.
    case bindOK(token: [UInt8], observed: RendezvousAddress)
    /// service → visor: `0x12 ‖ token(16) ‖ peer_pk(32) ‖ family ‖ addr ‖ port`.
    case punch(token: [UInt8], peerKey: [UInt8], peer: RendezvousAddress)

    public static let tokenSize = 16
    public static let bindSize = 1 + 32 + 8 + tokenSize + 64
    /// Domain separator of the BIND signature (version 2: with the token).
    public static let bindContext: [UInt8] = Array("SKYWIRE-BIND-2".utf8)

    /// The bytes a BIND signature covers: `"SKYWIRE-BIND-2" ‖ pk ‖ timestamp_ms(8, BE) ‖ token`.
    public static func bindSignedBytes(publicKey: [UInt8], timestampMs: UInt64, token: [UInt8]) -> [UInt8] {
        var out = bindContext
        out.append(contentsOf: publicKey)
        appendBigEndian(timestampMs, to: &out)
        out.append(contentsOf: token)
        return out
    }

    static func appendBigEndian(_ v: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        switch self {
        case .bind(let pk, let ts, let token, let sig):
            precondition(pk.count == 32 && sig.count == 64 && token.count == Self.tokenSize,
                         "BIND needs a 32-byte key, a 16-byte token and a 64-byte signature")
            out.reserveCapacity(Self.bindSize)
            out.append(SudphRendezvousType.bind.rawValue)
            out.append(contentsOf: pk)
            Self.appendBigEndian(ts, to: &out)
            out.append(contentsOf: token)
            out.append(contentsOf: sig)
        case .bindOK(let token, let addr):
            precondition(token.count == Self.tokenSize, "BIND_OK needs a 16-byte token")
            out.reserveCapacity(1 + Self.tokenSize + addr.encodedSize)
            out.append(SudphRendezvousType.bindOK.rawValue)
            out.append(contentsOf: token)
            addr.append(to: &out)
        case .punch(let token, let pk, let addr):
            precondition(pk.count == 32 && token.count == Self.tokenSize, "PUNCH needs a 16-byte token and a 32-byte key")
            out.reserveCapacity(1 + Self.tokenSize + 32 + addr.encodedSize)
            out.append(SudphRendezvousType.punch.rawValue)
            out.append(contentsOf: token)
            out.append(contentsOf: pk)
            addr.append(to: &out)
        }
        return out
    }

    /// Parses one datagram; every length is exact (PROTOCOL.md §4.5).
    public static func parse(_ bytes: [UInt8]) throws(SudphRendezvousError) -> SudphRendezvous {
        guard let first = bytes.first else { throw .empty }
        guard let type = SudphRendezvousType(rawValue: first) else { throw .unknownType(first) }
        let t = 1 + tokenSize
        switch type {
        case .bind:
            guard bytes.count == bindSize else { throw .wrongLength(.bind, length: bytes.count, expected: bindSize) }
            var ts: UInt64 = 0
            for i in 33 ..< 41 { ts = ts << 8 | UInt64(bytes[i]) }
            return .bind(publicKey: Array(bytes[1 ..< 33]), timestampMs: ts, token: Array(bytes[41 ..< 41 + tokenSize]),
                         signature: Array(bytes[(41 + tokenSize)...]))
        case .bindOK:
            guard bytes.count > t else { throw .truncated(.bindOK, length: bytes.count, minimum: t + 7) }
            return .bindOK(token: Array(bytes[1 ..< t]), observed: try RendezvousAddress.parse(bytes[t...], type: .bindOK))
        case .punch:
            guard bytes.count > t + 32 else { throw .truncated(.punch, length: bytes.count, minimum: t + 32 + 7) }
            return .punch(token: Array(bytes[1 ..< t]), peerKey: Array(bytes[t ..< t + 32]),
                          peer: try RendezvousAddress.parse(bytes[(t + 32)...], type: .punch))
        }
    }

    /// Compares two tokens in time independent of where they differ.
    public static func tokensEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
