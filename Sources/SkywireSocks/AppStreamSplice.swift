import NIOCore
import SkywireTransport

/// Joins two streams on one event loop byte for byte: data, FIN and reset cross over, and a side
/// stops reading while the other side is not writable (so nothing queues without bound). Each end
/// keeps the other alive until both directions finished or one was reset. Loop thread only.
final class AppStreamSplice: AppStreamDelegate {
    private let stream: AppStream
    private var peer: AppStreamSplice?
    private var finReceived = false

    private init(stream: AppStream) { self.stream = stream }

    /// Starts the splice; `pendingForB` are bytes already read from `a` that `b` must get first.
    static func join(_ a: AppStream, _ b: AppStream, pendingForB: ByteBuffer = ByteBuffer(), pendingForA: ByteBuffer = ByteBuffer()) {
        a.eventLoop.preconditionInEventLoop()
        precondition(a.eventLoop === b.eventLoop)
        let endA = AppStreamSplice(stream: a), endB = AppStreamSplice(stream: b)
        endA.peer = endB
        endB.peer = endA
        a.setDelegate(endA)
        b.setDelegate(endB)
        if pendingForB.readableBytes > 0 { endA.appStream(a, didReceive: pendingForB) }
        if pendingForA.readableBytes > 0 { endB.appStream(b, didReceive: pendingForA) }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard let peer else { return }
        peer.stream.write(data)
        if !peer.stream.isWritable { stream.setReadPaused(true) }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        guard let peer else { return }
        finReceived = true
        peer.stream.finish()
        if peer.finReceived { release() }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        guard let peer else { return }
        peer.stream.reset(code)
        release()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if stream.isWritable { peer?.stream.setReadPaused(false) }
    }

    /// Drops the references between the ends (the streams drop their delegates when they close).
    private func release() {
        peer?.peer = nil
        peer = nil
    }
}
