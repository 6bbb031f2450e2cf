import NIOCore

/// A NIO channel as a `SocksSocket`. Every method may be called from any thread (NIO hops).
final class NIOSocksSocket: SocksSocket {
    let channel: Channel

    init(channel: Channel) { self.channel = channel }

    var eventLoop: EventLoop { channel.eventLoop }
    var localAddress: SocketAddress? { channel.localAddress }
    var remoteAddress: SocketAddress? { channel.remoteAddress }
    var needsFlush: Bool { true }

    func write(_ data: ByteBuffer) { channel.write(data, promise: nil) }
    func flush() { channel.flush() }

    func writeAndClose(_ data: ByteBuffer) {
        channel.writeAndFlush(data).whenComplete { [channel] _ in channel.close(promise: nil) }
    }

    func shutdownOutputWhenFlushed() {
        // Shut down our write side only after everything written so far has reached the socket:
        // NIO turns shutdown(output) into a full close (dropping queued writes) once input is closed.
        channel.writeAndFlush(channel.allocator.buffer(capacity: 0)).whenComplete { [channel] _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    func close() { channel.close(promise: nil) }

    func setReadsPaused(_ paused: Bool) {
        channel.setOption(ChannelOptions.autoRead, value: !paused).whenFailure { _ in }
    }
}

/// Sits on a TCP channel and reports its events to the connection's `SocksConnection` (which holds
/// the SOCKS logic shared with raw sockets). Lives on the channel's event loop.
final class SocksChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let connection: SocksConnection
    private(set) var socket: NIOSocksSocket?
    /// Called on channelActive (client app: opens the stream).
    private let onActive: ((NIOSocksSocket, SocksConnection) -> Void)?

    init(localFailureTimeout: TimeAmount = .seconds(10),
         onActive: ((NIOSocksSocket, SocksConnection) -> Void)? = nil) {
        connection = SocksConnection(localFailureTimeout: localFailureTimeout)
        self.onActive = onActive
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let socket = NIOSocksSocket(channel: context.channel)
        self.socket = socket
        connection.socket = socket
    }

    func channelActive(context: ChannelHandlerContext) {
        if let socket { onActive?(socket, connection) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.socketRead(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            connection.socketInputClosed()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.socketWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.socketClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.socketErrorCaught()
        context.close(promise: nil)
    }
}
