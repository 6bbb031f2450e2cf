import NIOCore
import SkywireCrypto
import SkywireWire

/// mac1, mac2 and cookie replies on sudph Initiations (PROTOCOL.md §2.1, §4.1), pure: bytes in,
/// bytes out.
enum SudphHandshakeMACs {
    typealias L = SudphLayout

    /// Fills in mac1 (`MAC(mac1Key, bytes 0..<149)`) and mac2 (`MAC(cookie, bytes 0..<165)`, or
    /// zeros without a cookie) of a 181-byte Initiation.
    static func seal(initiation packet: inout [UInt8], mac1Key: [UInt8], cookie: [UInt8]?) {
        precondition(packet.count == L.initiationPacketSize, "an Initiation is \(L.initiationPacketSize) bytes")
        let mac1 = packet.withUnsafeBytes { HandshakeMAC.mac(key: mac1Key, UnsafeRawBufferPointer(rebasing: $0[0..<L.mac1Offset])) }
        packet.replaceSubrange(L.mac1Offset..<L.mac2Offset, with: mac1)
        let mac2 = cookie.map { cookie in
            packet.withUnsafeBytes { HandshakeMAC.mac(key: cookie, UnsafeRawBufferPointer(rebasing: $0[0..<L.mac2Offset])) }
        } ?? [UInt8](repeating: 0, count: L.macSize)
        packet.replaceSubrange(L.mac2Offset..<L.initiationPacketSize, with: mac2)
    }

    /// The mac1 field of an Initiation.
    static func mac1(of packet: UnsafeRawBufferPointer) -> [UInt8] {
        Array(packet[L.mac1Offset..<L.mac2Offset])
    }

    /// Whether the Initiation's mac1 is right for the responder whose mac1 key is `mac1Key`.
    static func checkMac1(_ packet: UnsafeRawBufferPointer, mac1Key: [UInt8]) -> Bool {
        guard packet.count == L.initiationPacketSize else { return false }
        let expected = HandshakeMAC.mac(key: mac1Key, UnsafeRawBufferPointer(rebasing: packet[0..<L.mac1Offset]))
        return HandshakeMAC.matches(expected, UnsafeRawBufferPointer(rebasing: packet[L.mac1Offset..<L.mac2Offset]))
    }

    /// Whether the Initiation's mac2 was made with `cookie` (the cookie of its source address).
    static func checkMac2(_ packet: UnsafeRawBufferPointer, cookie: [UInt8]) -> Bool {
        guard packet.count == L.initiationPacketSize else { return false }
        let expected = HandshakeMAC.mac(key: cookie, UnsafeRawBufferPointer(rebasing: packet[0..<L.mac2Offset]))
        return HandshakeMAC.matches(expected, UnsafeRawBufferPointer(rebasing: packet[L.mac2Offset..<L.initiationPacketSize]))
    }

    /// The Cookie Reply (type 3) to an Initiation from `senderIndex` whose mac1 was `mac1`.
    static func cookieReply(senderIndex: UInt32, cookie: [UInt8], cookieKey: [UInt8], mac1: [UInt8],
                            nonce: [UInt8]) -> [UInt8] {
        let sealed = HandshakeMAC.sealCookie(cookie, key: cookieKey, nonce: nonce, mac1: mac1)
        // Sizes are fixed by construction: the builder cannot fail.
        return (try? SudphPacket.cookieReply(receiverIndex: senderIndex, nonce: nonce, sealedCookie: sealed)) ?? []
    }

    /// The cookie in a Cookie Reply, when it opens with the responder's cookie key and the mac1 we
    /// sent; nil for a forged or stale reply.
    static func openCookieReply(_ packet: UnsafeRawBufferPointer, nonce: Range<Int>, sealedCookie: Range<Int>,
                                cookieKey: [UInt8], mac1: [UInt8]) -> [UInt8]? {
        HandshakeMAC.openCookie(UnsafeRawBufferPointer(rebasing: packet[sealedCookie]), key: cookieKey,
                                nonce: UnsafeRawBufferPointer(rebasing: packet[nonce]), mac1: mac1)
    }

    /// The bytes a cookie is bound to: the IP address (4 or 16 bytes) and the port, big-endian.
    static func addressBytes(_ address: SocketAddress) -> [UInt8] {
        var out: [UInt8] = []
        switch address {
        case .v4(let a):
            withUnsafeBytes(of: a.address.sin_addr) { out.append(contentsOf: $0) }
        case .v6(let a):
            withUnsafeBytes(of: a.address.sin6_addr) { out.append(contentsOf: $0) }
        default:
            out.append(contentsOf: Array((address.ipAddress ?? "").utf8))
        }
        let port = UInt16(clamping: address.port ?? 0)
        out.append(UInt8(port >> 8))
        out.append(UInt8(port & 0xff))
        return out
    }
}
