import NIOCore
import SkywireCrypto
import SkywireIO

/// One stcpr connection's protocol state (PROTOCOL.md §3) without I/O: Noise IK whose first
/// payload is the initiator's identity claim and TAI64N stamp, message 1 followed by its mac1,
/// the initiator's empty confirmation message, then records of a 2-byte big-endian length and
/// one Noise transport message per mux frame. Records in, messages and frames out; driven by
/// `RawStcprLink` (a raw descriptor on an `EpollEventLoop`).
struct StcprSession {
    private enum State {
        case initiatorStart(NoiseHandshake)
        case initiatorAwaitingResponse(NoiseHandshake)
        case responderAwaitingInitiation(NoiseHandshake)
        /// Message 2 sent; the initiator's first transport message must be the empty confirmation.
        case responderAwaitingConfirmation(send: CipherState, receive: CipherState)
        case established(send: CipherState, receive: CipherState)
        case closed
    }

    /// What one received message meant.
    enum Received {
        /// The Noise handshake is complete and the peer authenticated as `remote`.
        /// Responder: `reply` is message 2, to send once the stamp is admitted (not a replay);
        /// the session then waits for `.confirmed`. Initiator: `reply` is the confirmation
        /// (an empty transport message) to send before any frame; the session is established.
        case handshakeComplete(remote: PublicKey, timestamp: TAI64N?, reply: [UInt8])
        /// Responder: the initiator's confirmation arrived; the session is established.
        case confirmed
        /// One decrypted mux frame.
        case frame(ByteBuffer)
        /// Nothing to do (the session is closed or has not started).
        case nothing
    }

    /// A stcpr message 1 record: Noise message 1 and its mac1 (PROTOCOL.md §2.1).
    static let initiationRecordLength = IdentityClaim.message1Length + HandshakeMAC.macLength

    private var state: State
    private let identityKey: PublicKey
    private let mac1Key: [UInt8]
    private let timestamp: TAI64N?
    /// The peer's key: the expected one for an initiator, the verified claim for a responder.
    private(set) var remoteKey: PublicKey?
    let isInitiator: Bool

    /// An initiator when `expectedRemote` is set (it knows whom it calls; its message 1 carries
    /// `timestamp`), else a responder.
    init(identity: NoiseStaticIdentity, expectedRemote: PublicKey?, timestamp: TAI64N? = nil) throws {
        identityKey = identity.publicKey
        isInitiator = expectedRemote != nil
        if let expectedRemote {
            guard let timestamp else { throw NoiseError.missingKey("an stcpr initiator needs a TAI64N stamp") }
            state = .initiatorStart(try NoiseHandshake.ikInitiator(identity: identity, remote: expectedRemote))
            remoteKey = expectedRemote
            mac1Key = HandshakeMAC.mac1Key(responderStatic: try expectedRemote.x25519())
        } else {
            state = .responderAwaitingInitiation(try NoiseHandshake.ikResponder(identity: identity))
            mac1Key = identity.mac1Key
        }
        self.timestamp = timestamp
    }

    var isEstablished: Bool { if case .established = state { return true } else { return false } }

    /// The length the next record must have while the handshake runs (PROTOCOL.md §3): message 1
    /// with its mac1 for a responder, then the initiator's confirmation; message 2 for an
    /// initiator; nil once established. `RawStcprLink` closes on any other length prefix at once
    /// instead of buffering up to 64 KiB for it.
    var expectedHandshakeRecordLength: Int? {
        switch state {
        case .responderAwaitingInitiation: return Self.initiationRecordLength
        case .responderAwaitingConfirmation: return NoiseConstants.tagLength
        case .initiatorStart, .initiatorAwaitingResponse: return IdentityClaim.message2Length
        case .established, .closed: return nil
        }
    }

    /// A responder that has not read message 1 yet.
    var awaitsInitiation: Bool { if case .responderAwaitingInitiation = state { return true } else { return false } }

    /// Initiator: the message 1 record's body (Noise message 1 ‖ mac1), once; nil otherwise.
    mutating func start() throws -> [UInt8]? {
        guard case .initiatorStart(let hs) = state, let timestamp else { return nil }
        let message = try hs.writeMessage(payload: IdentityClaim.encode(identityKey, timestamp: timestamp))
        state = .initiatorAwaitingResponse(hs)
        return message + HandshakeMAC.mac(key: mac1Key, message)
    }

    /// Responder, before any DH: whether `message` has message 1's size and a valid mac1.
    func checkInitiation(_ message: ByteBuffer) -> Bool {
        guard message.readableBytes == Self.initiationRecordLength else { return false }
        return message.withUnsafeReadableBytes { bytes in
            let body = UnsafeRawBufferPointer(rebasing: bytes[0..<IdentityClaim.message1Length])
            let expected = HandshakeMAC.mac(key: mac1Key, body)
            return HandshakeMAC.matches(expected, UnsafeRawBufferPointer(rebasing: bytes[IdentityClaim.message1Length...]))
        }
    }

    /// Handles one record's message (its length prefix removed). Throws on a bad handshake
    /// message or a transport message that does not authenticate.
    mutating func receive(_ message: ByteBuffer, allocator: ByteBufferAllocator) throws -> Received {
        switch state {
        case .responderAwaitingInitiation(let hs):
            guard checkInitiation(message) else {
                throw NoiseError.badPayload("stcpr message 1: wrong size or mac1")
            }
            let payload = try hs.readMessage(Array(message.readableBytesView.prefix(IdentityClaim.message1Length)))
            let (claimed, stamp) = try IdentityClaim.verify(payload: payload, remoteStatic: hs.remoteStaticKey)
            let reply = try hs.writeMessage(payload: [])
            let (send, receive) = try hs.split()
            state = .responderAwaitingConfirmation(send: send, receive: receive)
            remoteKey = claimed
            return .handshakeComplete(remote: claimed, timestamp: stamp, reply: reply)
        case .initiatorAwaitingResponse(let hs):
            try Self.expect(message, length: IdentityClaim.message2Length, what: "stcpr handshake message 2")
            _ = try hs.readMessage(Array(message.readableBytesView))
            let (send, receive) = try hs.split()
            guard let remoteKey else { throw NoiseError.wrongState("stcpr initiator without a remote key") }
            let confirmation = try send.encryptWithAd([], [])
            state = .established(send: send, receive: receive)
            return .handshakeComplete(remote: remoteKey, timestamp: nil, reply: confirmation)
        case .responderAwaitingConfirmation(let send, let receive):
            try Self.expect(message, length: NoiseConstants.tagLength, what: "stcpr confirmation")
            _ = try receive.decryptWithAd([], Array(message.readableBytesView))
            state = .established(send: send, receive: receive)
            return .confirmed
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
        try frame.withUnsafeReadableBytes { try seal(bytes: $0, into: &out) }
    }

    /// `seal` of an encoded frame in raw memory (the VPN's batches).
    func seal(bytes plain: UnsafeRawBufferPointer, into out: inout ByteBuffer) throws -> Bool {
        guard case .established(let send, _) = state else { return false }
        let length = plain.count + NoiseConstants.tagLength
        out.writeInteger(UInt16(length))
        _ = try out.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { dst in
            try send.encrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0), plaintext: plain, into: dst)
        }
        return true
    }

    /// An established session's transport message decrypted in place (the record's buffer is the
    /// link's own); returns the frame's length at the start of `message`, nil before the session
    /// is established (then use `receive`). Throws when the message does not authenticate.
    func openInPlace(_ message: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard case .established(_, let receive) = state else { return nil }
        return try receive.decrypt(ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                   ciphertext: UnsafeRawBufferPointer(message), into: message)
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
