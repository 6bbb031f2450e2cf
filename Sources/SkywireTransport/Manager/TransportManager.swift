import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem

/// Owns every transport of a visor: listeners, dials, redials with backoff, and the lookup
/// that apps use to open streams and send datagrams to a public key.
public final class TransportManager: @unchecked Sendable {
    // @unchecked Sendable: `entries`, `nextID`, `router`, listener fields and `stopped`
    // are guarded by `lock`, `sinks` by its own lock; connections themselves are confined to their event loops.
    let settings: TransportSettings
    public let group: EventLoopGroup
    /// The group's loops, for `homeLoop(for:)` (immutable after init).
    private let loops: [EventLoop]
    let logger: Logger
    let lock = NIOLock()
    var entries = TransportTable()
    private var _router: AppRouter?
    private var _resolver: PeerResolver?
    var stcprListener: StcprListener?
    /// The stcpr datapath: one `EpollEventLoop` per NIO loop, created on first use.
    private var _datapathLoops: [EpollEventLoop] = []
    var sudph: SudphEndpoint?
    /// Sessions with the dmsg relay servers (`startRelays`); nil: none configured.
    var relayPool: RelayPool?
    /// Makes relay sessions; tests put a double here before `startRelays`.
    var relaySessionFactory: RelaySessionFactory?
    /// Peers reached only through a relay whose direct transport is retried in the background
    /// (`relayInUse`).
    var directRetries: [PublicKey: DirectRetryRun] = [:]
    var stopped = false
    /// `setDatagramSink`'s table, read per received datagram.
    let sinks = DatagramSinks()
    /// The Noise static key pair and the mac1/cookie keys, derived once from the identity
    /// (PROTOCOL.md §2.1); nil only for an identity whose keys do not convert (never valid).
    private let handshakeIdentity: NoiseStaticIdentity?
    /// The last TAI64N stamp put in a message 1 (stamps strictly increase, PROTOCOL.md §2).
    private let lastHandshakeStamp = NIOLockedValueBox<TAI64N?>(nil)
    /// The stcpr listener's admission: unconfirmed-handshake cap, replays, refusal summary.
    let stcprGate: StcprHandshakeGate
    /// Orders transports by when they came up (`connection(to:)` prefers the newest).
    private let upSequence = NIOLockedValueBox<UInt64>(0)

    /// Redial backoff: 1 s doubling to 30 s, never giving up while the transport is wanted.
    static let backoffInitial: Int64 = 1
    static let backoffMax: Int64 = 30

    /// `seconds` ±20 % jitter, so that a fleet does not redial in lockstep.
    static func jittered(seconds delay: Int64) -> TimeAmount {
        let jitterMillis = Int64.random(in: -(delay * 200)...(delay * 200))
        return .milliseconds(delay * 1000 + jitterMillis)
    }

    public init(settings: TransportSettings, group: EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.group = group
        self.loops = Array(group.makeIterator())
        self.logger = logger
        handshakeIdentity = try? NoiseStaticIdentity(identity: settings.identity)
        stcprGate = StcprHandshakeGate(logger: logger)
        BlockingPool.recogniseNIOEventLoops()
    }

    /// The cached static keys of our identity for handshakes.
    func noiseIdentity() throws -> NoiseStaticIdentity {
        guard let handshakeIdentity else {
            throw TransportError(.handshake, "the identity's Ed25519 keys do not convert to X25519")
        }
        return handshakeIdentity
    }

    /// The TAI64N stamp for a new message 1: now, and always above the previous one.
    func nextHandshakeStamp() -> TAI64N {
        lastHandshakeStamp.withLockedValue { last in
            let stamp = TAI64N.stamp(now: .now(), after: last)
            last = stamp
            return stamp
        }
    }

    /// The next number in the order transports come up.
    func nextUpSequence() -> UInt64 {
        upSequence.withLockedValue { value in
            value &+= 1
            return value
        }
    }

    /// The loop a transport we dial to `remote` runs on: fixed per key, so that apps can put
    /// their own channels for that peer on the same loop (no thread hop per stream call).
    public func homeLoop(for remote: PublicKey) -> EventLoop {
        guard !loops.isEmpty else { return group.next() }
        return loops[Self.loopIndex(for: remote, count: loops.count)]
    }

    /// The loops stcpr transports run on (created on first call; stopped by `shutdown`, after which
    /// this throws).
    func datapathLoops() throws -> [EpollEventLoop] {
        try lock.withLock {
            // After `shutdown` no new loops: nothing would stop their threads.
            guard !stopped else { throw TransportError(.closed, "the transport manager has stopped") }
            if _datapathLoops.isEmpty {
                for index in 0..<max(1, loops.count) {
                    _datapathLoops.append(try EpollEventLoop(name: "skywire-dp\(index)"))
                }
            }
            return _datapathLoops
        }
    }

    /// The loop an stcpr transport we dial to `remote` runs on (fixed per key, like `homeLoop`);
    /// its streams are on this loop, so apps that run raw sockets for that peer put them here.
    public func datapathLoop(for remote: PublicKey) throws -> EpollEventLoop {
        let all = try datapathLoops()
        return all[Self.loopIndex(for: remote, count: all.count)]
    }

    /// The index of `remote`'s loop among `count` (the same for its NIO home loop and its
    /// datapath loop).
    private static func loopIndex(for remote: PublicKey, count: Int) -> Int {
        Int(remote.bytes[0]) % count
    }

    public var router: AppRouter? {
        get { lock.withLock { _router } }
        set { lock.withLock { _router = newValue } }
    }

    /// Resolves keys that `transport.peers` does not list (`connect`, `openStream`); nil: none.
    public var resolver: PeerResolver? {
        get { lock.withLock { _resolver } }
        set { lock.withLock { _resolver = newValue } }
    }

    public var localKey: PublicKey { settings.identity.publicKey }

    public var stcprListenAddress: String? {
        lock.withLock { stcprListener?.localAddress.map(Self.format) }
    }

    public var sudphListenAddress: String? {
        lock.withLock { sudph?.localAddress.map(Self.format) }
    }

    static func format(_ a: SocketAddress) -> String {
        switch a {
        case .v6: return "[\(a.ipAddress ?? "?")]:\(a.port ?? 0)"
        default: return "\(a.ipAddress ?? "?"):\(a.port ?? 0)"
        }
    }

    /// Binds the stcpr and sudph listeners (a port of 0 in the config disables one).
    public func start() async throws {
        if settings.stcprPort > 0 {
            let listener = try await bindStcpr()
            lock.withLock { stcprListener = listener }
            logger.info("stcpr listening", metadata: ["addr": "\(listener.localAddress.map(Self.format) ?? "?")"])
        }
        if settings.sudphPort > 0 {
            let endpoint = try await SudphEndpoint.bind(host: settings.listenHost, port: settings.sudphPort, manager: self)
            lock.withLock { sudph = endpoint }
            logger.info("sudph listening", metadata: ["addr": "\(endpoint.localAddress.map(Self.format) ?? "?")"])
        }
    }

    /// Closes listeners and every transport, then stops the datapath loops (what was queued on
    /// them, e.g. the mux CLOSE to each peer, still runs).
    public func shutdown() async {
        let (listener, endpoint, all, datapath, relays): (StcprListener?, SudphEndpoint?, [TransportEntry], [EpollEventLoop], RelayPool?) =
            lock.withLock {
                stopped = true
                defer { entries.removeAll(); _datapathLoops.removeAll() }
                return (stcprListener, sudph, Array(entries.values), _datapathLoops, relayPool)
            }
        for run in lock.withLock({ directRetries.values }) { run.cancel() }
        for entry in all { entry.shutdown(reason: "visor stopping") }
        relays?.stop()
        listener?.close()
        await endpoint?.close()
        for loop in datapath {
            // shutdown() joins the loop's thread: on the blocking pool.
            await BlockingPool.shared.runOrInline { loop.shutdown() }
        }
    }

    /// Starts BINDing the sudph socket at the discovery service's UDP rendezvous (`host` an IP
    /// literal); false when sudph is disabled or `host:port` is not an IP address.
    /// `interval`: how often the BIND is repeated (keeps the NAT mapping and the binding alive).
    public func startRendezvous(host: String, port: Int, interval: TimeAmount = .seconds(15)) -> Bool {
        guard let endpoint = lock.withLock({ sudph }),
              let address = try? SocketAddress(ipAddress: host, port: port) else { return false }
        endpoint.startRendezvous(address, keyPair: settings.identity, interval: interval)
        return true
    }

    // MARK: Adding and removing

    /// Dials `remote` and waits until the handshake completes; the transport then stays wanted
    /// (redialled on loss) until `remove`. An existing transport of that type is returned as is.
    public func add(remote: PublicKey, type: TransportType, address: String?) async throws -> TransportInfo {
        guard remote != localKey else { throw TransportError(.badAddress, "cannot add a transport to ourselves") }
        let target: HostPort
        if let address {
            switch HostPort.parse(address) {
            case .success(let hp): target = hp
            case .failure(let e): throw TransportError(.badAddress, "--addr \"\(address)\": \(e)")
            }
        } else if type == .dmsg {
            return try await add(remote: remote, type: .dmsg, target: nil)
        } else if let known = settings.peers[remote]?.address(for: type) {
            target = known
        } else {
            throw TransportError(.badAddress,
                                 "no \(type.rawValue) address for \(remote.hex): pass --addr HOST:PORT or add it to transport.peers")
        }
        return try await add(remote: remote, type: type, target: target)
    }

    /// `add` with a parsed address; `punched`: the dial follows a hole punch (sudph resends
    /// faster and gives up sooner, `SudphHandshakeSchedule.punched`). Cancelling the calling task
    /// abandons the dial: the entry is shut down and removed, and this throws.
    /// dmsg takes no address (`target` nil): it goes through the relay servers' sessions.
    func add(remote: PublicKey, type: TransportType, target: HostPort?, punched: Bool = false) async throws -> TransportInfo {
        guard remote != localKey else { throw TransportError(.badAddress, "cannot add a transport to ourselves") }
        guard (type == .dmsg) == (target == nil) else {
            throw TransportError(.badAddress, type == .dmsg ? "dmsg goes through the relay servers: it takes no address"
                                                            : "\(type.rawValue) needs an address")
        }
        let (host, port) = target.map { ($0.host, Int($0.port)) } ?? (TransportEntry.relayHost, 0)
        if let existing = lock.withLock({ entries.to(remote).first { $0.type == type && $0.isUp } }) {
            existing.markWanted()
            return existing.info
        }
        if type == .sudph && lock.withLock({ sudph }) == nil {
            throw TransportError(.unreachable, "sudph is disabled (transport.sudph_port is 0)")
        }
        if type == .dmsg && lock.withLock({ relayPool }) == nil {
            throw TransportError(.unreachable, "no dmsg relay servers (set transport.dmsg_servers, or a discovery that lists some)")
        }
        try Task.checkCancellation()
        let entry = TransportEntry(manager: self, id: newID(), remote: remote, type: type,
                                   host: host, port: port, initiator: true, wanted: true, punched: punched)
        lock.withLock { entries[entry.id] = entry }
        do {
            try await withTaskCancellationHandler {
                try await entry.dial().get()
            } onCancel: {
                entry.abandonFirstDial()
            }
        } catch {
            entry.shutdown(reason: "first dial failed")
            lock.withLock { _ = entries.removeValue(forKey: entry.id) }
            throw error
        }
        return entry.info
    }

    /// Removes a transport by id, or every transport to a public key.
    public func remove(_ target: String) throws {
        let victims: [TransportEntry] = lock.withLock {
            if let e = entries[target] {
                entries.removeValue(forKey: target)
                return [e]
            }
            let matching = entries.values.filter { $0.remote.hex == target }
            for e in matching { entries.removeValue(forKey: e.id) }
            return matching
        }
        guard !victims.isEmpty else { throw TransportError(.notFound, "no transport \"\(target)\" (see tp ls)") }
        for v in victims { v.shutdown(reason: "removed") }
    }

    public func list() -> [TransportInfo] {
        lock.withLock { Array(entries.values) }.map(\.info).sorted { ($0.remoteKey.hex, $0.id) < ($1.remoteKey.hex, $1.id) }
    }

    func newID() -> String {
        lock.withLock {
            while true {
                let id = String(UInt32.random(in: 0...UInt32.max), radix: 16)
                let padded = String(repeating: "0", count: 8 - id.count) + id
                if entries[padded] == nil { return padded }
            }
        }
    }

    /// Inbound transports of one type one key may hold at once (PROTOCOL.md §3, docs/hardening.md):
    /// a peer that dials twice (a wanted transport and an app's own dial, or a redial while the
    /// old connection is not yet seen dead) keeps both; beyond this the oldest are closed, so one
    /// key cannot make the visor hold unbounded transports. (Closing the older at every new one
    /// made two dialling entries of one peer close each other in turn.)
    static let maxInboundTransportsPerKey = 4

    /// Registers a confirmed connection a peer dialled to us; when the key already holds
    /// `maxInboundTransportsPerKey` inbound transports of that type, the oldest (by the time they
    /// came up; not yet up counts as oldest) are shut down and removed. False once stopped.
    func registerInbound(_ entry: TransportEntry) -> Bool {
        let held: [TransportEntry]? = lock.withLock {
            stopped ? nil : entries.to(entry.remote).filter { $0.type == entry.type && !$0.initiator }
        }
        guard let held else { return false }
        // Entry locks are taken outside the manager's lock.
        let excess = held.count + 1 - Self.maxInboundTransportsPerKey
        let oldest = excess > 0
            ? Array(held.map { ($0, $0.liveConnectionAndOrder?.order ?? 0) }.sorted { $0.1 < $1.1 }.prefix(excess).map(\.0))
            : []
        let registered: Bool = lock.withLock {
            guard !stopped else { return false }
            for old in oldest where entries[old.id] === old { entries.removeValue(forKey: old.id) }
            entries[entry.id] = entry
            return true
        }
        guard registered else { return false }
        for old in oldest {
            old.shutdown(reason: "closed for a newer \(entry.type.rawValue) connection from the same key "
                         + "(at most \(Self.maxInboundTransportsPerKey) inbound)")
        }
        return true
    }

    func unregister(_ entry: TransportEntry) {
        lock.withLock {
            if entries[entry.id] === entry { entries.removeValue(forKey: entry.id) }
        }
    }

    // MARK: Streams and datagrams

    /// The order `connection(to:)` takes transport types in: direct before relayed.
    static let preference: [TransportType] = [.stcpr, .sudph, .dmsg]

    /// The best live connection to `remote` and its type: stcpr first (kernel-reliable), then
    /// sudph, then dmsg (through a relay: only when no direct one is up, so new streams move to a
    /// direct transport as soon as one comes up while those on the relay run on); within a type
    /// the one that came up last (a peer that redialled left its older one dead).
    /// Only confirmed handshakes create entries (PROTOCOL.md §3, §4.3).
    func bestConnection(to remote: PublicKey) -> (connection: MuxConnection, type: TransportType)? {
        let live = lock.withLock { entries.to(remote) }.compactMap { entry in
            entry.liveConnectionAndOrder.map { (type: entry.type, order: $0.order, value: $0.connection) }
        }
        return Self.preferred(live)
    }

    /// `connection(to:)`'s choice among live transports, pure: the first type in `preference`
    /// that has one, and of that type the highest `order` (the newest).
    static func preferred<T>(_ live: [(type: TransportType, order: UInt64, value: T)]) -> (connection: T, type: TransportType)? {
        for type in preference {
            if let best = live.filter({ $0.type == type }).max(by: { $0.order < $1.order }) {
                return (best.value, type)
            }
        }
        return nil
    }

    func connection(to remote: PublicKey) -> MuxConnection? { bestConnection(to: remote)?.connection }

    /// Opens a stream to `port` on the visor `remote`. When no transport is up, dials one
    /// first (`connect`: the peers table, else the resolver).
    /// `waitForAccept: false` hands the stream out before the remote app accepted it (see
    /// `MuxConnection.openStream`).
    public func openStream(to remote: PublicKey, port: UInt16, sourcePort: UInt16,
                           timeout: TimeAmount = .seconds(10), waitForAccept: Bool = true) -> EventLoopFuture<AppStream> {
        let loop = group.next()
        if let best = bestConnection(to: remote) {
            if best.type == .dmsg { relayInUse(remote) }
            return best.connection.openStream(destinationPort: port, sourcePort: sourcePort, timeout: timeout,
                                   waitForAccept: waitForAccept)
        }
        let promise = loop.makePromise(of: AppStream.self)
        promise.completeWithTask {
            _ = try await self.connect(remote: remote)
            guard let best = self.bestConnection(to: remote) else {
                throw TransportError(.closed, "transport to \(remote.hex) closed while opening a stream")
            }
            if best.type == .dmsg { self.relayInUse(remote) }
            return try await best.connection.openStream(destinationPort: port, sourcePort: sourcePort, timeout: timeout,
                                             waitForAccept: waitForAccept).get()
        }
        return promise.futureResult
    }

    /// Sends one unreliable datagram; silently dropped when no transport to `remote` is up.
    public func sendDatagram(to remote: PublicKey, destinationPort: UInt16, sourcePort: UInt16, payload: ByteBuffer) {
        guard let conn = connection(to: remote) else {
            logger.debug("datagram dropped: no transport", metadata: ["pk": "\(remote.short)"])
            return
        }
        conn.sendDatagram(destinationPort: destinationPort, sourcePort: sourcePort, payload: payload)
    }
}
