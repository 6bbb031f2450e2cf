#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import SkywireCrypto
import SkywireSystem

extension TransportManager {
    /// Binds the stcpr listener on the first datapath loop; each accepted connection runs the
    /// responder handshake in a `RawStcprLink` on a datapath loop (round robin).
    func bindStcpr() throws -> StcprListener {
        let loops = try datapathLoops()
        let address = try SocketAddress(ipAddress: settings.listenHost, port: settings.stcprPort)
        let socket = try RawTCPSocket.listen(on: address, backlog: StcprListener.backlog)
        let listener = StcprListener(socket: socket, loops: loops) { [weak self] fd, loop in
            self?.acceptedStcpr(fd, on: loop)
        }
        try loops[0].submit { try listener.start() }.wait()
        return listener
    }

    /// Runs the responder side of a connection a peer dialled to us. On `loop`.
    private func acceptedStcpr(_ socket: OwnedDescriptor, on loop: EpollEventLoop) {
        let peer = RawTCPSocket.peerAddress(socket.raw)
        var entry: TransportEntry?
        let hooks = RawStcprLink.Hooks(
            established: { [weak self] pk, link in
                guard let self else { return nil }
                let created = TransportEntry(manager: self, id: self.newID(), remote: pk, type: .stcpr,
                                             host: peer?.ipAddress ?? "?", port: peer?.port ?? 0,
                                             initiator: false, wanted: false)
                guard self.registerInbound(created) else { return nil }
                entry = created
                return created.established(link: link, on: loop, remoteAddress: peer.map(TransportManager.format) ?? "?")
            },
            closed: { reason in entry?.linkClosed(reason: reason) })
        do {
            _ = try RawStcprLink(loop: loop, socket: socket, identity: settings.identity, expectedRemote: nil,
                                 handshakeTimeout: .seconds(settings.handshakeTimeout), logger: logger, hooks: hooks)
        } catch {
            logger.warning("stcpr: cannot serve an incoming connection: \(error)")
        }
    }

    /// Dials `host:port` for `entry` on the datapath loop of its remote key and runs the
    /// initiator handshake there.
    func dialStcpr(_ entry: TransportEntry) {
        let loop: EpollEventLoop
        do {
            loop = try datapathLoop(for: entry.remote)
        } catch {
            entry.linkClosed(reason: "no datapath loop: \(error)")
            return
        }
        let timeout = TimeAmount.seconds(settings.handshakeTimeout)
        let (identity, logger) = (settings.identity, self.logger)
        let (host, port) = (entry.host, entry.port)
        let dial = LoopTransferBox(entry)
        loop.execute {
            RawTCPConnector.connect(on: loop, host: host, port: port, timeout: timeout) { [weak entry = dial.value] result in
                guard let entry else { return }
                switch result {
                case .failure(let error):
                    entry.linkClosed(reason: "connect to \(host):\(port) failed: \(error)")
                case .success(let socket):
                    let hooks = RawStcprLink.Hooks(
                        established: { [weak entry] _, link in entry?.established(link: link, on: loop) },
                        closed: { [weak entry] reason in entry?.linkClosed(reason: reason) })
                    do {
                        _ = try RawStcprLink(loop: loop, socket: socket, identity: identity, expectedRemote: entry.remote,
                                             handshakeTimeout: timeout, logger: logger, hooks: hooks)
                    } catch {
                        entry.linkClosed(reason: "\(error)")
                    }
                }
            }
        }
    }
}

/// The stcpr listening socket, watched on the first datapath loop; accepted connections go to
/// the loops in turn. Confined to `loops[0]` once started.
final class StcprListener: @unchecked Sendable {
    // @unchecked Sendable: `next` and the watch are touched only on `loops[0]`; `socket` is
    // closed there too (`close()` hops).
    static let backlog: Int32 = 256

    private let socket: OwnedDescriptor
    private let loops: [EpollEventLoop]
    private let accepted: (OwnedDescriptor, EpollEventLoop) -> Void
    private var next = 0
    let localAddress: SocketAddress?

    init(socket: OwnedDescriptor, loops: [EpollEventLoop], accepted: @escaping (OwnedDescriptor, EpollEventLoop) -> Void) {
        self.socket = socket
        self.loops = loops
        self.accepted = accepted
        localAddress = RawTCPSocket.localAddress(socket.raw)
    }

    func start() throws {
        try loops[0].watch(socket.raw, interest: .read) { [self] _ in acceptPending() }
    }

    /// Closes the listening socket (on its loop).
    func close() {
        loops[0].execute { [self] in
            guard socket.isOpen else { return }
            loops[0].unwatch(socket.raw)
            socket.close()
        }
    }

    /// How long accepting pauses after accept4 failed for want of descriptors or memory.
    static let acceptRetryDelay = TimeAmount.milliseconds(100)

    private func pauseAccepting() {
        try? loops[0].setInterest(socket.raw, [])
        _ = loops[0].assumeIsolated().scheduleTask(in: Self.acceptRetryDelay) { [self] in
            guard socket.isOpen else { return }
            try? loops[0].setInterest(socket.raw, .read)
        }
    }

    private func acceptPending() {
        // Bounded per wake-up so a flood cannot starve the loop's other descriptors.
        for _ in 0..<Self.backlog where socket.isOpen {
            let fd: Int32
            do {
                guard case .processed(let got) = try RawTCPSocket.accept(from: socket.raw) else { return }
                fd = got
            } catch let error as SystemError where error.errno == ECONNABORTED || error.errno == EPROTO {
                continue  // the peer gave up while queued
            } catch {
                // EMFILE/ENFILE and the like: leave the rest queued and look again a little later
                // (the socket stays readable, so watching it meanwhile would spin).
                pauseAccepting()
                return
            }
            let loop = loops[next % loops.count]
            next &+= 1
            let transfer = LoopTransferBox((OwnedDescriptor(taking: fd), accepted))
            if loop === loops[0] {
                accepted(transfer.value.0, loop)
            } else {
                loop.execute { transfer.value.1(transfer.value.0, loop) }
            }
        }
    }
}
