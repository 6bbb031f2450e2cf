import Logging
import NIOCore
import NIOPosix
import CSkywireShim
import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// The sudph UDP socket shared by every sudph peer (PROTOCOL.md §4). All peer state lives on
/// the socket's event loop; packets are dispatched by type and receiver index.
final class SudphEndpoint: @unchecked Sendable {
    // @unchecked Sendable: `peersByIndex`, `responders`, the handshake defence state, `plaintext`,
    // `sinksInBatch`, the rendezvous fields and the handler state are confined to `eventLoop`; other threads only call `dial`/`close`, which hop onto it.
    let channel: Channel
    let eventLoop: EventLoop
    unowned let manager: TransportManager
    var logger: Logger { manager.logger }
    var localAddress: SocketAddress? { channel.localAddress }
    /// Local receiver index → the peer owning it (a confirmed session, or our own dial's handshake).
    var peersByIndex: [UInt32: SudphPeer] = [:]
    /// Responder handshakes awaiting confirmation, stamps accepted per key, and each key's live
    /// inbound session (SudphEndpoint+Handshake, PROTOCOL.md §4.3).
    var responders = SudphResponderTable<SudphPendingHandshake>(
        maxPending: SudphEndpoint.maxPendingHandshakes,
        pendingLifetime: SudphEndpoint.pendingHandshakeLifetime.nanoseconds)
    /// Initiations per second, for the cookie mechanism (§2.1), and the cookie secret.
    var handshakeLoad = HandshakeLoad(threshold: SudphEndpoint.cookieThresholdPerSecond)
    var rateLimiter = HandshakeRateLimiter()
    var cookieSecret = CookieSecret(nowSeconds: Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds / 1_000_000_000))
    var droppedPackets: UInt64 = 0
    /// The UDP rendezvous this socket BINDs at (SudphEndpoint+Rendezvous), its timer, and the
    /// address it last reported in BIND_OK.
    var rendezvous: SocketAddress?
    var bindTask: RepeatedTask?
    var observedAddress: RendezvousAddress?
    /// Tokens of the latest BINDs (newest first, at most `SudphEndpoint.bindTokensKept`): BIND_OK and PUNCH must echo one.
    var bindTokens: [[UInt8]] = []
    /// Messages read per recvmmsg(2) call, the largest datagram accepted, and the room for one
    /// message: with UDP GRO a message holds up to 64 KiB of equal-sized datagrams.
    static let vectorReadCount = 32
    static let maxDatagram = 2048
    static let groVectorReadCount = 8
    static let maxGROMessage = 65536

    /// Sends go around NIO's datagram writer, which closes the channel on errors such as a
    /// firewall's EPERM; here a failed datagram is only dropped (see `UDPBatchSender`).
    private let sender: UDPBatchSender
    /// The socket, also written by datapath threads (`SudphDatagramPath`); NIO owns and closes it.
    let fd: Int32

    private init(channel: Channel, manager: TransportManager, fd: Int32) {
        self.fd = fd
        self.channel = channel
        self.eventLoop = channel.eventLoop
        self.manager = manager
        self.sender = UDPBatchSender(borrowing: fd)
    }

    static func bind(host: String, port: Int, manager: TransportManager) async throws -> SudphEndpoint {
        // UDP GRO (UDP_GRO via NIO's datagramReceiveOffload) when the kernel has it.
        let gro = System.supportsUDPReceiveOffload
        let vectorReadCount = gro ? Self.groVectorReadCount : Self.vectorReadCount
        let maxDatagram = gro ? Self.maxGROMessage : Self.maxDatagram
        let box = EndpointBox()
        let local = try SocketAddress(ipAddress: host, port: port)
        let fd = try syscall("socket(udp)") { skw_udp_socket(local.protocol.rawValue) }
        do {
            try local.withSockAddr { addr, len in
                try syscall("bind(\(host):\(port))") { Glibc.bind(fd, addr, socklen_t(len)) }
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        // NIO owns `fd` from here on and closes it with the channel.
        let ch = try await DatagramBootstrap(group: manager.group)
            .channelOption(ChannelOptions.datagramVectorReadMessageCount, value: vectorReadCount)
            // recvmmsg splits the receive buffer evenly between the messages of one batch.
            .channelOption(ChannelOptions.recvAllocator,
                           value: FixedSizeRecvByteBufferAllocator(capacity: vectorReadCount * maxDatagram))
            .channelOption(ChannelOptions.datagramReceiveOffload, value: gro)
            .channelOption(ChannelOptions.datagramReceiveSegmentSize, value: gro)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SudphInboundHandler(box: box))
                }
            }
            .withBoundSocket(fd).get()
        _ = try? await ch.setOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4 << 20).get()
        _ = try? await ch.setOption(ChannelOptions.socketOption(.so_sndbuf), value: 4 << 20).get()
        let endpoint = SudphEndpoint(channel: ch, manager: manager, fd: fd)
        box.endpoint = endpoint
        return endpoint
    }

    func close() async {
        try? await eventLoop.submit {
            self.bindTask?.cancel()
            self.bindTask = nil
            // A peer can own two indices (handshake and session): close each once.
            var peers: [ObjectIdentifier: SudphPeer] = [:]
            for peer in self.peersByIndex.values { peers[ObjectIdentifier(peer)] = peer }
            for peer in peers.values { peer.close(reason: "visor stopping") }
            self.responders.removeAllPending()
        }.get()
        try? await channel.close()
    }

    /// A fresh random local index not in use (by a peer or a pending handshake).
    func newIndex() -> UInt32 {
        while true {
            let i = UInt32.random(in: 1...UInt32.max)
            if peersByIndex[i] == nil && !responders.isPending(i) { return i }
        }
    }

    /// Starts a handshake to `remote` at `host:port` for `entry`; the outcome reaches the entry.
    /// A name is resolved off the event loops (`resolveOffLoop`): redials run on a loop timer,
    /// and getaddrinfo(3) blocks while DNS is down.
    func dial(remote: PublicKey, host: String, port: Int, entry: TransportEntry, schedule: SudphHandshakeSchedule) {
        SocketAddress.resolveOffLoop(host: host, port: port, on: eventLoop) { result in
            // The first address of the socket's family, else the first (its send error names the mismatch).
            let all: [SocketAddress]
            switch result {
            case .success(let found): all = found
            case .failure(let error):
                entry.linkClosed(reason: "\(error is ResolutionError ? "" : "cannot resolve \(host): ")\(error)")
                return
            }
            let family = self.localAddress?.protocol
            guard let address = all.first(where: { $0.protocol == family }) ?? all.first else {
                entry.linkClosed(reason: "cannot resolve \(host): no address")
                return
            }
            do {
                let peer = try SudphPeer.dial(endpoint: self, remote: remote, address: address, entry: entry,
                                              schedule: schedule)
                peer.start()
            } catch {
                entry.linkClosed(reason: "sudph handshake: \(error)")
            }
        }
    }

    /// Queues one packet built elsewhere (handshake messages).
    func send(_ packet: ByteBuffer, to address: SocketAddress) {
        send(to: address) { slot in
            packet.withUnsafeReadableBytes { bytes in
                guard bytes.count <= slot.count else { return 0 }
                slot.copyMemory(from: bytes)
                return bytes.count
            }
        }
    }

    /// Queues one packet that `fill` writes straight into the send arena; returns its length.
    func send(to address: SocketAddress, fill: (UnsafeMutableRawBufferPointer) -> Int) {
        sender.enqueue(address: { storage in
            address.withSockAddr { addr, len in
                UnsafeMutableRawPointer(storage).copyMemory(from: addr, byteCount: len)
                return socklen_t(len)
            }
        }, fill: fill)
    }

    /// Sends the queued packets (one sendmmsg per 64).
    func flush() { sender.flush() }

    /// Sinks that got datagrams since the last read burst ended.
    private var sinksInBatch: [DatagramSink] = []

    func noteSink(_ sink: DatagramSink) {
        if sinksInBatch.contains(where: { $0 === sink }) { return }
        sinksInBatch.append(sink)
    }

    /// The read burst ended: sinks push what they held back.
    func endSinkBatch() {
        guard !sinksInBatch.isEmpty else { return }
        for sink in sinksInBatch { sink.datagramBatchEnded() }
        sinksInBatch.removeAll(keepingCapacity: true)
    }

    var sendStatistics: (sent: UInt64, dropped: UInt64, lastError: SystemError?) {
        (sender.sent, sender.dropped, sender.lastError)
    }

    // MARK: Receiving (on eventLoop)

    /// One received message: a datagram, or with UDP GRO several of `segmentSize` bytes each
    /// (the last may be shorter), handled one by one without copying.
    func receive(_ envelope: AddressedEnvelope<ByteBuffer>) {
        let data = envelope.data
        guard let size = envelope.metadata?.segmentSize, size > 0, data.readableBytes > size else {
            receive(data, from: envelope.remoteAddress)
            return
        }
        var offset = 0
        while offset < data.readableBytes {
            let length = min(size, data.readableBytes - offset)
            if let slice = data.getSlice(at: data.readerIndex + offset, length: length) {
                receive(slice, from: envelope.remoteAddress)
            }
            offset += length
        }
    }

    /// Where data packets are decrypted (not in place: the received buffer is shared with the
    /// rest of its recvmmsg batch, so writing to it would copy it). Event-loop confined.
    let plaintext = UnsafeMutableRawBufferPointer.allocate(byteCount: SudphEndpoint.maxDatagram, alignment: 16)

    deinit { plaintext.deallocate() }

    private func receive(_ data: ByteBuffer, from: SocketAddress) {
        if let first = data.getInteger(at: data.readerIndex, as: UInt8.self) {
            if SudphRendezvousType.isRendezvous(first) {
                receiveRendezvous(data, from: from)
                return
            }
            if first == 0, data.readableBytes == 1 {
                receiveProbe(from: from)
                return
            }
        }
        let parsed: SudphPacket
        do {
            parsed = try data.withUnsafeReadableBytes { try SudphPacket.parse($0) }
        } catch {
            if data.getInteger(at: data.readerIndex, as: UInt8.self) == SudphPacketType.initiation.rawValue {
                refuse(.malformed, "initiation from \(from): \(error)")
            } else {
                drop("malformed packet from \(from): \(error)")
            }
            return
        }
        switch parsed {
        case .initiation(let senderIndex, let message):
            receiveInitiation(data, senderIndex: senderIndex, message: message, from: from)
        case .cookieReply(let receiverIndex, let nonce, let sealedCookie):
            guard let peer = peersByIndex[receiverIndex] else {
                drop("cookie reply for unknown index \(receiverIndex) from \(from)")
                return
            }
            peer.receiveCookieReply(data, nonce: nonce, sealedCookie: sealedCookie, localIndex: receiverIndex, from: from)
        case .response(let senderIndex, let receiverIndex, let message):
            guard let peer = peersByIndex[receiverIndex] else {
                drop("response for unknown index \(receiverIndex) from \(from)")
                return
            }
            let msg = Array(data.readableBytesView[(data.readerIndex + message.lowerBound)..<(data.readerIndex + message.upperBound)])
            peer.receiveResponse(msg, senderIndex: senderIndex, localIndex: receiverIndex, from: from)
        case .data(let receiverIndex, let counter, let keyPhase, let ciphertext):
            guard let peer = peersByIndex[receiverIndex] else {
                if responders.isPending(receiverIndex) {
                    receiveConfirmation(data, localIndex: receiverIndex, counter: counter, keyPhase: keyPhase,
                                        ciphertext: ciphertext, from: from)
                } else {
                    drop("data for unknown index \(receiverIndex) from \(from)")
                }
                return
            }
            peer.receiveData(data, localIndex: receiverIndex, counter: counter, keyPhase: keyPhase,
                             ciphertext: ciphertext, from: from)
        }
    }

    /// Counts a dropped packet; `why` is built only when `debug` is logged (floods stay cheap).
    func drop(_ why: @autoclosure () -> String) {
        droppedPackets &+= 1
        logger.debug("sudph: dropped \(why())")
    }
}

final class EndpointBox: @unchecked Sendable {
    // @unchecked Sendable: set once before the channel delivers its first packet.
    var endpoint: SudphEndpoint?
}

private final class SudphInboundHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let box: EndpointBox

    init(box: EndpointBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        box.endpoint?.receive(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        box.endpoint?.endSinkBatch()
        box.endpoint?.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP errors (ECONNREFUSED) surface here; the peer's timers deal with silence.
        box.endpoint?.logger.debug("sudph socket error: \(error)")
    }
}

