import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO

/// The visor's sessions with its dmsg relay servers (`transport.dmsg_servers`): one per server,
/// each on the datapath loop of the server's key, redialled forever with a bounded, jittered
/// backoff (1 s doubling to 30 s, ±20 %) while the pool runs.
final class RelayPool: @unchecked Sendable {
    // @unchecked Sendable: `slots` and `stopped` are guarded by `lock`; each slot's session is
    // touched only on its loop (the slot's `loop`).
    private final class Slot: @unchecked Sendable {
        // @unchecked Sendable: `session` is touched only on `loop`; `up`, `backoff`, `retryTask`
        // and `lastError` only under the pool's `lock`.
        let server: DmsgServerAddress
        let loop: EpollEventLoop
        var session: RelaySession?
        var up = false
        /// When the session came up (the backoff restarts only after it stayed up `stableAfter`).
        var upSince: NIODeadline?
        var backoff = TransportManager.backoffInitial
        var retryTask: Scheduled<Void>?
        var lastError: String?

        init(server: DmsgServerAddress, loop: EpollEventLoop) {
            self.server = server
            self.loop = loop
        }
    }

    /// A session that ends sooner than this after coming up (a relay that refuses the key right
    /// after the handshake, PROTOCOL.md §7.1) keeps its backoff growing.
    static let stableAfter = TimeAmount.seconds(10)

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

    /// Starts a session with each server (`loop(for:)` picks its loop).
    func start(servers: [DmsgServerAddress], loop: (PublicKey) throws -> EpollEventLoop) rethrows {
        let new = try servers.map { Slot(server: $0, loop: try loop($0.publicKey)) }
        lock.withLock { slots = new }
        for slot in new { dial(slot) }
    }

    /// Relay servers whose session is up (the visor lists them in its discovery entry).
    var reachableThrough: [PublicKey] {
        lock.withLock { slots.filter(\.up).map(\.server.publicKey) }
    }

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
                slot.session?.close(reason: "visor stopping")
                slot.session = nil
            }
        }
    }

    // MARK: Opening streams

    /// A stream to `remote` through the first relay (in `order`, default: as configured) whose
    /// session is up and that reaches it; the error names each relay's answer.
    func open(to remote: PublicKey) async throws -> (pipe: LinkPipe, relay: DmsgServerAddress, loop: EpollEventLoop) {
        let candidates = lock.withLock { slots }
        guard !candidates.isEmpty else {
            throw TransportError(.unreachable, "no dmsg relay servers (set transport.dmsg_servers, or a discovery that lists some)")
        }
        var failures: [String] = []
        for slot in candidates {
            try Task.checkCancellation()
            let promise = slot.loop.makePromise(of: OpenedPipe.self)
            slot.loop.execute {
                guard let session = slot.session, session.isEstablished else {
                    promise.fail(TransportError(.unreachable, "no session\(slot.lastError.map { " (\($0))" } ?? "")"))
                    return
                }
                session.open(to: remote) { result in
                    switch result {
                    case .success(let pipe): promise.succeed(OpenedPipe(pipe: pipe))
                    case .failure(let error): promise.fail(error)
                    }
                }
            }
            do {
                let opened = try await promise.futureResult.get()
                return (opened.pipe, slot.server, slot.loop)
            } catch {
                failures.append("relay \(slot.server.publicKey.short): \(error)")
            }
        }
        throw TransportError(.unreachable, "no dmsg relay reaches \(remote.hex): \(failures.joined(separator: "; "))")
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
                        slot.upSince = .now()
                        slot.lastError = nil
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
        let (wasUp, delay): (Bool, TimeAmount?) = lock.withLock {
            let wasUp = slot.up
            slot.up = false
            if let since = slot.upSince, NIODeadline.now() - since >= Self.stableAfter { slot.backoff = TransportManager.backoffInitial }
            slot.upSince = nil
            slot.lastError = reason
            guard !stopped else { return (wasUp, nil) }
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
            self.dial(slot)
        }
        lock.withLock { slot.retryTask = task }
    }
}
