import Logging
import NIOCore
import NIOPosix
import SkywireTransport

/// Pipes bytes between an `AppStream` and a TCP connection (`RawSocksSocket`) with back-pressure and half-close both ways:
/// * connection → stream: when the stream is not writable, the connection stops reading;
/// * stream → connection: when the connection is not writable, the stream's reads are paused;
/// * connection EOF → stream FIN; stream FIN → TCP shutdown(SHUT_WR) once written data is flushed.
///
/// In the client app it also snoops the SOCKS5 dialogue (`Socks5DialogueSnooper`) and, after a UDP
/// ASSOCIATE, runs the local UDP relay (docs/socks.md). Confined to the stream's event loop, which
/// is the socket's too (a socket accepted elsewhere is moved there first, `RawSocksSocket.move`).
final class SocksStreamPipe: AppStreamDelegate {
    enum Role {
        /// Client app: the channel is the application's connection.
        case client
        /// Server app: the channel is the connection to the destination.
        case server
    }

    private enum Mode {
        case snooping(Socks5DialogueSnooper, history: ByteBuffer?)
        case passthrough
        /// Binding the client app's UDP relay; stream bytes wait in the decoder.
        case udpBinding(SkysocksUDPFrameDecoder)
        case udp(SkysocksClientUDPRelay)
        case closed
    }

    let stream: AppStream
    let socket: RawSocksSocket
    private let role: Role
    private let connection: NIOLoopBound<SocksConnection>
    /// Where the client app's UDP relay is bound when the stream's loop cannot run NIO channels.
    private let udpGroup: EventLoopGroup?
    private let counters: SkysocksCounters
    private let logger: Logger
    private var mode: Mode
    private var onDone: (() -> Void)?

    private var channelReadsPaused = false
    private var streamReadsPaused = false
    private var unwritableBacklog = 0
    private var streamFinReceived = false
    private var streamFinSent = false
    private var streamDone = false
    private var channelClosed = false
    private var channelFailed = false

    private static let allocator = ByteBufferAllocator()

    init(stream: AppStream, socket: RawSocksSocket, role: Role, connection: NIOLoopBound<SocksConnection>,
         snoop: Bool, udpGroup: EventLoopGroup? = nil, counters: SkysocksCounters, logger: Logger,
         onDone: @escaping () -> Void) {
        self.stream = stream
        self.socket = socket
        self.role = role
        self.connection = connection
        self.udpGroup = udpGroup
        self.counters = counters
        self.logger = logger
        self.onDone = onDone
        // The client app answers a no-authentication-only greeting itself (one transport round trip less).
        self.mode = snoop ? .snooping(Socks5DialogueSnooper(allocator: Self.allocator,
                                                            answerNoAuthLocally: role == .client),
                                      history: Self.allocator.buffer(capacity: 0)) : .passthrough
    }

    /// Becomes the stream's delegate and attaches to the connection (which replays the bytes it
    /// buffered). Call on the stream's loop, the socket's.
    func start() {
        stream.setDelegate(self)
        socket.loop.preconditionInEventLoop()
        connection.value.attach(NIOLoopBound(self, eventLoop: socket.loop), streamLoop: socket.loop)
    }

    /// Aborts both sides (app stopping).
    func abort() {
        guard !streamDone || !channelClosed else { return }
        resetStream(.appClosed)
        closeUDP()
        socket.close()
    }

    // MARK: - Connection events (forwarded by SocksConnection)

    func channelRead(_ data: ByteBuffer) {
        switch mode {
        case .passthrough:
            writeToStream(data)
        case .snooping(var snooper, var history):
            mode = .closed
            if history != nil {
                var copy = data
                history?.writeBuffer(&copy)
                if (history?.readableBytes ?? 0) > Socks5DialogueSnooper.maxHeldBytes { history = nil }
            }
            let forward = snooper.clientBytes(data)
            let localReply = snooper.takeLocalReply()
            mode = snooper.isPassthrough ? .passthrough : .snooping(snooper, history: history)
            if forward.readableBytes > 0 { writeToStream(forward) }
            if let localReply { send(localReply) }
        case .udpBinding, .udp, .closed:
            break  // RFC 1928 §7: the control connection carries nothing after a UDP ASSOCIATE reply.
        }
    }

    func channelInputClosed() {
        switch mode {
        case .udpBinding, .udp:
            // The association ends with the control connection (RFC 1928 §7).
            finishStream()
            closeUDP()
            socket.close()
        case .closed:
            break
        default:
            finishStream()
        }
    }

    func channelWritabilityChanged(_ writable: Bool) {
        guard !streamDone else { return }
        if writable == streamReadsPaused {
            streamReadsPaused = !writable
            stream.setReadPaused(!writable)
        }
    }

    /// The connection failed (reset, I/O error): its end will not be clean.
    func channelErrorCaught() {
        channelFailed = true
    }

    func channelInactive() {
        channelClosed = true
        closeUDP()
        if !streamDone {
            if streamFinReceived && streamFinSent {
                streamDone = true
            } else if streamFinReceived && !channelFailed, case .passthrough = mode {
                // A clean close after our shutdown(output): NIO reports the peer's EOF as a full close
                // (no inputClosed event) once output is shut, so this is the FIN of that direction.
                finishStream()
            } else {
                resetStream(.appClosed)
            }
        }
        mode = .closed
        stream.setDelegate(nil)
        if let onDone {
            self.onDone = nil
            onDone()
        }
    }

    // MARK: - AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        countStreamBytes(data.readableBytes)
        switch mode {
        case .passthrough:
            send(data)
        case .snooping(var snooper, let history):
            mode = .closed
            switch snooper.serverBytes(data) {
            case .forward(let toClient, let toServer):
                mode = snooper.isPassthrough ? .passthrough
                    : .snooping(snooper, history: snooper.hasForwardedServerBytes ? nil : history)
                if toServer.readableBytes > 0 { writeToStream(toServer) }
                if toClient.readableBytes > 0 { send(toClient) }
            case .udpAssociated(let before, let reply, let request, let frames):
                if before.readableBytes > 0 { socket.write(before) }
                var decoder = SkysocksUDPFrameDecoder()
                decoder.append(frames)
                mode = .udpBinding(decoder)
                bindUDPRelay(reply: reply, request: request)
            }
        case .udpBinding(var decoder):
            decoder.append(data)
            mode = .udpBinding(decoder)
        case .udp(let relay):
            relay.streamBytes(data)
        case .closed:
            break
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        streamFinReceived = true
        switch mode {
        case .udpBinding, .udp:
            finishStream()
            closeUDP()
            socket.close()
        default:
            socket.shutdownOutputWhenFlushed()
        }
        if streamFinSent { streamDone = true }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        streamDone = true
        logger.debug("stream reset", metadata: ["code": "\(code)"])
        if case .snooping(let snooper, let history) = mode, role == .client, !snooper.hasForwardedServerBytes {
            // The server never answered (e.g. whitelist refusal): answer the application here.
            mode = .closed
            let replyCode: Socks5ReplyCode = code == .forbidden ? .connectionNotAllowed : .hostUnreachable
            if snooper.methodAnsweredLocally {
                // The application already has its METHOD selection: only the reply is missing.
                socket.writeAndClose(Socks5Reply.encode(code: replyCode, allocator: Self.allocator))
                return
            }
            let connection = self.connection
            let history = history
            socket.loop.execute { connection.value.beginLocalFailure(code: replyCode, history: history) }
            return
        }
        closeUDP()
        mode = .closed
        socket.close()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if stream.isWritable {
            unwritableBacklog = 0
            if channelReadsPaused {
                channelReadsPaused = false
                socket.setReadsPaused(false)
            }
        }
    }

    // MARK: - Helpers

    private func writeToStream(_ data: ByteBuffer) {
        guard !streamDone, !streamFinSent else { return }
        countChannelBytes(data.readableBytes)
        let wasWritable = stream.isWritable
        stream.write(data)
        if !wasWritable {
            unwritableBacklog += data.readableBytes
            counters.notePeakUnwritable(unwritableBacklog)
        }
        if !stream.isWritable, !channelReadsPaused {
            channelReadsPaused = true
            socket.setReadsPaused(true)
        }
    }

    private func finishStream() {
        guard !streamDone, !streamFinSent else { return }
        streamFinSent = true
        stream.finish()
        if streamFinReceived { streamDone = true }
    }

    private func resetStream(_ code: AppStreamResetCode) {
        guard !streamDone else { return }
        streamDone = true
        stream.reset(code)
    }

    /// Writes to the connection (sent at once; what the kernel does not take waits in the socket).
    private func send(_ data: ByteBuffer) {
        socket.write(data)
    }

    private func countChannelBytes(_ count: Int) {
        role == .client ? counters.addBytes(up: count, down: 0) : counters.addBytes(up: 0, down: count)
    }

    private func countStreamBytes(_ count: Int) {
        role == .client ? counters.addBytes(up: 0, down: count) : counters.addBytes(up: count, down: 0)
    }

    // MARK: - Client-side UDP relay

    private func bindUDPRelay(reply: Socks5Reply, request: Socks5Request) {
        guard let local = socket.localAddress, let localIP = Socks5Address(local),
              let bindAddress = localIP.socketAddress(port: 0),
              let peer = socket.remoteAddress else {
            failUDP("control connection has no address")
            return
        }
        bindSkysocksUDP(to: bindAddress, reuseAddress: true, consumerLoop: stream.eventLoop, group: udpGroup)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .failure(let error):
                    self.failUDP("binding the UDP relay failed: \(error)")
                case .success(let (datagramChannel, sink)):
                    guard case .udpBinding(let decoder) = self.mode, let bound = datagramChannel.localAddress,
                          let boundIP = Socks5Address(bound), let boundPort = bound.port else {
                        datagramChannel.close(promise: nil)
                        return
                    }
                    let relay = SkysocksClientUDPRelay(datagramChannel: datagramChannel, stream: self.stream,
                                                       controlPeer: Socks5Address(peer), request: request,
                                                       decoder: decoder, counters: self.counters)
                    sink.value.deliver = { relay.datagramFromApplication($0) }
                    self.mode = .udp(relay)
                    var out = Self.allocator.buffer(capacity: 32)
                    Socks5Reply.write(code: .succeeded, boundAddress: boundIP, boundPort: UInt16(boundPort), to: &out)
                    self.send(out)
                    self.logger.debug("UDP relay bound", metadata: ["address": "\(bound)", "server": "\(reply.boundAddress)"])
                    relay.drainStream()
                }
            }
    }

    private func failUDP(_ reason: String) {
        logger.info("UDP ASSOCIATE failed", metadata: ["reason": "\(reason)"])
        socket.writeAndClose(Socks5Reply.encode(code: .generalFailure, allocator: Self.allocator))
        resetStream(.appClosed)
        mode = .closed
    }

    private func closeUDP() {
        if case .udp(let relay) = mode {
            relay.close()
        }
    }
}
