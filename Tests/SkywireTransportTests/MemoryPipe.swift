import NIOCore
import SkywireIO
@testable import SkywireTransport

/// A `LinkPipe` test double: two `InboxPipe`s on one `EpollEventLoop` wired to each other (what
/// a dmsg relay stream looks like to the link: bytes pushed in, writes taken while the far end
/// has room), each direction holding at most `capacity` unread bytes before the writer is told
/// "full". Records every byte each end wrote. Loop-confined; the pair is never freed (a cycle through
/// the sinks, harmless in tests).
final class MemoryPipe {
    private(set) var pipe: InboxPipe!
    fileprivate weak var peer: MemoryPipe?
    /// Every byte this end wrote.
    private(set) var written = ByteBuffer()

    /// Two connected ends.
    static func pair(on loop: EpollEventLoop, capacity: Int = 64 * 1024) -> (InboxPipe, InboxPipe, MemoryPipe, MemoryPipe) {
        let a = MemoryPipe(), b = MemoryPipe()
        a.peer = b
        b.peer = a
        // The reader "pauses" its writer above half the capacity and wakes it once drained to a
        // quarter (`InboxPipe` resumes at half its limit): a writer told "full" is woken.
        a.pipe = InboxPipe(loop: loop, sink: a.sink(capacity: capacity), inboxLimit: capacity / 2)
        b.pipe = InboxPipe(loop: loop, sink: b.sink(capacity: capacity), inboxLimit: capacity / 2)
        return (a.pipe, b.pipe, a, b)
    }

    private func sink(capacity: Int) -> InboxPipe.Sink {
        InboxPipe.Sink(
            write: { [self] buffer in
                guard let far = peer?.pipe, far.isOpen else { throw TransportError(.closed, "memory pipe: peer closed") }
                let n = min(buffer.readableBytes, capacity - far.unreadBytes)
                guard n > 0 else { return false }
                let slice = buffer.readSlice(length: n)!
                written.writeBytes(slice.readableBytesView)
                far.receive(slice)
                return true
            },
            isWritable: { [self] in (peer?.pipe.unreadBytes ?? 0) < capacity },
            pauseReading: {},
            resumeReading: { [self] in peer?.pipe.sinkWritable() },
            close: { [self] in peer?.pipe.receiveClose() })
    }
}
