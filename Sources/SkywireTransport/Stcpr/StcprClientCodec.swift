import NIOCore
import SkywireCrypto

/// The initiator side of stcpr (PROTOCOL.md §3) without I/O, for tools that drive a socket
/// themselves (`skywire-hostile`): the handshake record to send, the responder's record to
/// read, then records for mux frames. A thin public face of `StcprSession`, so tools follow
/// the visor's own handshake.
public struct StcprClientCodec {
    private var session: StcprSession
    private let allocator = ByteBufferAllocator()

    /// An initiator as `identity` to the visor `remote`.
    public init(identity: KeyPair, remote: PublicKey) throws {
        session = try StcprSession(identity: try NoiseStaticIdentity(identity: identity), expectedRemote: remote,
                                   timestamp: TAI64N.now())
    }

    /// Handshake message 1 as one record (length prefix included).
    public mutating func firstRecord() throws -> [UInt8] {
        guard let message = try session.start() else { return [] }
        var out = allocator.buffer(capacity: 2 + message.count)
        StcprSession.writeHandshakeRecord(message, into: &out)
        return Array(out.readableBytesView)
    }

    /// The length of the responder's message 2 (the record's body, after its 2-byte prefix).
    public static var responseLength: Int { IdentityClaim.message2Length }

    /// Reads message 2 (the record's body) and returns the confirmation record to send before
    /// any frame (PROTOCOL.md §3, step 3); throws when message 2 does not authenticate.
    public mutating func readResponse(_ body: [UInt8]) throws -> [UInt8] {
        guard case .handshakeComplete(_, _, let confirmation) = try session.receive(ByteBuffer(bytes: body), allocator: allocator),
              session.isEstablished else { throw NoiseError.badPayload("stcpr handshake not complete") }
        var out = allocator.buffer(capacity: 2 + confirmation.count)
        StcprSession.writeHandshakeRecord(confirmation, into: &out)
        return Array(out.readableBytesView)
    }

    /// Decrypts one transport record's body (after its 2-byte prefix) into the frame it carries;
    /// throws when it does not authenticate.
    public mutating func open(_ body: ByteBuffer) throws -> ByteBuffer? {
        guard case .frame(let plain) = try session.receive(body, allocator: allocator) else { return nil }
        return plain
    }

    /// Appends `frame` (an encoded mux frame, its readable bytes) as one transport record to `out`.
    public mutating func seal(frame: ByteBuffer, into out: inout ByteBuffer) throws {
        _ = try session.seal(frame, into: &out)
    }
}
