import NIOCore

/// What rides a `RawStcprLink` once its handshake completes: a `MuxConnection` (stcpr, the
/// `dmsg` transport) or a dmsg relay session (`DmsgRecordLink`). Called on the link's loop.
protocol RecordLinkUpper: AnyObject {
    /// One decrypted frame from the peer.
    func receive(frame: ByteBuffer)
    /// The link's unsent bytes fell below its high watermark: writers may continue.
    func linkWritabilityChanged()
    /// A read burst ended: send what its frames asked for.
    func flushIfNeeded()
    /// The link is gone (before `Hooks.closed`).
    func linkClosed(reason: String)
}

extension MuxConnection: RecordLinkUpper {}
