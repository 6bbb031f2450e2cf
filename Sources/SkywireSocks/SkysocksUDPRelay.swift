import NIOCore
import NIOPosix
import SkywireTransport
import SkywireIO

/// Where a UDP channel's datagrams go: set on the consumer's loop once the consumer exists.
final class SkysocksDatagramSink {
    var deliver: ((AddressedEnvelope<ByteBuffer>) -> Void)?
}

/// Hands every datagram of a UDP channel to a sink on the consumer's loop (hopping there when the
/// channel runs on another loop); errors (ICMP unreachable reported on the socket) are ignored, the
/// relay lives on.
final class SkysocksDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let sink: LoopTransfer<SkysocksDatagramSink>
    private let loop: EventLoop

    init(sink: LoopTransfer<SkysocksDatagramSink>, on loop: EventLoop) {
        self.sink = sink
        self.loop = loop
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if loop.inEventLoop {
            sink.value.deliver?(envelope)
        } else {
            let sink = self.sink
            loop.execute { sink.value.deliver?(envelope) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}

/// The loop a UDP relay's NIO channel runs on: the consumer's own, unless that loop cannot run NIO
/// channels (an `EpollEventLoop`), then one of `group` (NIO's shared group when nil).
func skysocksUDPLoop(for consumerLoop: EventLoop, group: EventLoopGroup?) -> EventLoop {
    guard consumerLoop is EpollEventLoop else { return consumerLoop }
    return (group ?? MultiThreadedEventLoopGroup.singleton).next()
}

/// Binds a UDP channel for a relay whose consumer is confined to `consumerLoop`; the future completes
/// there, with the sink the channel's datagrams are delivered to (on `consumerLoop`).
func bindSkysocksUDP(to address: SocketAddress, reuseAddress: Bool, consumerLoop: EventLoop,
                     group: EventLoopGroup?) -> EventLoopFuture<(Channel, LoopTransfer<SkysocksDatagramSink>)> {
    let sink = LoopTransfer(value: SkysocksDatagramSink())
    var bootstrap = DatagramBootstrap(group: skysocksUDPLoop(for: consumerLoop, group: group))
    if reuseAddress { bootstrap = bootstrap.channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1) }
    return bootstrap
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(SkysocksDatagramHandler(sink: sink, on: consumerLoop))
            }
        }
        .bind(to: address)
        .hop(to: consumerLoop)
        .map { ($0, sink) }
}

/// Writes one datagram to a stream as `LEN(2) || datagram` (docs/socks.md); drops it (returning
/// false) when the stream is not writable or the datagram does not fit a frame.
func writeUDPFrame(_ datagram: ByteBuffer, header: Socks5UDPHeader? = nil, to stream: AppStream,
                   allocator: ByteBufferAllocator) -> Bool {
    let headerLength = header?.encodedLength ?? 0
    let length = headerLength + datagram.readableBytes
    guard stream.isWritable, length <= SkysocksUDPFraming.maxDatagramSize else { return false }
    var prefix = allocator.buffer(capacity: SkysocksUDPFraming.lengthPrefixSize + headerLength)
    prefix.writeInteger(UInt16(length))
    header?.write(to: &prefix)
    stream.write(prefix)
    if datagram.readableBytes > 0 { stream.write(datagram) }
    return true
}

/// The client app's end of a UDP association: a UDP socket on the listener's interface that the
/// application sends RFC 1928 §7 datagrams to; each is carried as a frame over the stream, and frames
/// from the stream go back to the application's address. Confined to the stream's event loop.
final class SkysocksClientUDPRelay {
    private let datagramChannel: Channel
    private let stream: AppStream
    private let controlPeer: Socks5Address?
    private let request: Socks5Request
    private var decoder: SkysocksUDPFrameDecoder
    private let counters: SkysocksCounters
    /// Where the application sends from; learnt from its first accepted datagram.
    private var applicationAddress: SocketAddress?

    init(datagramChannel: Channel, stream: AppStream, controlPeer: Socks5Address?, request: Socks5Request,
         decoder: SkysocksUDPFrameDecoder, counters: SkysocksCounters) {
        self.datagramChannel = datagramChannel
        self.stream = stream
        self.controlPeer = controlPeer
        self.request = request
        self.decoder = decoder
        self.counters = counters
    }

    /// A datagram from the application: accepted only from the control connection's IP (or the address
    /// the request named) and, when the request named a port, from that port (RFC 1928 §7).
    func datagramFromApplication(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard let source = Socks5Address(envelope.remoteAddress), let sourcePort = envelope.remoteAddress.port,
              source == controlPeer || (!request.address.isUnspecified && source == request.address),
              request.port == 0 || UInt16(sourcePort) == request.port else {
            counters.update { $0.datagramsDropped += 1 }
            return
        }
        applicationAddress = envelope.remoteAddress
        if writeUDPFrame(envelope.data, to: stream, allocator: datagramChannel.allocator) {
            counters.update { $0.datagramsRelayed += 1 }
        } else {
            counters.update { $0.datagramsDropped += 1 }
        }
    }

    /// Stream bytes (frames from the server app).
    func streamBytes(_ data: ByteBuffer) {
        decoder.append(data)
        drainStream()
    }

    /// Sends every complete frame to the application.
    func drainStream() {
        var sent = false
        while let datagram = decoder.next() {
            guard let destination = applicationAddress else {
                counters.update { $0.datagramsDropped += 1 }
                continue
            }
            datagramChannel.write(AddressedEnvelope(remoteAddress: destination, data: datagram), promise: nil)
            counters.update { $0.datagramsRelayed += 1 }
            sent = true
        }
        if sent { datagramChannel.flush() }
    }

    func close() {
        datagramChannel.close(promise: nil)
    }
}
