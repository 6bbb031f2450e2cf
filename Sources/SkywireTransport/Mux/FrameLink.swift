import NIOCore

/// The encrypted path beneath a `MuxConnection`: stcpr (one Noise message per frame over TCP)
/// or sudph (records over UDP, reliable frames through the ARQ). Event-loop bound.
protocol FrameLink: AnyObject {
    /// Largest DATA payload this link carries in one frame (PROTOCOL.md §5).
    var maxDataPayload: Int { get }
    /// True when the link can take more reliable frames without growing its queue.
    var isWritable: Bool { get }
    /// Queues one encoded mux frame. DATAGRAM frames may be dropped under pressure;
    /// every other frame is delivered reliably and in order.
    func send(frame: ByteBuffer, reliable: Bool)
    /// Pushes queued frames to the network (one syscall batch).
    func flush()
    /// Closes the link; the owner learns through `MuxConnection.linkClosed`.
    func close(reason: String)
}
