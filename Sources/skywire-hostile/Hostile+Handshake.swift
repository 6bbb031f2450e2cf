import ArgumentParser
import SkywireCrypto
import SkywireWire

/// Handshake message 1 as a real initiator builds it (PROTOCOL.md §2, §3, §4.1), for the attacks.
enum HostileHandshake {
    enum Transport: String, ExpressibleByArgument { case sudph, stcpr }
    /// `v2` is the current wire (PROTOCOL.md §2: stamp, mac1); `v1` the wire before it, to show
    /// that a visor built before the change is vulnerable.
    enum Wire: String, ExpressibleByArgument { case v1, v2 }

    /// The v1 identity claim's version byte (v1 had no stamp and no MACs).
    static let v1ClaimVersion: UInt8 = 0x01

    /// `keys`'s message 1 to `remote`, stamped now: a whole sudph Initiation packet (random sender
    /// index, mac2 zero), or one stcpr record (length prefix included).
    static func message1(from keys: KeyPair, to remote: PublicKey, transport: Transport, wire: Wire) throws -> [UInt8] {
        let hs = try NoiseHandshake.ikInitiator(identity: keys, remote: remote)
        let payload = wire == .v2 ? IdentityClaim.encode(keys.publicKey, timestamp: .now())
                                  : [v1ClaimVersion] + keys.publicKey.bytes
        let message = try hs.writeMessage(payload: payload)
        let mac1Key = HandshakeMAC.mac1Key(responderStatic: try remote.x25519())
        switch (transport, wire) {
        case (.stcpr, .v2):
            return lengthPrefixed(message + HandshakeMAC.mac(key: mac1Key, message))
        case (.stcpr, .v1):
            return lengthPrefixed(message)
        case (.sudph, .v2):
            var packet = try message.withUnsafeBytes {
                try SudphPacket.initiation(senderIndex: UInt32.random(in: 1...UInt32.max), message: $0)
            }
            packet.replaceSubrange(SudphLayout.mac1Offset..<SudphLayout.mac2Offset,
                                   with: HandshakeMAC.mac(key: mac1Key, Array(packet[0..<SudphLayout.mac1Offset])))
            return packet
        case (.sudph, .v1):
            let index = UInt32.random(in: 1...UInt32.max)
            return [SudphPacketType.initiation.rawValue, 0, 0, 0,
                    UInt8(index >> 24), UInt8((index >> 16) & 0xff), UInt8((index >> 8) & 0xff), UInt8(index & 0xff)] + message
        }
    }

    static func lengthPrefixed(_ body: [UInt8]) -> [UInt8] {
        [UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
    }
}
