import Logging
import NIOCore
import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// The sudph UDP socket shared by every sudph peer (PROTOCOL.md §4), read with recvmmsg(2) on
/// an `EpollEventLoop` (one of the manager's datapath loops). All peer state lives on that
/// loop; packets are dispatched by type and receiver index.
final class SudphEndpoint: @unchecked Sendable {
    // @unchecked Sendable: `peersByIndex`, `responders`, the handshake defence state, `plaintext`,
    // `sinkBatch`, `reader`, the rendezvous fields and the handler state are confined to
    // `eventLoop` (checked: preconditionInEventLoop in `readReady`, `closeSocket`, `newIndex`);
    // other threads only call `dial`/`close`, which hop onto it, and use `socket`, which guards itself.
    /// The loop as peers and mux connections see it (a plain `EventLoop`), and as the socket's
    /// watcher: the same `EpollEventLoop`.
    let eventLoop: EventLoop
    /// The same loop as `eventLoop`, for its timers without a promise each (`setTimer`).
    let datapathLoop: EpollEventLoop
    unowned let manager: TransportManager
    /// The manager's sink table, held here: read per received datagram, without loading the
    /// unowned `manager` (a checked strong retain) each time.
    let sinks: DatagramSinks
    var logger: Logger { manager.logger }
    var localAddress: SocketAddress? { socket.localAddress }
    /// Local receiver index → the peer owning it (a confirmed session, or our own dial's handshake).
    /// Any change forgets `lastDataPeer`.
    var peersByIndex: [UInt32: SudphPeer] = [:] {
        didSet { lastDataPeer = nil }
    }
    /// The entry of `peersByIndex` the last data packet found: a bulk transfer's packets name the
    /// same index, so most skip the dictionary's hashing.
    private var lastDataPeer: (index: UInt32, peer: SudphPeer)?
    /// The wire clock's origin (`ReliableChannel` times are nanoseconds since it), shared by the
    /// peers, and the wire time a receive batch began: the time every packet of that batch is
    /// handled at (one clock read per recvmmsg(2), not per packet).
    private let clockOrigin = NIODeadline.now()
    private(set) var receiveTime: WireTime = 0
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
    /// The key and interval of the running BINDs (`rebindRendezvous`).
    var bindSettings: (keyPair: KeyPair, interval: TimeAmount)?
    /// Socket buffers (SO_RCVBUF/SO_SNDBUF): room for bursts from many peers and VPN threads.
    static let socketBufferBytes: Int32 = 4 << 20
    /// recvmmsg(2) calls per readiness report before the loop serves its other descriptors.
    static let readsPerWake = 4
    /// The largest datagram accepted (and the decryption scratch buffer's size).
    static let maxDatagram = UDPMessageReader.maxDatagram

    /// The socket: read here, written here and by datapath threads (`SudphDatagramRoute`). The
    /// endpoint owns it and closes it in `close`; a thread's send racing that close fails
    /// instead of reaching a reused descriptor (`UDPSocket`).
    let socket: UDPSocket
    /// A failed datagram is only dropped (see `UDPBatchSender`), never fatal to the socket.
    private let sender: UDPBatchSender
    private let reader: UDPMessageReader

    private init(socket: UDPSocket, loop: EpollEventLoop, manager: TransportManager) {
        self.socket = socket
        self.eventLoop = loop
        self.datapathLoop = loop
        self.manager = manager
        self.sinks = manager.sinks
        self.sender = UDPBatchSender(socket: socket)
        self.reader = UDPMessageReader(for: socket)
    }

    /// Binds the socket (UDP GRO when the kernel has it) and starts reading it on the last of
    /// the manager's datapath loops (stcpr's listener accepts on the first).
    static func bind(host: String, port: Int, manager: TransportManager) async throws -> SudphEndpoint {
        guard let loop = try manager.datapathLoops().last else {
            throw TransportError(.closed, "no datapath loop for sudph")
        }
        let socket = try UDPSocket(bindingTo: try SocketAddress(ipAddress: host, port: port),
                                   bufferBytes: Self.socketBufferBytes, receiveOffload: true)
        let endpoint = SudphEndpoint(socket: socket, loop: loop, manager: manager)
        do {
            try await loop.submit {
                try socket.withDescriptor { fd in
                    try loop.watch(fd, interest: .read) { [weak endpoint] _ in endpoint?.readReady() }
                }
            }.get()
        } catch {
            socket.close()
            throw error
        }
        return endpoint
    }

    /// Closes every peer, stops reading and closes the socket (datapath threads sending on it
    /// from now on get `UDPSocket.closedError`).
    func close() async {
        try? await eventLoop.submit {
            self.bindTask?.cancel()
            self.bindTask = nil
            // A peer can own two indices (handshake and session): close each once.
            var peers: [ObjectIdentifier: SudphPeer] = [:]
            for peer in self.peersByIndex.values { peers[ObjectIdentifier(peer)] = peer }
            for peer in peers.values { peer.close(reason: "visor stopping") }
            self.responders.removeAllPending()
            self.closeSocket()
        }.get()
    }

    /// Stops reading and closes the socket. On `eventLoop`.
    func closeSocket() {
        eventLoop.preconditionInEventLoop()
        try? socket.withDescriptor { datapathLoop.unwatch($0) }
        socket.close()
    }

    /// A fresh random local index not in use (by a peer or a pending handshake).
    func newIndex() -> UInt32 {
        eventLoop.preconditionInEventLoop()
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

    /// Nanoseconds since `clockOrigin`: the peers' reliable-channel clock.
    func wireTime(_ deadline: NIODeadline = .now()) -> WireTime {
        deadline > clockOrigin ? UInt64((deadline - clockOrigin).nanoseconds) : 0
    }

    /// The peer owning receiver index `index` (`peersByIndex`), through `lastDataPeer`.
    func peer(forData index: UInt32) -> SudphPeer? {
        if let last = lastDataPeer, last.index == index { return last.peer }
        guard let peer = peersByIndex[index] else { return nil }
        lastDataPeer = (index, peer)
        return peer
    }

    /// Sends the queued packets (one sendmmsg per 64).
    func flush() { sender.flush() }

    /// Sinks that got datagrams since the last read burst began.
    var sinkBatch = DatagramSinkBatch()

    var sendStatistics: (sent: UInt64, dropped: UInt64, lastError: SystemError?) {
        (sender.sent, sender.dropped, sender.lastError)
    }

    // MARK: Receiving (on eventLoop)

    /// The socket is readable: up to `readsPerWake` recvmmsg(2) batches, each datagram handled in
    /// place (a UDP GRO message one datagram at a time, without copying); then sinks push what
    /// they held back and the replies go out in one batch.
    private func readReady() {
        eventLoop.preconditionInEventLoop()
        for _ in 0..<Self.readsPerWake {
            let count: Int
            do {
                count = try reader.read(from: socket)
            } catch {
                // ICMP errors (ECONNREFUSED) surface here; the peer's timers deal with silence.
                logger.debug("sudph socket error: \(error)")
                break
            }
            guard count > 0 else { break }
            receiveTime = wireTime()
            reader.forEachDatagram { data, from in receive(data, from: from) }
        }
        sinkBatch.end()
        flush()
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
            guard let peer = peer(forData: receiverIndex) else {
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
