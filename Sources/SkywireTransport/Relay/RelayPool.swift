import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem

/// The visor's sessions with its dmsg relay servers (`transport.dmsg_servers`): one per server,
/// each on the datapath loop of the server's key, redialled forever with a bounded, jittered
/// backoff (1 s doubling to 30 s, ±20 %) while the pool runs. A stream to a peer registered on
/// other relays opens an **on-demand** session to one of them (at most `maxOnDemand` at once,
/// never redialled, closed once it carried no stream for `onDemandIdle`; docs/dmsg.md).
final class RelayPool: @unchecked Sendable {
    // @unchecked Sendable: `slots` and `stopped` are guarded by `lock`; each slot's session is
    // touched only on its loop (the slot's `loop`).
    private final class Slot: @unchecked Sendable {
        // @unchecked Sendable: `session` is touched only on `loop`; `up`, `backoff`, `retryTask`
        // and `lastError` only under the pool's `lock`.
        let server: DmsgServerAddress
        let loop: EpollEventLoop
        /// Opened for one peer's relays: not redialled, closed when idle, not in `reachableThrough`.
        let onDemand: Bool
        var session: RelaySession?
        var up = false
        /// The session ended (on-demand slots: for good).
        var ended = false
        /// On-demand: when a stream last went through it (on `loop`).
        var lastUsed = NIODeadline.now()
        var idleCheck: RepeatedTask?
        /// A loss before this redials without backoff (the uplink changed: the probe's window and
        /// a margin, as `TransportEntry.redialAtOnceUntil`; under the pool's `lock`).
        var redialAtOnceUntil: NIODeadline?
        /// When the session came up (the backoff restarts only after it stayed up `stableAfter`).
        var upSince: NIODeadline?
        var backoff = TransportManager.backoffInitial
        var retryTask: Scheduled<Void>?
        var lastError: String?

        init(server: DmsgServerAddress, loop: EpollEventLoop, onDemand: Bool = false) {
            self.server = server
            self.loop = loop
            self.onDemand = onDemand
        }
    }

    /// A session that ends sooner than this after coming up (a relay that refuses the key right
    /// after the handshake, PROTOCOL.md §7.1) keeps its backoff growing.
    static let stableAfter = TimeAmount.seconds(10)
    /// On-demand relay sessions at once (beyond them a peer only on other relays is not reached).
    static let maxOnDemand = 2
    /// An on-demand session that carried no stream this long is closed.
    static let onDemandIdle = TimeAmount.seconds(60)
    /// How long an on-demand session may take to come up.
    static let onDemandSetup = TimeAmount.seconds(10)
    static let onDemandPoll = TimeAmount.milliseconds(50)

    private let lock = NIOLock()
    private var slots: [Slot] = []
    private var stopped = false
    private let identity: KeyPair
    private let logger: Logger
    private let factory: RelaySessionFactory
    /// A stream someone opened to us through `relay`, on `loop`: the manager runs the stcpr
    /// responder in it. False refuses it.
    private let incoming: (_ claimed: PublicKey, _ pipe: LinkPipe, _ relay: DmsgServerAddress, _ loop: EpollEventLoop) -> Bool

    init(identity: KeyPair, logger: Logger, factory: @escaping RelaySessionFactory,
         incoming: @escaping (PublicKey, LinkPipe, DmsgServerAddress, EpollEventLoop) -> Bool) {
        self.identity = identity
        self.logger = logger
        self.factory = factory
        self.incoming = incoming
    }

    /// Picks a relay session's loop (the manager's datapath loop for the relay's key).
    private var loopFor: (@Sendable (PublicKey) throws -> EpollEventLoop)?

    /// Starts a session with each server (`loop(for:)` picks its loop, also for on-demand sessions).
    func start(servers: [DmsgServerAddress], loop: @escaping @Sendable (PublicKey) throws -> EpollEventLoop) throws {
        let new = try servers.map { Slot(server: $0, loop: try loop($0.publicKey)) }
        lock.withLock {
            slots = new
            loopFor = loop
        }
        for slot in new { dial(slot) }
    }

    /// Configured relay servers whose session is up (the visor lists them in its discovery entry).
    var reachableThrough: [PublicKey] {
        lock.withLock { slots.filter { $0.up && !$0.onDemand }.map(\.server.publicKey) }
    }

    /// Sessions that came up since start (each redial that succeeds counts).
    var sessionsUp: Int { lock.withLock { upCount } }
    private var upCount = 0

    /// On-demand sessions now (tests, `visor.info`).
    var onDemandCount: Int { lock.withLock { slots.filter(\.onDemand).count } }

    /// Every configured server and its session state, for errors and `visor.info`.
    var summary: String {
        lock.withLock {
            slots.map { "\($0.server.publicKey.short)@\($0.server.address): \($0.up ? "up" : "down\($0.lastError.map { " (\($0))" } ?? "")")" }
                .joined(separator: ", ")
        }
    }

    /// Closes every session and stops redialling.
    func stop() {
        let all: [Slot] = lock.withLock {
            stopped = true
            return slots
        }
        for slot in all {
            slot.loop.execute { [self] in
                lock.withLock { slot.retryTask?.cancel() }
                slot.idleCheck?.cancel()
                slot.session?.close(reason: "visor stopping")
                slot.session = nil
            }
        }
    }

    // MARK: Uplink changes

    /// The uplink changed (docs/architecture.md "Network changes"): a session whose TCP local
    /// address is in `vanished` is closed and redialled at once; the others are probed (PING,
    /// closed and redialled at once if silent for `timeout`) when `probe`; sessions waiting in
    /// backoff are redialled now. Returns (redialled, probed).
    func uplinkChanged(vanished: Set<IPAddress>, probe: Bool, timeout: TimeAmount) -> (redialled: Int, probed: Int) {
        let all: [Slot] = lock.withLock {
            guard !stopped else { return [] }
            return slots.filter { !$0.ended }
        }
        var counts = (redialled: 0, probed: 0)
        for slot in all {
            let (up, task): (Bool, Scheduled<Void>?) = lock.withLock {
                slot.redialAtOnceUntil = .now() + timeout + timeout
                return (slot.up, slot.retryTask)
            }
            if !up, let task {
                // Waiting in backoff: dial now (a dial in flight is left alone).
                task.cancel()
                lock.withLock { slot.retryTask = nil }
                counts.redialled += 1
                dial(slot)
                continue
            }
            guard up else { continue }
            if probe { counts.probed += 1 }
            slot.loop.execute {
                guard let session = slot.session, session.isEstablished else { return }
                if let ip = session.localIP, vanished.contains(ip) {
                    session.close(reason: "its local address \(ip) left the uplink")
                } else if probe {
                    session.probe(timeout: timeout)
                }
            }
        }
        return counts
    }

    // MARK: Opening streams

    /// A stream to `remote`: through a relay it lists (`peerRelays`, its discovery entry's `dmsg`)
    /// that we hold a session with; else through a new on-demand session to one of its relays
    /// (its address from `resolveRelay`); else through our other relays in configured order (an
    /// entry may be stale). The error names each relay's answer.
    func open(to remote: PublicKey, peerRelays: [PublicKey] = [],
              resolveRelay: @escaping @Sendable (PublicKey) async throws -> HostPort = { _ in
                  throw TransportError(.unreachable, "no resolver for relay addresses")
              }) async throws -> (pipe: LinkPipe, relay: DmsgServerAddress, loop: EpollEventLoop) {
        let candidates = lock.withLock { slots.filter { !$0.ended } }
        guard !candidates.isEmpty || !peerRelays.isEmpty else {
            throw TransportError(.unreachable, "no dmsg relay servers (set transport.dmsg_servers, or a discovery that lists some)")
        }
        let shared = candidates.filter { peerRelays.contains($0.server.publicKey) }
        let others = candidates.filter { !peerRelays.contains($0.server.publicKey) }
        var failures: [String] = []
        for slot in shared {
            do { return try await open(remote, through: slot) } catch {
                failures.append("relay \(slot.server.publicKey.short): \(error)")
            }
        }
        let missing = peerRelays.filter { key in !candidates.contains { $0.server.publicKey == key } }
        for key in missing {
            try Task.checkCancellation()
            do {
                let slot = try await onDemandSession(key, resolve: resolveRelay)
                return try await open(remote, through: slot)
            } catch let error as OnDemandLimit {
                failures.append("relay \(key.short) (the peer's): \(error)")
                break
            } catch {
                failures.append("relay \(key.short) (the peer's): \(error)")
            }
        }
        for slot in others {
            do { return try await open(remote, through: slot) } catch {
                failures.append("relay \(slot.server.publicKey.short): \(error)")
            }
        }
        throw TransportError(.unreachable, "no dmsg relay reaches \(remote.hex): \(failures.joined(separator: "; "))")
    }

    /// One OPEN through `slot`'s session.
    private func open(_ remote: PublicKey, through slot: Slot) async throws -> (pipe: LinkPipe, relay: DmsgServerAddress, loop: EpollEventLoop) {
        try Task.checkCancellation()
        let promise = slot.loop.makePromise(of: OpenedPipe.self)
        slot.loop.execute { [self] in
            guard let session = slot.session, session.isEstablished else {
                let why = lock.withLock { slot.lastError }
                promise.fail(TransportError(.unreachable, "no session\(why.map { " (\($0))" } ?? "")"))
                return
            }
            slot.lastUsed = .now()
            session.open(to: remote) { result in
                switch result {
                case .success(let pipe): promise.succeed(OpenedPipe(pipe: pipe))
                case .failure(let error): promise.fail(error)
                }
            }
        }
        let opened = try await promise.futureResult.get()
        return (opened.pipe, slot.server, slot.loop)
    }

    /// Beyond `maxOnDemand` on-demand sessions.
    struct OnDemandLimit: Error, CustomStringConvertible {
        var description: String { "no session, and \(RelayPool.maxOnDemand) on-demand relay sessions are open already (the limit)" }
    }

    /// A new on-demand session with relay `key` (address from `resolve`), once it is up.
    private func onDemandSession(_ key: PublicKey, resolve: @Sendable (PublicKey) async throws -> HostPort) async throws -> Slot {
        guard lock.withLock({ slots.filter { $0.onDemand && !$0.ended }.count < Self.maxOnDemand }) else { throw OnDemandLimit() }
        let address = try await resolve(key)
        guard let loopFor = lock.withLock({ loopFor }) else { throw TransportError(.unreachable, "relay pool not started") }
        let slot = Slot(server: DmsgServerAddress(publicKey: key, address: address), loop: try loopFor(key), onDemand: true)
        let added: Bool = lock.withLock {
            guard !stopped, slots.filter({ $0.onDemand && !$0.ended }).count < Self.maxOnDemand,
                  !slots.contains(where: { $0.server.publicKey == key && !$0.ended }) else { return false }
            slots.append(slot)
            return true
        }
        guard added else {
            // Another dial added it (or the limit was reached) meanwhile: use that one if it is there.
            if let existing = lock.withLock({ slots.first { $0.server.publicKey == key && !$0.ended } }) { return existing }
            throw OnDemandLimit()
        }
        logger.info("dmsg: on-demand session to a peer's relay", metadata: ["relay": "\(key.hex)", "addr": "\(address)"])
        dial(slot)
        let deadline = NIODeadline.now() + Self.onDemandSetup
        while NIODeadline.now() < deadline {
            let (up, ended, why) = lock.withLock { (slot.up, slot.ended, slot.lastError) }
            if up { return slot }
            if ended { throw TransportError(.unreachable, "session failed: \(why ?? "closed")") }
            try await Task.sleep(nanoseconds: UInt64(Self.onDemandPoll.nanoseconds))
        }
        slot.loop.execute { slot.session?.close(reason: "not up within \(Self.onDemandSetup.nanoseconds / 1_000_000_000) s") }
        throw TransportError(.unreachable, "session not up within \(Self.onDemandSetup.nanoseconds / 1_000_000_000) s")
    }

    /// On the slot's loop: an on-demand session with no stream for `onDemandIdle` is closed.
    private func closeIfIdle(_ slot: Slot) {
        guard let session = slot.session else { return }
        if session.streamCount > 0 { slot.lastUsed = .now(); return }
        guard NIODeadline.now() - slot.lastUsed >= Self.onDemandIdle else { return }
        session.close(reason: "on-demand session idle for \(Self.onDemandIdle.nanoseconds / 1_000_000_000) s")
    }

    /// A pipe handed from its loop to the task that runs the link on that same loop.
    private struct OpenedPipe: @unchecked Sendable {
        // @unchecked Sendable: created on the session's loop and used only there (`dialDmsg`).
        let pipe: LinkPipe
    }

    // MARK: Sessions

    /// Starts a session with `slot`'s server, on its loop.
    private func dial(_ slot: Slot) {
        slot.loop.execute { [self] in
            guard !lock.withLock({ stopped }) else { return }
            let relay = slot.server.publicKey
            let hooks = RelaySessionHooks(
                established: { [weak self] in
                    guard let self else { return }
                    self.lock.withLock {
                        slot.up = true
                        self.upCount += 1
                        slot.upSince = .now()
                        slot.lastError = nil
                    }
                    if slot.onDemand {
                        slot.lastUsed = .now()
                        let every = TimeAmount.nanoseconds(max(1, Self.onDemandIdle.nanoseconds / 4))
                        slot.idleCheck = slot.loop.scheduleRepeatedTask(initialDelay: every, delay: every) { [weak self] _ in
                            slot.loop.assumeIsolated().execute { self?.closeIfIdle(slot) }
                        }
                    }
                    self.logger.info("dmsg relay session up", metadata: ["relay": "\(relay.hex)", "addr": "\(slot.server.address)"])
                },
                incoming: { [weak self] claimed, pipe in
                    self?.incoming(claimed, pipe, slot.server, slot.loop) ?? false
                },
                closed: { [weak self] reason in self?.sessionClosed(slot, reason: reason) })
            do {
                slot.session = try factory(slot.server, slot.loop, identity, logger, hooks)
            } catch {
                sessionClosed(slot, reason: "\(error)")
            }
        }
    }

    /// On the slot's loop: logs the loss and schedules the redial.
    private func sessionClosed(_ slot: Slot, reason: String) {
        slot.session = nil
        slot.idleCheck?.cancel()
        slot.idleCheck = nil
        if slot.onDemand {
            lock.withLock {
                slot.up = false
                slot.ended = true
                slot.lastError = reason
                slots.removeAll { $0 === slot }
            }
            logger.info("dmsg: on-demand relay session ended", metadata: ["relay": "\(slot.server.publicKey.hex)", "reason": "\(reason)"])
            return
        }
        let (wasUp, delay): (Bool, TimeAmount?) = lock.withLock {
            let wasUp = slot.up
            slot.up = false
            if let since = slot.upSince, NIODeadline.now() - since >= Self.stableAfter { slot.backoff = TransportManager.backoffInitial }
            slot.upSince = nil
            slot.lastError = reason
            guard !stopped else { return (wasUp, nil) }
            if let until = slot.redialAtOnceUntil, NIODeadline.now() < until {
                slot.redialAtOnceUntil = nil
                return (wasUp, .zero)
            }
            let delay = slot.backoff
            slot.backoff = min(slot.backoff * 2, TransportManager.backoffMax)
            return (wasUp, TransportManager.jittered(seconds: delay))
        }
        if wasUp {
            logger.warning("dmsg relay session down", metadata: ["relay": "\(slot.server.publicKey.hex)", "reason": "\(reason)"])
        } else {
            logger.debug("dmsg relay session failed", metadata: ["relay": "\(slot.server.publicKey.hex)", "reason": "\(reason)"])
        }
        guard let delay else { return }
        let task = slot.loop.scheduleTask(in: delay) { [weak self] in
            guard let self else { return }
            self.lock.withLock { slot.retryTask = nil }
            self.dial(slot)
        }
        lock.withLock { slot.retryTask = task }
    }
}
