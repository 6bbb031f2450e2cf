import NIOCore
import SkywireIO
import SkywireTransport

extension RawSocksSocket {
    /// Joins a connection accepted on `origin` to `stream` (opened for it, running on
    /// `streamLoop`): call on `streamLoop`. On the same loop, `body` runs at once with no hold;
    /// otherwise the stream is held (`AppStreamHold`) and the socket moves to `streamLoop`
    /// (`move(to:then:)`), where `body` runs with the hold, which the caller releases once its
    /// pipe is the stream's delegate.
    static func join(_ socket: LoopTransfer<RawSocksSocket>, from origin: EpollEventLoop, to stream: AppStream,
                     on streamLoop: EpollEventLoop, then body: @escaping (RawSocksSocket, AppStreamHold?) -> Void) {
        streamLoop.preconditionInEventLoop()
        if origin === streamLoop {
            body(socket.value, nil)
            return
        }
        let hold = LoopTransfer(value: AppStreamHold(holding: stream))
        let next = LoopTransfer(value: body)
        origin.execute {
            socket.value.move(to: streamLoop) { _ in next.value(socket.value, hold.value) }
        }
    }

    /// Closes the socket made on `origin` wherever it runs now (an app's abort, from any thread):
    /// on `origin`, or on the stream's loop it moved to (`move` changed `loop` on `origin`'s thread,
    /// and no other thread changes it).
    static func close(_ socket: LoopTransfer<RawSocksSocket>, madeOn origin: EpollEventLoop) {
        origin.execute {
            let current = socket.value.loop
            if current === origin { socket.value.close() } else { current.execute { socket.value.close() } }
        }
    }
}

/// Keeps a stream's events while its connection moves to the stream's loop: reads paused (data
/// and FIN wait in the stream), a reset remembered for the pipe that takes the stream over.
/// Confined to the stream's loop.
final class AppStreamHold: AppStreamDelegate {
    private let stream: AppStream
    private var resetCode: AppStreamResetCode?

    /// Call on the stream's loop.
    init(holding stream: AppStream) {
        self.stream = stream
        stream.setDelegate(self)
        stream.setReadPaused(true)
    }

    /// After `delegate` took the stream (`setDelegate`): hands it a reset that came meanwhile, else
    /// resumes reading.
    func release(to delegate: AppStreamDelegate) {
        if let resetCode {
            delegate.appStream(stream, didResetWith: resetCode)
        } else {
            stream.setReadPaused(false)
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {}  // not delivered while paused
    func appStreamDidReceiveFinish(_ stream: AppStream) {}  // not delivered while paused
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { resetCode = code }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}
