import Logging
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireSystem

/// The dmsg relay server (PROTOCOL.md §7, docs/dmsg.md): accepts client sessions on TCP, admits
/// sockets with `StcprAdmission` (per address, total, half-open), authenticates each client
/// with the stcpr handshake behind `StcprHandshakeGate`, and only then gives it a place in the
/// routing core (`DmsgRelayCore`). Everything runs on one `EpollEventLoop`.
public final class DmsgRelayServer: @unchecked Sendable {
    // @unchecked Sendable: every mutable property is confined to `loop` (public entry points hop
    // there with `loop.execute` / `loop.submit`); `loop`, `identity`, `limits`, `logger`,
    // `admission` and `gate` are immutable (the last two lock themselves).

    public struct Limits: Sendable, Equatable {
        public var core = DmsgRelayCore.Limits()
        /// Sockets per source address (IPv4 address or IPv6 /64) and in all, and of those without
        /// a confirmed handshake (`StcprAdmission`; the stcpr listener's defaults).
        public var connectionsPerAddress = StcprAdmission.Limits().perAddress
        public var connectionsTotal = 12_000
        public var halfOpenPerAddress = StcprAdmission.Limits().halfOpenPerAddress
        public var halfOpenTotal = StcprAdmission.Limits().halfOpenTotal
        /// A session that sends nothing (clients PING every `DmsgClientSession.pingInterval`) for this long is closed.
        public var idleTimeout = TimeAmount.seconds(120)
        /// Time from accept to the client's confirmation.
        public var handshakeTimeout = TimeAmount.seconds(5)
        /// Unsent bytes toward one client beyond which it is closed ("does not read"): above
        /// `maxStreamsPerClient × maxWindow` (what credit allows) plus record overheads.
        public var maxOutbound = 48 << 20

        public init() {}
    }

    /// A snapshot for `/health` (taken on the loop).
    public struct Stats: Sendable, Equatable {
        public var clients = 0
        public var streams = 0
        public var connections = 0
        public var halfOpen = 0
        public var bytesIn: UInt64 = 0
        public var bytesOut: UInt64 = 0
        public var core = DmsgRelayCore.Counters()
        /// Handshakes refused before confirmation, by `HandshakeRefusal` name.
        public var handshakeRefusals: [String: Int] = [:]
        /// Sockets closed at accept by `StcprAdmission`, by reason.
        public var connectionRefusals: [String: Int] = [:]
        /// Sessions closed for sending nothing for `idleTimeout`.
        public var idleClosed = 0
        /// Authenticated clients refused because their key is not on the client list.
        public var refusedKeys = 0
        /// The client list (`DmsgClientPolicy.summary`).
        public var clientPolicy = DmsgClientPolicy.nobody.summary
    }

    /// How often idle sessions are looked for (at most; twice per `idleTimeout` when shorter).
    static let idleSweepInterval = TimeAmount.seconds(5)
    static let backlog: Int32 = 1024

    public let loop: EpollEventLoop
    public let limits: Limits
    private let identity: NoiseStaticIdentity
    private let logger: Logger
    private let admission: StcprAdmission
    private let gate: StcprHandshakeGate
    private var core: DmsgRelayCore
    /// Which keys are served (closed by default); replaced by `setClients`.
    private var clients: DmsgClientPolicy
    private var listener: RawTCPListener?
    private var links: [DmsgRelayCore.ClientID: DmsgRecordLink] = [:]
    private var nextID: DmsgRelayCore.ClientID = 1
    private var sweep: RepeatedTask?
    private var stats = Stats()
    /// Bytes of links already closed (the live ones are added in `snapshot`).
    private var closedBytes: (in: UInt64, out: UInt64) = (0, 0)
    public private(set) var localAddress: SocketAddress?

    public init(loop: EpollEventLoop, identity: KeyPair, limits: Limits = Limits(), clients: DmsgClientPolicy = .nobody,
                logger: Logger) throws {
        self.loop = loop
        self.clients = clients
        self.identity = try NoiseStaticIdentity(identity: identity)
        self.limits = limits
        self.logger = logger
        admission = StcprAdmission(limits: StcprAdmission.Limits(
            perAddress: limits.connectionsPerAddress, total: limits.connectionsTotal,
            halfOpenPerAddress: limits.halfOpenPerAddress, halfOpenTotal: limits.halfOpenTotal))
        gate = StcprHandshakeGate(logger: logger)
        core = DmsgRelayCore(limits: limits.core)
    }

    /// Binds `address` and starts serving.
    public func start(address: SocketAddress) async throws -> SocketAddress? {
        try await loop.submit { [self] in
            let listener = try RawTCPListener(loop: loop, address: address, backlog: Self.backlog) { [self] fd in
                accepted(OwnedDescriptor(taking: fd))
            }
            self.listener = listener
            localAddress = listener.localAddress
            let every = min(Self.idleSweepInterval, .nanoseconds(max(1, limits.idleTimeout.nanoseconds / 2)))
            sweep = loop.scheduleRepeatedTask(initialDelay: every, delay: every) { [self] _ in
                closeIdle()
            }
            return listener.localAddress
        }.get()
    }

    /// Stops accepting and ends every session (clients get no frame: their TCP connection closes).
    public func stop() async {
        try? await loop.submit { [self] in
            sweep?.cancel()
            listener?.close()
            listener = nil
            for link in Array(links.values) { link.close(reason: "relay stopping") }
        }.get()
    }

    /// Replaces the client list (SIGHUP re-reads `--clients-file`). Sessions already up whose
    /// key is no longer listed are closed with REFUSED.
    public func setClients(_ policy: DmsgClientPolicy) async {
        try? await loop.submit { [self] in
            clients = policy
            for (_, link) in links where link.established {
                guard let key = link.remoteKey, !policy.admits(key) else { continue }
                stats.refusedKeys += 1
                refuse(link, .notListed)
            }
        }.get()
    }

    /// Counters and gauges, taken on the loop.
    public func snapshot() async -> Stats {
        (try? await loop.submit { [self] in currentStats() }.get()) ?? Stats()
    }

    private func currentStats() -> Stats {
        var s = stats
        s.clientPolicy = clients.summary
        s.clients = core.clientCount
        s.streams = core.streamCount
        let now = admission.current
        s.connections = now.open
        s.halfOpen = now.halfOpen
        s.core = core.counters
        s.bytesIn = closedBytes.in + links.values.reduce(0) { $0 + $1.receivedBytes }
        s.bytesOut = closedBytes.out + links.values.reduce(0) { $0 + $1.sentBytes }
        return s
    }

    // MARK: Sessions

    private func accepted(_ socket: OwnedDescriptor) {
        let peer = RawTCPSocket.peerAddress(socket.raw)
        let source = StcprAdmission.sourceKey(peer?.ipAddress)
        if let refusal = admission.admit(source) {
            socket.close()
            stats.connectionRefusals[refusal.reason.rawValue, default: 0] += 1
            RefusalLog.shared.note(refusal.reason, "dmsg connection from \(source) closed", logger: logger)
            return
        }
        let id = nextID
        nextID += 1
        var halfOpen = true
        let hooks = DmsgRecordLink.Hooks(
            established: { [weak self] key in
                guard let self else { return false }
                admission.handshakeCompleted(source)
                halfOpen = false
                return connect(id, key: key)
            },
            frame: { [weak self] frame in self?.received(frame, from: id) },
            closed: { [weak self] reason in
                guard let self else { return }
                _ = admission.released(source, halfOpen: halfOpen)
                disconnected(id, reason: reason)
            },
            refused: { [weak self] reason in self?.stats.handshakeRefusals[reason, default: 0] += 1 },
            gate: gate)
        do {
            let link = try DmsgRecordLink(loop: loop, socket: socket, identity: identity, expectedRemote: nil,
                                          handshakeTimeout: limits.handshakeTimeout, maxOutbound: limits.maxOutbound,
                                          logger: logger, hooks: hooks)
            links[id] = link
        } catch {
            _ = admission.released(source, halfOpen: true)
            logger.warning("dmsg: cannot serve a connection: \(error)")
        }
    }

    /// A client confirmed its handshake as `key`: refused (REFUSED, then closed) unless its key
    /// is listed, before the routing core holds anything for it (PROTOCOL.md §7.1).
    private func connect(_ id: DmsgRelayCore.ClientID, key: PublicKey) -> Bool {
        guard clients.admits(key) else {
            stats.refusedKeys += 1
            RefusalLog.shared.note(.keyNotListed, "dmsg client \(key.hex) refused: not on the client list", logger: logger)
            if let link = links[id] { refuse(link, .notListed) }
            return false
        }
        let actions = core.connect(id, key: key)
        let admitted = core.key(of: id) == key
        logger.debug("dmsg: client \(key.short) \(admitted ? "connected" : "refused") (session \(id))")
        perform(actions.filter { if case .close(id, _) = $0 { false } else { true } })
        if !admitted, let link = links[id] { refuse(link, .full) }
        return admitted
    }

    /// Tells the client why and closes its session (the frame is written now: the link closes
    /// right after).
    private func refuse(_ link: DmsgRecordLink, _ why: DmsgSessionRefusal) {
        link.send(.refused(why))
        link.flush()
        link.close(reason: why.description)
    }

    private func received(_ frame: DmsgFrame, from id: DmsgRelayCore.ClientID) {
        perform(core.receive(from: id, frame))
    }

    private func disconnected(_ id: DmsgRelayCore.ClientID, reason: String) {
        if let link = links.removeValue(forKey: id) {
            closedBytes.in += link.receivedBytes
            closedBytes.out += link.sentBytes
            if let key = link.remoteKey, link.established {
                logger.debug("dmsg: client \(key.short) gone: \(reason)")
            }
        }
        perform(core.disconnect(id))
    }

    private func perform(_ actions: [DmsgRelayCore.Action]) {
        for action in actions {
            switch action {
            case .send(let id, let frame): links[id]?.send(frame)
            case .close(let id, let reason): links[id]?.close(reason: reason)
            }
        }
    }

    private func closeIdle() {
        let deadline = NIODeadline.now() - limits.idleTimeout
        for (_, link) in links where link.established && link.lastReceived < deadline {
            stats.idleClosed += 1
            link.close(reason: "idle for \(limits.idleTimeout.nanoseconds / 1_000_000_000) s")
        }
    }
}
