import Atomics
import NIOCore

/// The encrypted path beneath a `MuxConnection`: stcpr (one Noise message per frame over TCP)
/// or sudph (records over UDP, reliable frames through the ARQ). Event-loop bound.
protocol FrameLink: AnyObject {
    /// Bytes on the wire each way, readable from any thread.
    var counters: LinkCounters { get }
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
    /// The local address the link's packets leave from when it is bound to one (an stcpr
    /// connection's `getsockname`), nil when the kernel picks per packet (a wildcard UDP socket)
    /// or the link has no socket of its own. On the link's loop.
    var boundLocalAddress: SocketAddress? { get }
    /// The local uplink changed: forget what was learnt about the old path (a backed-off
    /// retransmission timer) and resend what is outstanding now. On the link's loop.
    func pathChanged()
}

extension FrameLink {
    var boundLocalAddress: SocketAddress? { nil }
    func pathChanged() {}
}

/// Wire byte counters of one link, written on its event loop and read by `tp ls` from anywhere.
final class LinkCounters: Sendable {
    let sent = ManagedAtomic<UInt64>(0)
    let received = ManagedAtomic<UInt64>(0)

    func addSent(_ n: Int) { sent.wrappingIncrement(by: UInt64(n), ordering: .relaxed) }
    func addReceived(_ n: Int) { received.wrappingIncrement(by: UInt64(n), ordering: .relaxed) }
}
