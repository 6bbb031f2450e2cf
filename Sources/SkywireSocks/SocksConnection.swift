import NIOCore
import SkywireIO

/// Reads a connection itself before a pipe is attached (`SocksConnection.read(by:)`): the
/// resolver's SOCKS5 dialogue, an upstream server's METHOD selection. On the socket's loop.
protocol SocksConnectionReader: AnyObject {
    /// Bytes read.
    func connectionRead(_ buffer: ByteBuffer)
    /// EOF before the reader was done.
    func connectionInputClosed()
}

/// The SOCKS side of one TCP connection (a `RawSocksSocket`): buffers early bytes until a
/// `SocksStreamPipe` is attached, then forwards every connection event to the pipe; can also answer the SOCKS5 dialogue locally with a failure reply when no
/// stream can be had (client app), or hand its bytes to a `SocksConnectionReader` until it has
/// read what it needs (the resolver). Confined to the socket's event loop; the socket reports its
/// events through the `socket…` methods.
final class SocksConnection {
    /// Bytes buffered before a pipe is attached; beyond this, reading pauses.
    static let maxBufferedBytes = 64 * 1024

    private enum State {
        case buffering(CircularBuffer<ByteBuffer>, bytes: Int, inputClosed: Bool)
        case attached(NIOLoopBound<SocksStreamPipe>, streamLoop: EventLoop)
        case reading(SocksConnectionReader)
        case localFailure(Socks5ServerHandshake, code: Socks5ReplyCode)
        case closed
    }

    /// Set once by the socket right after both exist (the socket owns this object and is kept alive
    /// by its loop watch until it closes).
    unowned var socket: RawSocksSocket!
    private var state: State = .buffering([], bytes: 0, inputClosed: false)
    private let localFailureTimeout: TimeAmount
    private var localFailureTimer: Scheduled<Void>?
    private var onClose: [() -> Void] = []

    init(localFailureTimeout: TimeAmount) {
        self.localFailureTimeout = localFailureTimeout
    }

    // MARK: - Socket events (on the socket's loop)

    func socketRead(_ buffer: ByteBuffer) {
        switch state {
        case .attached(let pipe, let loop):
            if loop.inEventLoop {
                pipe.value.channelRead(buffer)
            } else {
                loop.execute { pipe.value.channelRead(buffer) }
            }
        case .buffering(var queue, let bytes, let inputClosed):
            queue.append(buffer)
            let total = bytes + buffer.readableBytes
            state = .buffering(queue, bytes: total, inputClosed: inputClosed)
            if total >= Self.maxBufferedBytes { socket.setReadsPaused(true) }
        case .reading(let reader):
            reader.connectionRead(buffer)
        case .localFailure(var handshake, let code):
            state = .closed
            let step = handshake.receive(buffer)
            answerLocally(step, handshake: handshake, code: code)
        case .closed:
            break
        }
    }

    func socketInputClosed() {
        switch state {
        case .attached(let pipe, let loop):
            Self.onPipe(pipe, loop) { $0.channelInputClosed() }
        case .buffering(let queue, let bytes, _):
            state = .buffering(queue, bytes: bytes, inputClosed: true)
        case .reading(let reader):
            reader.connectionInputClosed()
        case .localFailure:
            state = .closed
            socket.close()
        case .closed:
            break
        }
    }

    func socketWritabilityChanged(_ writable: Bool) {
        if case .attached(let pipe, let loop) = state {
            Self.onPipe(pipe, loop) { $0.channelWritabilityChanged(writable) }
        }
    }

    /// Connection reset and the like: the pipe resets the stream; the socket then closes.
    func socketErrorCaught() {
        if case .attached(let pipe, let loop) = state {
            Self.onPipe(pipe, loop) { $0.channelErrorCaught() }
        }
    }

    func socketClosed() {
        localFailureTimer?.cancel()
        if case .attached(let pipe, let loop) = state {
            Self.onPipe(pipe, loop) { $0.channelInactive() }
        }
        state = .closed
        let callbacks = onClose
        onClose = []
        for callback in callbacks { callback() }
    }

    // MARK: - Called on the socket's event loop by the pipe / app

    var isClosed: Bool { if case .closed = state { return true } else { return false } }

    /// Runs `body` when the connection has closed (at once if it has).
    func whenClosed(_ body: @escaping () -> Void) {
        if case .closed = state { body() } else { onClose.append(body) }
    }

    /// Starts forwarding to `pipe`; replays what was buffered.
    func attach(_ pipe: NIOLoopBound<SocksStreamPipe>, streamLoop: EventLoop) {
        guard case .buffering(let queue, let bytes, let inputClosed) = state else {
            // The connection already went away: tell the pipe so it releases the stream.
            Self.onPipe(pipe, streamLoop) { $0.channelInactive() }
            return
        }
        state = .attached(pipe, streamLoop: streamLoop)
        // Resume reading before the replay, so a pause the pipe asks for while replaying wins.
        if bytes >= Self.maxBufferedBytes { socket.setReadsPaused(false) }
        if !queue.isEmpty || inputClosed {
            Self.onPipe(pipe, streamLoop) { pipe in
                for buffer in queue { pipe.channelRead(buffer) }
                if inputClosed { pipe.channelInputClosed() }
            }
        }
    }

    /// Hands what was buffered, and every read from now on, to `reader` until it calls
    /// `stopReading`. False when the connection is not buffering (attached, closing or closed).
    @discardableResult
    func read(by reader: SocksConnectionReader) -> Bool {
        guard case .buffering(let queue, let bytes, let inputClosed) = state else { return false }
        state = .reading(reader)
        // Through `socketRead`: the reader may stop reading part-way, the rest is buffered again.
        for buffer in queue { socketRead(buffer) }
        if inputClosed { socketInputClosed() }
        // Reads paused on a full buffer resume only now, so nothing overtakes the replay.
        if bytes >= Self.maxBufferedBytes {
            switch state {
            case .reading: socket.setReadsPaused(false)
            case .buffering(_, let now, _) where now < Self.maxBufferedBytes: socket.setReadsPaused(false)
            default: break
            }
        }
        return true
    }

    /// The reader is done: `pending` (bytes it read past what it needed) and what arrives next
    /// are buffered again for the pipe.
    func stopReading(pending: ByteBuffer) {
        guard case .reading = state else { return }
        state = .buffering([], bytes: 0, inputClosed: false)
        if pending.readableBytes > 0 { socketRead(pending) }
    }

    /// Answers the application's SOCKS5 dialogue here with `code` (no stream could be had), feeding
    /// `history` (bytes already received) first, then closes.
    func beginLocalFailure(code: Socks5ReplyCode, history: ByteBuffer?) {
        var handshake = Socks5ServerHandshake(authentication: .acceptAnything)
        var input = ByteBuffer()
        var inputClosed = false
        switch state {
        case .buffering(let queue, _, let closed):
            for var buffer in queue { input.writeBuffer(&buffer) }
            inputClosed = closed
        case .attached:
            if var history { input.writeBuffer(&history) }
        case .reading, .localFailure, .closed:
            return
        }
        state = .closed
        if input.readableBytes == 0, inputClosed {
            socket.close()
            return
        }
        let step = handshake.receive(input)
        answerLocally(step, handshake: handshake, code: code)
        if case .localFailure = state {
            if inputClosed {
                socket.close()
                return
            }
            let socket = self.socket!
            localFailureTimer = socket.loop.assumeIsolated().scheduleTask(in: localFailureTimeout) {
                socket.close()
            }
            socket.setReadsPaused(false)
        }
    }

    /// Closes the connection without a reply.
    func closeUnattached() {
        state = .closed
        socket.close()
    }

    private func answerLocally(_ step: Socks5ServerHandshake.Step, handshake: Socks5ServerHandshake,
                               code: Socks5ReplyCode) {
        var output = step.output
        switch step.outcome {
        case .needMoreData:
            state = .localFailure(handshake, code: code)
            if output.readableBytes > 0 {
                socket.write(output)
            }
        case .request:
            Socks5Reply.write(code: code, to: &output)
            fallthrough
        case .failed:
            state = .closed
            localFailureTimer?.cancel()
            socket.writeAndClose(output)
        }
    }

    /// Runs `body` on the pipe's loop (directly when already there).
    private static func onPipe(_ pipe: NIOLoopBound<SocksStreamPipe>, _ loop: EventLoop,
                               _ body: @escaping @Sendable (SocksStreamPipe) -> Void) {
        if loop.inEventLoop {
            body(pipe.value)
        } else {
            loop.execute { body(pipe.value) }
        }
    }
}
