#if canImport(Glibc)
import Glibc
#endif
import CSkywireShim
import Logging
import NIOCore
import SkywireCrypto
import SkywireSystem
import SkywireIO

extension TransportManager {
    /// Binds the stcpr listener on the first datapath loop; each accepted connection runs the
    /// responder handshake in a `RawStcprLink` on a datapath loop (round robin).
    func bindStcpr() async throws -> StcprListener {
        let loops = try datapathLoops()
        let address = try SocketAddress(ipAddress: settings.listenHost, port: settings.stcprPort)
        let admission = StcprAdmission(limits: StcprAdmission.Limits(total: settings.stcprMaxConnections))
        let listener = StcprListener(loops: loops, logger: logger, admission: admission) { [weak self] socket, peer, admission, loop in
            self?.acceptedStcpr(socket, from: peer, admission: admission, on: loop)
        }
        try await loops[0].submit { try listener.start(address: address) }.get()
        return listener
    }

    /// Runs the responder side of a connection a peer dialled to us (admitted by `admission`,
    /// which learns when its handshake completes and when it closes). On `loop`.
    private func acceptedStcpr(_ socket: OwnedDescriptor, from peer: SocketAddress?, admission: StcprAdmission,
                               on loop: EpollEventLoop) {
        let source = StcprAdmission.sourceKey(peer?.ipAddress)
        var entry: TransportEntry?
        var halfOpen = true
        let logger = self.logger
        let release = {
            guard admission.released(source, halfOpen: halfOpen) else { return }
            // A mass close (e.g. thousands of sockets timing out): hand the freed heap back.
            let before = Self.residentMiB()
            skw_malloc_trim()
            logger.debug("stcpr: \(StcprAdmission.trimAfterReleases) connections closed; malloc_trim: RSS \(before) → \(Self.residentMiB()) MiB")
        }
        let hooks = RawStcprLink.Hooks(
            established: { [weak self] pk, link in
                admission.handshakeCompleted(source)
                halfOpen = false
                guard let self else { return nil }
                let created = TransportEntry(manager: self, id: self.newID(), remote: pk, type: .stcpr,
                                             host: peer?.ipAddress ?? "?", port: peer?.port ?? 0,
                                             initiator: false, wanted: false)
                guard self.registerInbound(created) else { return nil }
                entry = created
                return created.established(link: link, on: loop, remoteAddress: peer.map(TransportManager.format) ?? "?")
            },
            closed: { reason in
                release()
                entry?.linkClosed(reason: reason)
            },
            gate: stcprGate,
            sinks: sinks)
        do {
            let deadline = min(TimeAmount.seconds(settings.handshakeTimeout), StcprListener.handshakeDeadline)
            _ = try RawStcprLink(loop: loop, socket: socket, identity: noiseIdentity(), expectedRemote: nil,
                                 handshakeTimeout: deadline, logger: logger, hooks: hooks)
        } catch {
            release()
            logger.warning("stcpr: cannot serve an incoming connection: \(error)")
        }
    }

    /// This process's resident set in MiB (/proc/self/statm), -1 when unreadable; for the log.
    static func residentMiB() -> Int {
        guard let bytes = try? FileIO.read("/proc/self/statm"),
              let field = String(decoding: bytes, as: UTF8.self).split(separator: " ").dropFirst().first,
              let pages = Int(field) else { return -1 }
        return (pages * Int(sysconf(Int32(_SC_PAGESIZE)))) >> 20
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
        guard let identity = identityForDial(entry) else { return }
        let logger = self.logger
        let sinks = self.sinks
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
                        closed: { [weak entry] reason in entry?.linkClosed(reason: reason) },
                        sinks: sinks)
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
/// connections that `admission` lets in go to the loops in turn, the others are closed at once.
final class StcprListener: @unchecked Sendable {
    // @unchecked Sendable: `listener` and `next` are touched only on `loops[0]` (`close()` hops
    // there; checked: preconditionInEventLoop in `start` and `dispatch`); `localAddress` is written by `start` before the future that returns the listener
    // completes, and only read afterwards; `loops`, `accepted`, `admission` and `logger` are
    // immutable (`admission` locks itself).
    typealias Accepted = (OwnedDescriptor, SocketAddress?, StcprAdmission, EpollEventLoop) -> Void
    static let backlog: Int32 = 256
    /// Longest an accepted socket may take to complete its handshake (at most
    /// `TransportSettings.handshakeTimeout`): an honest initiator sends message 1 right after connecting.
    static let handshakeDeadline = TimeAmount.seconds(5)

    private let loops: [EpollEventLoop]
    private let accepted: Accepted
    private let logger: Logger
    let admission: StcprAdmission
    private var listener: RawTCPListener?
    private var next = 0
    private(set) var localAddress: SocketAddress?

    init(loops: [EpollEventLoop], logger: Logger, admission: StcprAdmission = StcprAdmission(),
         accepted: @escaping Accepted) {
        self.loops = loops
        self.logger = logger
        self.admission = admission
        self.accepted = accepted
    }

    /// Binds `address` and starts accepting; call on `loops[0]`.
    func start(address: SocketAddress) throws {
        loops[0].preconditionInEventLoop()
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
        loops[0].preconditionInEventLoop()
        let peer = RawTCPSocket.peerAddress(socket.raw)
        let source = StcprAdmission.sourceKey(peer?.ipAddress)
        if let refusal = admission.admit(source) {
            socket.close()
            let now = admission.current
            RefusalLog.shared.note(refusal.reason, "stcpr connection from \(source) closed (\(now.open) open, "
                                                   + "\(now.halfOpen) half-open)", logger: logger)
            return
        }
        let loop = loops[next % loops.count]
        next &+= 1
        if loop === loops[0] {
            accepted(socket, peer, admission, loop)
        } else {
            let transfer = LoopTransfer(value: socket)
            loop.execute { [self] in accepted(transfer.value, peer, admission, loop) }
        }
    }
}
