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
    func bindStcpr() async throws -> StcprListener {
        let loops = try datapathLoops()
        let address = try SocketAddress(ipAddress: settings.listenHost, port: settings.stcprPort)
        let listener = StcprListener(loops: loops) { [weak self] socket, loop in
            self?.acceptedStcpr(socket, on: loop)
        }
        try await loops[0].submit { try listener.start(address: address) }.get()
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
            closed: { reason in entry?.linkClosed(reason: reason) },
            gate: stcprGate)
        do {
            _ = try RawStcprLink(loop: loop, socket: socket, identity: noiseIdentity(), expectedRemote: nil,
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
        let identity: NoiseStaticIdentity
        do {
            identity = try noiseIdentity()
        } catch {
            entry.linkClosed(reason: "\(error)")
            return
        }
        let logger = self.logger
        let (host, port) = (entry.host, entry.port)
        let dial = LoopTransfer(value: entry)
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
                                             timestamp: entry.handshakeTimestamp(), handshakeTimeout: timeout,
                                             logger: logger, hooks: hooks)
                    } catch {
                        entry.linkClosed(reason: "\(error)")
                    }
                }
            }
        }
    }
}

/// The stcpr listening socket (`RawTCPListener` on the first datapath loop); accepted
/// connections go to the loops in turn.
final class StcprListener: @unchecked Sendable {
    // @unchecked Sendable: `listener` and `next` are touched only on `loops[0]` (`close()` hops
    // there); `localAddress` is written by `start` before the future that returns the listener
    // completes, and only read afterwards; `loops` and `accepted` are immutable.
    static let backlog: Int32 = 256

    private let loops: [EpollEventLoop]
    private let accepted: (OwnedDescriptor, EpollEventLoop) -> Void
    private var listener: RawTCPListener?
    private var next = 0
    private(set) var localAddress: SocketAddress?

    init(loops: [EpollEventLoop], accepted: @escaping (OwnedDescriptor, EpollEventLoop) -> Void) {
        self.loops = loops
        self.accepted = accepted
    }

    /// Binds `address` and starts accepting; call on `loops[0]`.
    func start(address: SocketAddress) throws {
        let listener = try RawTCPListener(loop: loops[0], address: address, backlog: Self.backlog) { [self] fd in
            dispatch(OwnedDescriptor(taking: fd))
        }
        self.listener = listener
        localAddress = listener.localAddress
    }

    /// Closes the listening socket (on its loop).
    func close() {
        loops[0].execute { [self] in
            listener?.close()
            listener = nil
        }
    }

    private func dispatch(_ socket: OwnedDescriptor) {
        let loop = loops[next % loops.count]
        next &+= 1
        if loop === loops[0] {
            accepted(socket, loop)
        } else {
            let transfer = LoopTransfer(value: socket)
            loop.execute { [self] in accepted(transfer.value, loop) }
        }
    }
}
