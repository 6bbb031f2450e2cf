import NIOCore
import SkywireCrypto

/// One stcpr connection's protocol state (PROTOCOL.md §3) without I/O: Noise IK whose first
/// payload is the initiator's signed identity claim, then records of a 2-byte big-endian length
/// and one Noise transport message per mux frame. Records in, messages and frames out; driven by
/// `RawStcprLink` (a raw descriptor on an `EpollEventLoop`).
struct StcprSession {
    private enum State {
        case initiatorStart(NoiseHandshake)
        case initiatorAwaitingResponse(NoiseHandshake)
        case responderAwaitingInitiation(NoiseHandshake)
        case established(send: CipherState, receive: CipherState)
        case closed
    }

    /// What one received message meant.
    enum Received {
        /// The handshake is complete and the peer authenticated as `remote`. A responder sends
        /// `reply` (message 2) once it has decided to keep the peer, before any frame.
        case handshakeComplete(remote: PublicKey, reply: [UInt8]?)
        /// One decrypted mux frame.
        case frame(ByteBuffer)
        /// Nothing to do (the session is closed or has not started).
        case nothing
    }

    private var state: State
    private let identityKey: PublicKey
    /// The peer's key: the expected one for an initiator, the verified claim for a responder.
    private(set) var remoteKey: PublicKey?
    let isInitiator: Bool

    /// An initiator when `expectedRemote` is set (it knows whom it calls), else a responder.
    init(identity: KeyPair, expectedRemote: PublicKey?) throws {
        identityKey = identity.publicKey
        isInitiator = expectedRemote != nil
        if let expectedRemote {
            state = .initiatorStart(try NoiseHandshake.ikInitiator(identity: identity, remote: expectedRemote))
            remoteKey = expectedRemote
        } else {
            state = .responderAwaitingInitiation(try NoiseHandshake.ikResponder(identity: identity))
        }
    }

    var isEstablished: Bool { if case .established = state { return true } else { return false } }

    /// Initiator: handshake message 1, once; nil otherwise.
    mutating func start() throws -> [UInt8]? {
        guard case .initiatorStart(let hs) = state else { return nil }
        let message = try hs.writeMessage(payload: IdentityClaim.encode(identityKey))
        state = .initiatorAwaitingResponse(hs)
        return message
    }

    /// Handles one record's message (its length prefix removed). Throws on a bad handshake
    /// message or a transport message that does not authenticate.
    mutating func receive(_ message: ByteBuffer, allocator: ByteBufferAllocator) throws -> Received {
        switch state {
        case .responderAwaitingInitiation(let hs):
            try Self.expect(message, length: IdentityClaim.message1Length, what: "stcpr handshake message 1")
            let payload = try hs.readMessage(Array(message.readableBytesView))
            let claimed = try IdentityClaim.verify(payload: payload, remoteStatic: hs.remoteStaticKey)
            let reply = try hs.writeMessage(payload: [])
            let (send, receive) = try hs.split()
            state = .established(send: send, receive: receive)
            remoteKey = claimed
            return .handshakeComplete(remote: claimed, reply: reply)
        case .initiatorAwaitingResponse(let hs):
            try Self.expect(message, length: IdentityClaim.message2Length, what: "stcpr handshake message 2")
            _ = try hs.readMessage(Array(message.readableBytesView))
            let (send, receive) = try hs.split()
            state = .established(send: send, receive: receive)
            return .handshakeComplete(remote: remoteKey!, reply: nil)
        case .established(_, let receive):
            var plain = allocator.buffer(capacity: message.readableBytes)
            _ = try message.withUnsafeReadableBytes { ct in
                try plain.writeWithUnsafeMutableBytes(minimumWritableBytes: ct.count) { out in
                    try receive.decrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), ciphertext: ct, into: out)
                }
            }
            return .frame(plain)
        case .initiatorStart, .closed:
            return .nothing
        }
    }

    /// The record size of a `frameLength`-byte frame: length prefix, ciphertext, tag.
    static func recordSize(ofFrame frameLength: Int) -> Int { 2 + frameLength + NoiseConstants.tagLength }

    /// Appends `frame` as one record (ChaCha20-Poly1305, no associated data); false before the
    /// handshake is complete or after close.
    mutating func seal(_ frame: ByteBuffer, into out: inout ByteBuffer) throws -> Bool {
        guard case .established(let send, _) = state else { return false }
        let length = frame.readableBytes + NoiseConstants.tagLength
        out.writeInteger(UInt16(length))
        _ = try frame.withUnsafeReadableBytes { plain in
            try out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { dst in
                try send.encrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext: plain, into: dst)
            }
        }
        return true
    }

    /// Appends a handshake message as one record.
    static func writeHandshakeRecord(_ message: [UInt8], into out: inout ByteBuffer) {
        out.writeInteger(UInt16(message.count))
        out.writeBytes(message)
    }

    /// Ends the session; later records are ignored. Returns false if it had already ended.
    mutating func close() -> Bool {
        if case .closed = state { return false }
        state = .closed
        return true
    }

    private static func expect(_ message: ByteBuffer, length: Int, what: String) throws {
        guard message.readableBytes == length else {
            throw NoiseError.badLength(what: what, expected: length, got: message.readableBytes)
        }
    }
}
