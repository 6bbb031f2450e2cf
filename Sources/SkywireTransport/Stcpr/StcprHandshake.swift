import SkywireCrypto

/// The stcpr handshake steps (PROTOCOL.md §3): Noise IK whose first payload is the initiator's
/// signed identity claim. Pure: messages in, messages and transport keys out; shared by the NIO
/// handler (`StcprHandler`) and the raw-descriptor link (`RawStcprLink`).
enum StcprHandshake {
    /// Initiator: message 1, carrying `identity`'s claim.
    static func initiation(_ hs: NoiseHandshake, identity: PublicKey) throws -> [UInt8] {
        try hs.writeMessage(payload: IdentityClaim.encode(identity))
    }

    /// Responder: reads message 1 and returns the verified initiator key, message 2 and the
    /// transport keys. The caller decides whether the peer may stay before sending `reply`.
    static func respond(_ hs: NoiseHandshake, to message: [UInt8]) throws
        -> (remote: PublicKey, reply: [UInt8], send: CipherState, receive: CipherState) {
        guard message.count == IdentityClaim.message1Length else {
            throw NoiseError.badLength(what: "stcpr handshake message 1", expected: IdentityClaim.message1Length,
                                       got: message.count)
        }
        let payload = try hs.readMessage(message)
        let claimed = try IdentityClaim.verify(payload: payload, remoteStatic: hs.remoteStaticKey)
        let reply = try hs.writeMessage(payload: [])
        let (send, receive) = try hs.split()
        return (claimed, reply, send, receive)
    }

    /// Initiator: reads message 2 and returns the transport keys.
    static func complete(_ hs: NoiseHandshake, with message: [UInt8]) throws -> (send: CipherState, receive: CipherState) {
        guard message.count == IdentityClaim.message2Length else {
            throw NoiseError.badLength(what: "stcpr handshake message 2", expected: IdentityClaim.message2Length,
                                       got: message.count)
        }
        _ = try hs.readMessage(message)
        return try hs.split()
    }
}
