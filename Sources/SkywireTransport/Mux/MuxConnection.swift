import Atomics
import Logging
import NIOCore
import SkywireCrypto
import SkywireIO
import SkywireSystem
import SkywireWire

/// Drives one `MuxSession` over a `FrameLink`: routes incoming streams and datagrams to apps,
/// gives apps `AppStream`s, and batches outgoing frames into one flush per event-loop tick.
/// Every method must run on `eventLoop` (checked: preconditionInEventLoop at the entry points
/// from the link and for apps: `receive`, `linkClosed`, `flushIfNeeded`, opening a stream).
final class MuxConnection {
    /// PING interval and the silence after which the peer is declared dead (PROTOCOL.md §4.3).
    static let keepaliveInterval = TimeAmount.seconds(10)
    static let deadPeerTimeout = TimeAmount.seconds(30)
    /// A stream opening after this much silence from the peer first checks it is alive (`probeIfSilent`).
    static let silenceBeforeProbe = TimeAmount.seconds(2)
    /// How long that check waits for anything from the peer before closing the link.
    static let probeTimeout = TimeAmount.seconds(5)
    /// Longest an app's deferred acceptance (`AppStream.deferAcceptance`) holds the OPEN_OK back.
    static let deferredAcceptanceLimit = TimeAmount.seconds(1)
    /// Longest a lazily flushed frame (a FIN completing a finished stream) waits for company.
    static let lazyFlushDelay = TimeAmount.milliseconds(2)

    struct Stats {
        var bytesSent: UInt64
        var bytesReceived: UInt64
        var streams: Int
        var rttMillis: Double?
    }

    let eventLoop: EventLoop
    let remote: PublicKey
    /// `remote.hex`, encoded once: every stream's `remoteKeyHex` (an app's whitelist check per
    /// stream) reads it.
    let remoteHex: String
    let session: MuxSession<ByteBuffer>
    private weak var link: FrameLink?
    private let router: AppRouter?
    private let logger: Logger
    private var streams: [MuxStreamID: MuxStream] = [:]
    private var pendingOpens: [MuxStreamID: (promise: EventLoopPromise<AppStream>, timeout: Scheduled<Void>)] = [:]
    /// Optimistic opens (handed out before OPEN_OK) and the timer that resets them if no answer comes.
    private var optimisticOpens: [MuxStreamID: Scheduled<Void>] = [:]
    private var flushScheduled = false
    /// `flushIfNeeded` as a task, made once (queued once per tick with frames to send).
    private lazy var flushTask: @Sendable () -> Void = { [owner = LoopWeak(self)] in owner.value?.flushIfNeeded() }
    /// A delayed flush of lazily queued frames (`scheduleFlush(lazy:)`), if one is pending.
    private var lazyFlush: Scheduled<Void>?
    /// Reused plaintext buffer for encoding outgoing frames (`flushIfNeeded`).
    private var frameScratch: ByteBuffer?
    private var closed = false
    /// When anything last arrived from the peer, on the loop's clock (`eventLoop.now`).
    private var lastReceive: NIODeadline
    private var keepaliveTask: RepeatedTask?
    private var probeTask: Scheduled<Void>?
    private var pingSentAt: [UInt64: NIODeadline] = [:]
    private var nextPing: UInt64 = 1
    /// Round-trip time of the last PING/PONG in microseconds, -1 before the first; any thread reads it.
    private let rttMicros = ManagedAtomic<Int64>(-1)
    /// Shared with the link; safe to read from any thread.
    let counters: LinkCounters
    private let streamCount = ManagedAtomic<Int>(0)
    /// `session.refusedOpens` already counted in `RefusalLog`.
    private var refusedOpensNoted: UInt64 = 0

    init(eventLoop: EventLoop, isInitiator: Bool, remote: PublicKey, link: FrameLink,
         router: AppRouter?, logger: Logger) {
        self.eventLoop = eventLoop
        self.lastReceive = eventLoop.now
        self.remote = remote
        self.remoteHex = remote.hex
        self.link = link
        self.router = router
        self.logger = logger
        self.counters = link.counters
        self.session = MuxSession(isInitiator: isInitiator, maxDataPayload: link.maxDataPayload)
        // The first PING goes out at once so that `tp ls` shows an RTT from the start.
        keepaliveTask = eventLoop.scheduleRepeatedTask(initialDelay: .zero,
                                                       delay: Self.keepaliveInterval) { [weak self] _ in
            self?.keepalive()
        }
    }

    /// Readable from any thread (`tp ls`).
    var stats: Stats {
        Stats(bytesSent: counters.sent.load(ordering: .relaxed), bytesReceived: counters.received.load(ordering: .relaxed),
              streams: streamCount.load(ordering: .relaxed),
              rttMillis: { $0 < 0 ? nil : Double($0) / 1000 }(rttMicros.load(ordering: .relaxed)))
    }

    // MARK: From the link

    /// One decrypted mux frame from the peer.
    func receive(frame: ByteBuffer) {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        lastReceive = eventLoop.now
        frame.withUnsafeReadableBytes { bytes in
            session.receive(encoded: bytes, makePayload: { frame.slice($0) })
        }
        processEvents()
        streamCount.store(session.streamCount, ordering: .relaxed)
        if session.refusedOpens != refusedOpensNoted {
            let new = session.refusedOpens - refusedOpensNoted
            refusedOpensNoted = session.refusedOpens
            RefusalLog.shared.note(.streamsPerConnection, count: new, "\(new) OPEN(s) from \(remote.short) refused: "
                                       + "\(session.configuration.maxStreams) streams open", logger: logger)
        }
        scheduleFlush()
    }

    /// The link can take more: let stalled streams continue.
    func linkWritabilityChanged() {
        guard link?.isWritable == true else { return }
        for stream in streams.values { stream.pump() }
        scheduleFlush()
    }

    /// The link is gone: every stream is reset with "transport lost".
    func linkClosed(reason: String) {
        eventLoop.preconditionInEventLoop()
        guard !closed else { return }
        closed = true
        keepaliveTask?.cancel()
        probeTask?.cancel()
        probeTask = nil
        session.closeAll(code: .transportLost)
        processEvents()
        for (_, pending) in pendingOpens {
            pending.timeout.cancel()
            pending.promise.fail(TransportError(.closed, "transport to \(remote.hex) lost: \(reason)"))
        }
        pendingOpens.removeAll()
        for (_, task) in optimisticOpens { task.cancel() }
        optimisticOpens.removeAll()
        streams.removeAll()
    }

    func flushIfNeeded() {
        eventLoop.preconditionInEventLoop()
        flushScheduled = false
        if let lazy = lazyFlush {
            lazyFlush = nil
            lazy.cancel()
        }
        guard let link else { return }
        var sent = false
        session.drainOutgoing { frame in
            // One plaintext buffer reused for every frame (links that keep a frame get their own copy on
            // the next write: copy-on-write).
            var buffer = frameScratch.take() ?? ByteBufferAllocator().buffer(capacity: frame.encodedLength)
            buffer.clear(minimumCapacity: frame.encodedLength)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: frame.encodedLength) { out in
                (try? frame.encode(into: out)) ?? 0
            }
            let reliable: Bool
            if case .datagram = frame { reliable = false } else { reliable = true }
            link.send(frame: buffer, reliable: reliable)
            frameScratch = buffer
            sent = true
        }
        if sent { link.flush() }
        if session.hasEvents { processEvents() }
    }

    /// With `lazy`, the frames queued so far wait up to `lazyFlushDelay` for a regular flush to take
    /// them along (one write, one wake-up at the peer, instead of two).
    func scheduleFlush(lazy: Bool = false) {
        if lazy {
            guard !flushScheduled, lazyFlush == nil else { return }
            lazyFlush = eventLoop.scheduleTask(in: Self.lazyFlushDelay) { [weak self] in
                guard let self else { return }
                self.lazyFlush = nil
                self.flushIfNeeded()
            }
            return
        }
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.execute(flushTask)
    }

    /// Orderly end (e.g. the visor stopping): CLOSE goes to the peer, then the link closes.
    func close(reason: String) {
        guard !closed else { return }
        session.close(code: .appClosed, reason: reason)
        flushIfNeeded()
        link?.close(reason: reason)
    }

    // MARK: For apps

    /// Opens a stream. With `waitForAccept` the future completes on OPEN_OK (or fails on
    /// OPEN_REJECT / timeout); without it the stream is handed out at once, its OPEN waits for the
    /// first write and leaves with it as early data (PROTOCOL.md §5, saving a round trip), and a
    /// refusal arrives as a reset with its code; no answer within `timeout` resets it too.
    func openStream(destinationPort: UInt16, sourcePort: UInt16, timeout: TimeAmount,
                    waitForAccept: Bool = true) -> EventLoopFuture<AppStream> {
        guard eventLoop.inEventLoop else {
            return eventLoop.flatSubmit { [self] in
                openStreamOnLoop(destinationPort: destinationPort, sourcePort: sourcePort, timeout: timeout,
                                 waitForAccept: waitForAccept)
            }
        }
        return openStreamOnLoop(destinationPort: destinationPort, sourcePort: sourcePort, timeout: timeout,
                                waitForAccept: waitForAccept)
    }

    private func openStreamOnLoop(destinationPort: UInt16, sourcePort: UInt16, timeout: TimeAmount,
                                  waitForAccept: Bool) -> EventLoopFuture<AppStream> {
        eventLoop.preconditionInEventLoop()
        guard !closed else {
            return eventLoop.makeFailedFuture(TransportError(.closed, "transport to \(remote.hex) is closed"))
        }
        probeIfSilent()
        let id: MuxStreamID
        do {
            // An optimistic open defers its OPEN to the first write: one batch on the wire.
            id = try session.openStream(destinationPort: destinationPort, sourcePort: sourcePort,
                                        deferOpen: !waitForAccept)
        } catch {
            return eventLoop.makeFailedFuture(TransportError(.closed, "cannot open a stream: \(error)"))
        }
        let stream = MuxStream(id: id, connection: self, localPort: sourcePort, remotePort: destinationPort,
                               accepted: true)
        streams[id] = stream
        if !waitForAccept {
            optimisticOpens[id] = eventLoop.scheduleTask(in: timeout) { [weak self] in
                guard let self, self.optimisticOpens.removeValue(forKey: id) != nil else { return }
                self.session.reset(id, code: .appClosed)
                self.scheduleFlush()
                self.logger.debug("optimistic open unanswered", metadata: ["pk": "\(self.remote.short)",
                                                                         "port": "\(destinationPort)"])
                self.streams.removeValue(forKey: id)?.deliverReset(.transportLost)
            }
            scheduleFlush()
            return eventLoop.makeSucceededFuture(stream)
        }
        let promise = eventLoop.makePromise(of: AppStream.self)
        let task = eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, let pending = self.pendingOpens.removeValue(forKey: id) else { return }
            self.session.reset(id, code: .appClosed)
            self.streams.removeValue(forKey: id)
            self.scheduleFlush()
            pending.promise.fail(TransportError(.timeout, "port \(destinationPort) on \(self.remote.hex) did not answer"))
        }
        pendingOpens[id] = (promise, task)
        scheduleFlush()
        return promise.futureResult
    }

    func sendDatagram(destinationPort: UInt16, sourcePort: UInt16, payload: ByteBuffer) {
        if eventLoop.inEventLoop {
            guard !closed else { return }
            try? session.sendDatagram(destinationPort: destinationPort, sourcePort: sourcePort, payload: payload)
            scheduleFlush()
        } else {
            eventLoop.execute { self.sendDatagram(destinationPort: destinationPort, sourcePort: sourcePort, payload: payload) }
        }
    }

    func forget(_ id: MuxStreamID) {
        optimisticOpens.removeValue(forKey: id)?.cancel()
        streams.removeValue(forKey: id)
    }

    var linkIsWritable: Bool { link?.isWritable ?? false }

    // MARK: Events

    private func processEvents() {
        session.drainEvents { event in
            switch event {
            case .streamOpened(let id, let dst, let src):
                let stream = MuxStream(id: id, connection: self, localPort: dst, remotePort: src, accepted: false)
                streams[id] = stream
                let refusal: AppStreamResetCode? = router.map { $0.route(stream: stream, destinationPort: dst) } ?? .noSuchPort
                if let code = refusal {
                    streams.removeValue(forKey: id)
                    try? session.reject(id, code: MuxErrorCode(rawValue: code.rawValue), reason: code.description)
                    logger.debug("stream refused", metadata: ["pk": "\(remote.short)", "port": "\(dst)", "why": "\(code)"])
                } else if !stream.hasEnded {
                    // The app may already have reset the stream (e.g. a whitelist refusal).
                    let deferred = stream.acceptanceDeferred
                    try? session.accept(id, deferAnswer: deferred)
                    if deferred {
                        // Bounded: an app that has not answered by then gets its OPEN_OK sent alone.
                        stream.acceptanceTimer = eventLoop.scheduleTask(in: Self.deferredAcceptanceLimit) { [weak self] in
                            guard let self, !self.closed else { return }
                            self.session.sendDeferredAnswer(id)
                            self.scheduleFlush()
                        }
                    }
                    stream.markAccepted()
                }
            case .openAccepted(let id):
                optimisticOpens.removeValue(forKey: id)?.cancel()
                if let pending = pendingOpens.removeValue(forKey: id), let stream = streams[id] {
                    pending.timeout.cancel()
                    pending.promise.succeed(stream)
                }
            case .openRejected(let id, let code, let reason):
                optimisticOpens.removeValue(forKey: id)?.cancel()
                let stream = streams.removeValue(forKey: id)
                if pendingOpens[id] == nil {
                    // An optimistic open: the stream was already handed out.
                    stream?.deliverReset(AppStreamResetCode(rawValue: code.rawValue) ?? .refused)
                }
                if let pending = pendingOpens.removeValue(forKey: id) {
                    pending.timeout.cancel()
                    let text = reason.isEmpty ? code.description : reason
                    pending.promise.fail(TransportError(.closed, "\(remote.hex) refused the stream: \(text)",
                                                        streamCode: AppStreamResetCode(rawValue: code.rawValue)))
                }
            case .data(let id, let payload):
                streams[id]?.deliver(payload)
            case .remoteFinished(let id):
                streams[id]?.deliverFinish()
            case .streamClosed(let id):
                streams[id]?.released()
                streams.removeValue(forKey: id)
            case .reset(let id, let code, _):
                optimisticOpens.removeValue(forKey: id)?.cancel()
                if let pending = pendingOpens.removeValue(forKey: id) {
                    pending.timeout.cancel()
                    pending.promise.fail(TransportError(.closed, "stream reset by \(remote.hex): \(code)",
                                                        streamCode: AppStreamResetCode(rawValue: code.rawValue)))
                }
                streams.removeValue(forKey: id)?.deliverReset(AppStreamResetCode(rawValue: code.rawValue) ?? .protocolError)
            case .writable(let id):
                streams[id]?.pump()
            case .datagram(let dst, let src, let payload):
                router?.route(datagram: payload, from: remote, destinationPort: dst, sourcePort: src)
            case .pong(let opaque):
                if let sent = pingSentAt.removeValue(forKey: opaque) {
                    rttMicros.store((eventLoop.now - sent).nanoseconds / 1000, ordering: .relaxed)
                }
            case .closed(let code, let reason, let byPeer):
                logger.info("transport closing", metadata: ["pk": "\(remote.short)", "code": "\(code)",
                                                             "reason": "\(reason)", "by_peer": "\(byPeer)"])
                flushIfNeeded()
                link?.close(reason: "mux closed: \(reason.isEmpty ? code.description : reason)")
            case .protocolError(let what):
                logger.debug("mux protocol error", metadata: ["pk": "\(remote.short)", "error": "\(what)"])
            }
        }
    }

    private func keepalive() {
        guard !closed else { return }
        if eventLoop.now - lastReceive > Self.deadPeerTimeout {
            logger.info("peer silent; closing transport", metadata: ["pk": "\(remote.short)"])
            link?.close(reason: "dead peer: nothing received for \(Self.deadPeerTimeout.nanoseconds / 1_000_000_000) s")
            return
        }
        sendPing()
    }

    /// When an app needs the peer (a stream opens) and the peer has been silent for
    /// `silenceBeforeProbe`, a PING goes out at once; if nothing at all arrives within
    /// `probeTimeout` the link is closed, so the transport is dialled afresh instead of waiting for
    /// the keepalive's `deadPeerTimeout` (a restarted peer forgets a sudph session silently).
    private func probeIfSilent() {
        guard !closed, probeTask == nil else { return }
        let sent = eventLoop.now
        guard sent - lastReceive > Self.silenceBeforeProbe else { return }
        sendPing()
        probeTask = eventLoop.scheduleTask(in: Self.probeTimeout) { [weak self] in
            guard let self else { return }
            self.probeTask = nil
            guard !self.closed, self.lastReceive < sent else { return }
            self.logger.info("peer did not answer a liveness probe; closing transport", metadata: ["pk": "\(self.remote.short)"])
            self.link?.close(reason: "dead peer: no answer to a liveness probe within "
                                      + "\(Self.probeTimeout.nanoseconds / 1_000_000_000) s")
        }
    }

    /// The uplink changed (TransportManager+Uplink): a link bound to an address in `vanished` is
    /// closed at once (its packets can no longer leave) and true is returned; otherwise, with
    /// `probe`, a PING goes out now (a sudph peer learns our new address from it) and the link
    /// is closed if nothing arrives within `timeout`. On `eventLoop`.
    func uplinkChanged(vanished: Set<IPAddress>, probe: Bool, timeout: TimeAmount) -> Bool {
        guard !closed, let link else { return false }
        if let local = link.boundLocalAddress, let ip = local.ipAddress.flatMap(IPAddress.init), vanished.contains(ip) {
            logger.info("local address left the uplink; closing transport", metadata: ["pk": "\(remote.short)", "addr": "\(ip)"])
            link.close(reason: "local address \(ip) left the uplink")
            return true
        }
        guard probe else { return false }
        link.pathChanged()
        probeTask?.cancel()
        let sent = eventLoop.now
        sendPing()
        probeTask = eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self else { return }
            self.probeTask = nil
            guard !self.closed, self.lastReceive < sent else { return }
            self.logger.info("peer did not answer after an uplink change; closing transport", metadata: ["pk": "\(self.remote.short)"])
            self.link?.close(reason: "no answer within \(timeout.nanoseconds / 1_000_000) ms after an uplink change")
        }
        return false
    }

    private func sendPing() {
        let opaque = nextPing
        nextPing &+= 1
        pingSentAt = pingSentAt.filter { eventLoop.now - $0.value < Self.deadPeerTimeout }
        pingSentAt[opaque] = eventLoop.now
        try? session.ping(opaque: opaque)
        scheduleFlush()
    }
}
