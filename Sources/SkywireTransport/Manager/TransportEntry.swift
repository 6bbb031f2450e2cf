import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireSystem

/// One logical transport to a peer: a dialled one is kept up (redialled with backoff while
/// wanted); an inbound one lives as long as its connection.
final class TransportEntry: @unchecked Sendable {
    // @unchecked Sendable: every `var` below is guarded by `lock`.
    let id: String
    let remote: PublicKey
    let type: TransportType
    let host: String
    let port: Int
    let initiator: Bool
    /// Dialled right after a hole punch: sudph handshakes use `SudphHandshakeSchedule.punched`.
    let punched: Bool
    private unowned let manager: TransportManager
    private let lock = NIOLock()
    private var wanted: Bool
    private var state: TransportInfo.State = .connecting
    private var connection: MuxConnection?
    private var link: FrameLink?
    private var remoteAddress: String
    /// dmsg: the relay server the live (or last) link ran through.
    private var relay: DmsgServerAddress?
    private var establishedAt: Int64?
    /// `TransportManager.nextUpSequence()` when the connection came up.
    private var upOrder: UInt64 = 0
    private var lastError: String?
    private var backoff: Int64 = TransportManager.backoffInitial
    private var retryAt: NIODeadline?
    private var retryTask: Scheduled<Void>?
    private var isShutdown = false
    private var firstDial: EventLoopPromise<Void>?
    /// Where a sudph redial of a punched entry goes: the address its latest punch returned
    /// (initially `host:port`).
    private var punchedTarget: (host: String, port: Int)?
    /// Until then a loss redials at once instead of after the backoff (the uplink changed: the
    /// closes it causes, at once or after its probe, are not the peer's fault).
    private var redialAtOnceUntil: NIODeadline?

    init(manager: TransportManager, id: String, remote: PublicKey, type: TransportType,
         host: String, port: Int, initiator: Bool, wanted: Bool, punched: Bool = false) {
        self.manager = manager
        self.punched = punched
        self.id = id
        self.remote = remote
        self.type = type
        self.host = host
        self.port = port
        self.initiator = initiator
        self.wanted = wanted
        self.remoteAddress = type == .dmsg ? Self.relayHost : "\(host):\(port)"
    }

    var logger: Logger { manager.logger }

    /// `host` of a dmsg entry (it has no address: it goes through the relay sessions).
    static let relayHost = "dmsg"

    /// Where the entry dials, for errors: "at HOST:PORT", or "through a dmsg relay".
    private var whereabouts: String { type == .dmsg ? "through a dmsg relay" : "at \(host):\(port)" }

    var isUp: Bool { lock.withLock { state == .up } }

    var liveConnection: MuxConnection? { lock.withLock { state == .up ? connection : nil } }

    /// The live connection and when it came up relative to others (`connection(to:)`).
    var liveConnectionAndOrder: (connection: MuxConnection, order: UInt64)? {
        lock.withLock {
            guard state == .up, let connection else { return nil }
            return (connection, upOrder)
        }
    }

    /// The stamp for this entry's next message 1 (PROTOCOL.md §2).
    func handshakeTimestamp() -> TAI64N { manager.nextHandshakeStamp() }

    /// The link under the live connection (its session state was set before `established`).
    var liveLink: FrameLink? { lock.withLock { state == .up ? link : nil } }

    func markWanted() { lock.withLock { wanted = true } }

    var info: TransportInfo {
        lock.withLock {
            var retry: Int64?
            if state == .backoff, let retryAt {
                retry = max(0, (retryAt - .now()).nanoseconds / 1_000_000_000)
            }
            let stats = connection?.stats
            return TransportInfo(id: id, type: type, remoteKey: remote, remoteAddress: remoteAddress,
                                 initiator: initiator, wanted: wanted, state: state, establishedAt: establishedAt,
                                 bytesSent: stats?.bytesSent ?? 0, bytesReceived: stats?.bytesReceived ?? 0,
                                 streams: stats?.streams ?? 0, lastError: lastError, retryInSeconds: retry,
                                 rttMillis: stats?.rttMillis, relayKey: relay?.publicKey,
                                 relayAddress: relay?.address.description)
        }
    }

    /// Dials once; the future completes when the handshake is done or fails.
    func dial() -> EventLoopFuture<Void> {
        let loop = manager.homeLoop(for: remote)
        let promise = loop.makePromise(of: Void.self)
        lock.withLock {
            firstDial = promise
            state = .connecting
        }
        switch type {
        case .stcpr: manager.dialStcpr(self)
        case .sudph: dialSudph()
        case .dmsg: manager.dialDmsg(self)
        }
        return promise.futureResult
    }

    private func dialSudph() {
        guard let endpoint = manager.lock.withLock({ manager.sudph }) else {
            linkClosed(reason: "sudph is disabled")
            return
        }
        let target = lock.withLock { punchedTarget } ?? (host: host, port: port)
        endpoint.dial(remote: remote, host: target.host, port: target.port, entry: self, schedule: handshakeSchedule)
    }

    /// A redial of a transport that came up after a hole punch punches again first (the peer's
    /// NAT may have dropped the mapping meanwhile) and dials the address the punch returns; when
    /// the punch fails it dials the last address.
    private func redialPunched() {
        guard let resolver = manager.resolver else {
            dialSudph()
            return
        }
        Task { [weak self, remote] in
            let target = try? await resolver.punch(remote)
            guard let self else { return }
            let go: Bool = self.lock.withLock {
                if let target { self.punchedTarget = (target.host, Int(target.port)) }
                return !self.isShutdown
            }
            if let target { self.logger.debug("redial after a new punch", metadata: ["id": "\(self.id)", "addr": "\(target)"]) }
            if go { self.dialSudph() }
        }
    }

    /// How a sudph dial of this entry resends its initiation and when it gives up.
    var handshakeSchedule: SudphHandshakeSchedule {
        punched ? .punched : .normal(limitSeconds: manager.settings.handshakeTimeout)
    }

    /// The link finished its handshake: build the mux connection on top of it.
    func established(link: FrameLink, on loop: EventLoop, remoteAddress: String? = nil, relay: DmsgServerAddress? = nil) -> MuxConnection? {
        let conn = MuxConnection(eventLoop: loop, isInitiator: initiator, remote: remote, link: link,
                                 router: manager.router, logger: manager.logger)
        let order = manager.nextUpSequence()
        let (accepted, promise): (Bool, EventLoopPromise<Void>?) = lock.withLock {
            guard !isShutdown else { return (false, nil) }
            connection = conn
            self.link = link
            state = .up
            if let remoteAddress { self.remoteAddress = remoteAddress }
            if let relay { self.relay = relay }
            establishedAt = Self.unixNow()
            upOrder = order
            lastError = nil
            backoff = TransportManager.backoffInitial
            defer { firstDial = nil }
            return (true, firstDial)
        }
        guard accepted else { return nil }
        logger.info("transport up", metadata: ["id": "\(id)", "type": "\(type.rawValue)", "pk": "\(remote.hex)",
                                                "initiator": "\(initiator)"])
        promise?.succeed(())
        return conn
    }

    /// The link ended (or a dial failed). Redial if still wanted.
    func linkClosed(reason: String?) {
        let (redial, promise, wasUp): (Bool, EventLoopPromise<Void>?, Bool) = lock.withLock {
            let wasUp = state == .up
            connection = nil
            link = nil
            if let reason { lastError = reason }
            let promise = firstDial
            firstDial = nil
            guard !isShutdown else {
                state = .closed
                return (false, promise, wasUp)
            }
            // A first dial that fails is reported to `tp add`, which drops the entry.
            if promise == nil && wanted && initiator {
                state = .backoff
                return (true, nil, wasUp)
            }
            state = .closed
            return (false, promise, wasUp)
        }
        if wasUp {
            logger.info("transport down", metadata: ["id": "\(id)", "pk": "\(remote.hex)", "reason": "\(reason ?? "closed")"])
        }
        promise?.fail(TransportError(.unreachable, "\(type.rawValue) to \(remote.hex) \(whereabouts): \(reason ?? "closed")"))
        if redial {
            scheduleRedial()
        } else if !initiator || !wanted {
            manager.unregister(self)
        }
    }

    private func scheduleRedial() {
        let loop = manager.group.next()
        lock.withLock {
            let delay = backoff
            backoff = min(backoff * 2, TransportManager.backoffMax)
            let atOnce = redialAtOnceUntil.map { NIODeadline.now() < $0 } ?? false
            redialAtOnceUntil = nil
            let amount = atOnce ? .zero : TransportManager.jittered(seconds: delay)
            if atOnce { backoff = TransportManager.backoffInitial }
            retryTask?.cancel()
            retryAt = .now() + amount
            retryTask = loop.scheduleTask(in: amount) { [weak self] in
                guard let self else { return }
                self.logger.debug("redialling", metadata: ["id": "\(self.id)", "pk": "\(self.remote.short)"])
                self.lock.withLock { self.state = .connecting }
                switch self.type {
                case .stcpr: self.manager.dialStcpr(self)
                case .sudph: if self.punched { self.redialPunched() } else { self.dialSudph() }
                case .dmsg: self.manager.dialDmsg(self)
                }
            }
        }
    }

    /// The uplink changed (TransportManager+Uplink). Up: the connection closes at once if its
    /// local address is in `vanished`, else is probed (`MuxConnection.uplinkChanged`); a close
    /// redials without backoff. Waiting for a redial (backoff): it goes out now.
    func uplinkChanged(vanished: Set<IPAddress>, probe: Bool, probeTimeout: TimeAmount) {
        let (conn, waiting): (MuxConnection?, Bool) = lock.withLock {
            guard !isShutdown else { return (nil, false) }
            // The probe's window, and a margin for the close to reach `linkClosed`.
            redialAtOnceUntil = .now() + probeTimeout + probeTimeout
            if state == .backoff && wanted && initiator { return (nil, true) }
            return (state == .up ? connection : nil, false)
        }
        if waiting {
            logger.info("uplink changed; redialling now", metadata: ["id": "\(id)", "pk": "\(remote.short)"])
            scheduleRedial()
            return
        }
        guard let conn else { return }
        conn.eventLoop.execute {
            _ = conn.uplinkChanged(vanished: vanished, probe: probe, timeout: probeTimeout)
        }
    }

    /// The caller of the first dial gave up (its task was cancelled, e.g. `connect(within:)`
    /// timed out): the dial's future fails now and the entry is shut down. A handshake still in
    /// flight ends by itself; if it completes, the connection is refused (`established` → nil).
    func abandonFirstDial() {
        let promise: EventLoopPromise<Void>? = lock.withLock {
            defer { firstDial = nil }
            return firstDial
        }
        shutdown(reason: "dial abandoned")
        promise?.fail(TransportError(.timeout, "\(type.rawValue) to \(remote.hex) \(whereabouts): abandoned"))
    }

    /// Stops redialling and closes the connection.
    func shutdown(reason: String) {
        let conn: MuxConnection? = lock.withLock {
            isShutdown = true
            wanted = false
            retryTask?.cancel()
            retryTask = nil
            state = .closed
            return link == nil ? nil : connection
        }
        // The peer hears of it (mux CLOSE, then the link closes) instead of finding out by timeouts.
        if let conn { conn.eventLoop.execute { conn.close(reason: reason) } }
    }

    static func unixNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }
}
