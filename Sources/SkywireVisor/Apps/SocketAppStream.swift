import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport

/// An `AppStream` over a connected, non-blocking stream socket on an `EpollEventLoop` (a
/// `RawStreamSocket`): the pty app's unix socket to the session host (docs/pty.md "Session
/// host"), on the loop of the client's stream, so `AppStreamSplice` joins the two on one thread.
/// Bytes, EOF and writability go to the delegate; writes are bounded by the socket's watermarks
/// (NIO's defaults), reads stop while paused. FIN is a half-close (shutdown(2) once flushed); the
/// descriptor closes once both directions ended, on `reset`, or on an I/O error (reported as a
/// `transportLost` reset). Loop thread only.
final class SocketAppStream: RawStreamSocket, AppStream {
    let remoteKeyHex: String
    let localPort: UInt16 = 0
    let remotePort: UInt16 = 0
    var eventLoop: EventLoop { loop }
    var isWritable: Bool { isSocketWritable }

    private var delegate: AppStreamDelegate?

    /// Takes `socket` (connected, non-blocking) and watches it on `loop`. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, remoteKeyHex: String) throws {
        loop.preconditionInEventLoop()
        self.remoteKeyHex = remoteKeyHex
        try super.init(loop: loop, socket: socket)
    }

    func setDelegate(_ delegate: AppStreamDelegate?) { self.delegate = delegate }
    func finish() { shutdownOutputWhenFlushed() }
    func setReadPaused(_ paused: Bool) { setReadsPaused(paused) }

    func reset(_ code: AppStreamResetCode) {
        delegate = nil
        close()
    }

    // MARK: Socket events

    override func socketRead(_ buffer: ByteBuffer) { delegate?.appStream(self, didReceive: buffer) }
    override func socketInputClosed() { delegate?.appStreamDidReceiveFinish(self) }
    override func socketWritabilityChanged(_ writable: Bool) { delegate?.appStreamWritabilityChanged(self) }

    override func socketErrorCaught() {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.appStream(self, didResetWith: .transportLost)
    }

    override func socketClosed() { delegate = nil }
}
