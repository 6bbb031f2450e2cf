import NIOCore

/// Sits on a TCP channel (the application's connection in the client app, the exit connection in the
/// server app). Buffers early bytes until a `SocksStreamPipe` is attached, then forwards every channel
/// event to the pipe on the stream's event loop. Can also answer the SOCKS dialogue locally with a
/// failure reply when no stream can be had (client app). Lives on the channel's event loop.
final class SocksChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes buffered before a pipe is attached; beyond this, reading pauses.
    static let maxBufferedBytes = 64 * 1024

    private enum State {
        case buffering(CircularBuffer<ByteBuffer>, bytes: Int, inputClosed: Bool)
        case attached(NIOLoopBound<SocksStreamPipe>, streamLoop: EventLoop)
        case localFailure(Socks5ServerHandshake, code: Socks5ReplyCode)
        case closed
    }

    private var state: State = .buffering([], bytes: 0, inputClosed: false)
    private var context: ChannelHandlerContext?
    /// Called on channelActive (client app: opens the stream).
    private let onActive: ((SocksChannelHandler, ChannelHandlerContext) -> Void)?
    /// Called when the channel goes inactive while no pipe is attached (releases the session slot).
    private let onInactiveUnattached: (() -> Void)?
    private let localFailureTimeout: TimeAmount
    private var localFailureTimer: Scheduled<Void>?

    init(localFailureTimeout: TimeAmount = .seconds(10),
         onActive: ((SocksChannelHandler, ChannelHandlerContext) -> Void)? = nil,
         onInactiveUnattached: (() -> Void)? = nil) {
        self.localFailureTimeout = localFailureTimeout
        self.onActive = onActive
        self.onInactiveUnattached = onInactiveUnattached
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        onActive?(self, context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch state {
        case .attached(let pipe, let loop):
            Self.onPipe(pipe, loop) { $0.channelRead(buffer) }
        case .buffering(var queue, let bytes, let inputClosed):
            queue.append(buffer)
            let total = bytes + buffer.readableBytes
            state = .buffering(queue, bytes: total, inputClosed: inputClosed)
            if total >= Self.maxBufferedBytes {
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
        case .localFailure(var handshake, let code):
            state = .closed
            let step = handshake.receive(buffer)
            answerLocally(step, handshake: handshake, code: code, context: context)
        case .closed:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            switch state {
            case .attached(let pipe, let loop):
                Self.onPipe(pipe, loop) { $0.channelInputClosed() }
            case .buffering(let queue, let bytes, _):
                state = .buffering(queue, bytes: bytes, inputClosed: true)
            case .localFailure:
                state = .closed
                context.close(promise: nil)
            case .closed:
                break
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .attached(let pipe, let loop) = state {
            let writable = context.channel.isWritable
            Self.onPipe(pipe, loop) { $0.channelWritabilityChanged(writable) }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        localFailureTimer?.cancel()
        switch state {
        case .attached(let pipe, let loop):
            Self.onPipe(pipe, loop) { $0.channelInactive() }
        default:
            onInactiveUnattached?()
        }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Connection reset and the like: the pipe resets the stream; closing makes channelInactive tell it.
        if case .attached(let pipe, let loop) = state {
            Self.onPipe(pipe, loop) { $0.channelErrorCaught() }
        }
        context.close(promise: nil)
    }

    // MARK: - Called on the channel's event loop by the pipe / app

    /// Starts forwarding to `pipe`; replays what was buffered.
    func attach(_ pipe: NIOLoopBound<SocksStreamPipe>, streamLoop: EventLoop) {
        guard case .buffering(let queue, let bytes, let inputClosed) = state, let context else {
            // The channel already went away: tell the pipe so it releases the stream.
            Self.onPipe(pipe, streamLoop) { $0.channelInactive() }
            return
        }
        state = .attached(pipe, streamLoop: streamLoop)
        // Resume reading before the replay, so a pause the pipe asks for while replaying wins.
        if bytes >= Self.maxBufferedBytes {
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
        if !queue.isEmpty || inputClosed {
            Self.onPipe(pipe, streamLoop) { pipe in
                for buffer in queue { pipe.channelRead(buffer) }
                if inputClosed { pipe.channelInputClosed() }
            }
        }
    }

    /// Answers the application's SOCKS5 dialogue here with `code` (no stream could be had), feeding
    /// `history` (bytes already received) first, then closes.
    func beginLocalFailure(code: Socks5ReplyCode, history: ByteBuffer?) {
        guard let context else { return }
        var handshake = Socks5ServerHandshake(authentication: .acceptAnything, allocator: context.channel.allocator)
        var input = context.channel.allocator.buffer(capacity: 0)
        var inputClosed = false
        switch state {
        case .buffering(let queue, _, let closed):
            for var buffer in queue { input.writeBuffer(&buffer) }
            inputClosed = closed
        case .attached:
            if var history { input.writeBuffer(&history) }
        case .localFailure, .closed:
            return
        }
        state = .closed
        if input.readableBytes == 0, inputClosed {
            context.close(promise: nil)
            return
        }
        let step = handshake.receive(input)
        answerLocally(step, handshake: handshake, code: code, context: context)
        if case .localFailure = state {
            if inputClosed {
                context.close(promise: nil)
                return
            }
            let channel = context.channel
            localFailureTimer = context.eventLoop.scheduleTask(in: localFailureTimeout) {
                channel.close(promise: nil)
            }
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
    }

    /// Closes the connection without a reply.
    func closeUnattached() {
        state = .closed
        context?.close(promise: nil)
    }

    private func answerLocally(_ step: Socks5ServerHandshake.Step, handshake: Socks5ServerHandshake,
                               code: Socks5ReplyCode, context: ChannelHandlerContext) {
        var output = step.output
        switch step.outcome {
        case .needMoreData:
            state = .localFailure(handshake, code: code)
            if output.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(output), promise: nil) }
        case .request:
            Socks5Reply.write(code: code, to: &output)
            fallthrough
        case .failed:
            state = .closed
            localFailureTimer?.cancel()
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(output)).whenComplete { _ in channel.close(promise: nil) }
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
