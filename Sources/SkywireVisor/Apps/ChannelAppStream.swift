import NIOCore
import SkywireTransport

/// An `AppStream` over a NIO stream channel (a connection the pty session host accepted,
/// docs/pty.md "Session host"), so the code written for mux streams runs over it unchanged:
/// `PtyHostSession` in `skywire pty-host` (the visor's end is a `SocketAppStream`). FIN is a half-close
/// (the channel needs `allowRemoteHalfClosure`); the channel closes once both sides finished.
/// Confined to the channel's loop (it is the channel's last handler).
final class ChannelAppStream: ChannelInboundHandler, AppStream {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let channel: Channel
    let remoteKeyHex: String
    let localPort: UInt16 = 0
    let remotePort: UInt16 = 0
    var eventLoop: EventLoop { channel.eventLoop }
    var isWritable: Bool { channel.isWritable }

    /// Held until the channel ends (like a mux stream holds its delegate).
    private var delegate: AppStreamDelegate?
    private var inputClosed = false
    private var outputClosed = false
    private var ended = false
    /// Bytes that arrived before a delegate was set (the rest of a read that carried the header).
    private var pending: ByteBuffer?

    init(channel: Channel, remoteKeyHex: String, pending: ByteBuffer? = nil) {
        self.channel = channel
        self.remoteKeyHex = remoteKeyHex
        self.pending = pending
    }

    func setDelegate(_ delegate: AppStreamDelegate?) {
        self.delegate = delegate
        if let delegate, let bytes = pending {
            pending = nil
            if bytes.readableBytes > 0 { delegate.appStream(self, didReceive: bytes) }
        }
    }

    func write(_ data: ByteBuffer) {
        guard !outputClosed else { return }
        channel.writeAndFlush(data, promise: nil)
    }

    func finish() {
        guard !outputClosed else { return }
        outputClosed = true
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.close(mode: .output, promise: promise)
        promise.futureResult.whenFailure { [channel] _ in channel.close(promise: nil) }
        if inputClosed { closeWhenFlushed() }
    }

    func reset(_ code: AppStreamResetCode) {
        ended = true
        channel.close(promise: nil)
    }

    func setReadPaused(_ paused: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: !paused).whenComplete { _ in }
        if !paused { channel.read() }
    }

    private func closeWhenFlushed() {
        ended = true
        channel.writeAndFlush(channel.allocator.buffer(capacity: 0)).whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    // MARK: ChannelInboundHandler

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        delegate?.appStream(self, didReceive: unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, case .inputClosed = event, !inputClosed else { return }
        inputClosed = true
        delegate?.appStreamDidReceiveFinish(self)
        if outputClosed { closeWhenFlushed() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isActive { delegate?.appStreamWritabilityChanged(self) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let clean = ended || (inputClosed && outputClosed)
        ended = true
        if !clean { delegate?.appStream(self, didResetWith: .transportLost) }
        delegate = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
