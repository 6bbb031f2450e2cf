import Logging
import NIOCore
import SkywireIO
import SkywireTransport

/// `stream.open` (docs/cli.md): the control connection that asked becomes a byte pipe to a stream
/// the visor opened to another visor's app (how `skywire cli pty` reaches port 22: the visor
/// holds the key and the transports). After the one-line answer, bytes each way are the stream's;
/// closing the connection finishes the stream, the stream's end closes the connection.
/// Back-pressure both ways: the socket stops being read while the stream is not writable, the
/// stream's reads pause while the socket is not writable. Confined to the connection's loop.
final class ControlStreamBridge: ChannelInboundHandler, AppStreamDelegate {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let method = "stream.open"

    /// What a request's task hands back to the connection: the response line, and for an
    /// accepted `stream.open` the stream (wrapped for the connection's loop on takeover).
    struct Answer: @unchecked Sendable {
        // @unchecked Sendable: `stream` is used only after the hop to its owner's loop (takeOver).
        let line: [UInt8]
        let stream: AppStream?
    }

    /// Runs the opener; a failure is an ordinary error response.
    static func open(_ request: ControlRequest, with opener: ControlServer.StreamOpener) async throws -> Answer {
        do {
            let stream = try await opener(request)
            let line = try ControlCodec.encodeLine(ControlResponse(id: request.id, result: .object([
                "remote_pk": .string(stream.remoteKeyHex), "port": .int(Int64(stream.remotePort)),
            ])))
            return Answer(line: line, stream: stream)
        } catch let e as ControlError {
            return Answer(line: try ControlCodec.encodeLine(ControlResponse(id: request.id, error: e)), stream: nil)
        } catch {
            return Answer(line: try ControlCodec.encodeLine(ControlResponse(id: request.id, error: ControlError(.failed, "\(error)"))),
                          stream: nil)
        }
    }

    /// Puts a bridge in front of the line handler: wraps the stream for this loop (on the stream's
    /// loop, where it takes the delegate over at once), then writes the answer and starts piping.
    static func takeOver(context: ChannelHandlerContext, answer: Answer, leftover: ByteBuffer?, logger: Logger) {
        guard let stream = answer.stream else { return }
        let channel = context.channel
        let loop = context.eventLoop
        channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let transfer = LoopTransfer(value: stream)
        stream.eventLoop.submit { LoopTransfer(value: HoppingAppStream(wrapping: transfer.value, on: loop) as AppStream) }
            .hop(to: loop)
            .whenComplete { result in
                switch result {
                case .success(let wrapped):
                    let bridge = ControlStreamBridge(stream: wrapped.value, leftover: leftover)
                    channel.writeAndFlush(ByteBuffer(bytes: answer.line), promise: nil)
                    // First in the pipeline, forwarding no reads: the line handler behind it sees no more requests.
                    do {
                        try channel.pipeline.syncOperations.addHandler(bridge, position: .first)
                    } catch {
                        logger.warning("control: cannot bridge a stream: \(error)")
                        wrapped.value.reset(.appClosed)
                        channel.close(promise: nil)
                    }
                case .failure(let error):
                    logger.warning("control: cannot bridge a stream: \(error)")
                    transfer.value.eventLoop.execute { transfer.value.reset(.appClosed) }
                    channel.close(promise: nil)
                }
            }
    }

    private let stream: AppStream
    private var leftover: ByteBuffer?
    private var context: ChannelHandlerContext?
    private var closed = false

    private init(stream: AppStream, leftover: ByteBuffer?) {
        self.stream = stream
        self.leftover = leftover
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        stream.setDelegate(self)
        if let bytes = leftover, bytes.readableBytes > 0 { stream.write(bytes) }
        leftover = nil
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        stream.write(unwrapInboundIn(data))
        if !stream.isWritable { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closed {
            closed = true
            stream.finish()
        }
        // Reads paused for a socket that is gone would hold the stream's FIN back for ever.
        stream.setReadPaused(false)
        stream.setDelegate(nil)
        self.context = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A closing channel turns unwritable: that must not pause a stream nobody will resume.
        if context.channel.isActive { stream.setReadPaused(!context.channel.isWritable) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    // MARK: AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(data), promise: nil)
        if !context.channel.isWritable { stream.setReadPaused(true) }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        guard let context else { return }
        closed = true
        stream.finish()
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        closed = true
        context?.close(promise: nil)
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        guard stream.isWritable, let context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        context.read()
    }
}
