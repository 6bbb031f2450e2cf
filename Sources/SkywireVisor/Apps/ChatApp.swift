#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireTransport
import SkywireWire

/// `skychat` (port 1): direct and group messages between visors (docs/skychat.md). Closed by
/// default: a stream from a key not on `--whitelist` (or `skychat allow`), or on the block list,
/// is refused before a byte of it is read. Messages are queued (bounded) and delivered over mux
/// streams with backoff; the history (bounded) lives in `<state_dir>/skychat.json`.
final class ChatApp: VisorApp, @unchecked Sendable {
    // @unchecked Sendable: `store`, `limiter`, `counters`, `inbound*`, `deliveries`, `running`,
    // `saveScheduled` are guarded by `lock`; file writes are serialised by `saveLock`; the rest is immutable.
    private let context: AppContext
    let options: ChatOptions
    private let admitted: AppWhitelist.HexIndex
    let localKey: String
    let statePath: String
    let lock = NIOLock()
    private let saveLock = NIOLock()
    var store: ChatStore
    private var limiter: ChatRateLimiter
    var counters = Counters()
    private var inbound: [String: Int] = [:]
    private var inboundTotal = 0
    var deliveries: [String: Delivery] = [:]
    var running = false
    private var saveScheduled = false

    struct Counters {
        var received = 0, duplicates = 0, rateLimited = 0, refusedStrangers = 0, refusedBlocked = 0, malformed = 0, busy = 0, delivered = 0
    }

    /// One peer's delivery loop: whether it runs, when it tries next, why the last try failed.
    struct Delivery {
        var task: Task<Void, Never>?
        var kicked = true
        var nextAttempt: NIODeadline = .now()
        var backoff: TimeAmount = .zero
        var lastError: String?
    }

    /// Streams from other visors at once: in all, and from one key.
    static let maxInboundStreams = 64
    static let maxInboundPerSender = 2
    /// Messages sent in one delivery attempt.
    static let maxBatch = 32
    static let firstBackoff: TimeAmount = .seconds(1)
    static let maxBackoff: TimeAmount = .seconds(30)
    /// How often a waiting delivery loop looks whether it is due or was kicked.
    static let pollInterval: Duration = .milliseconds(250)
    static let dialTimeoutSeconds: Int64 = 10
    static let openTimeout: TimeAmount = .seconds(10)
    static let ackTimeout: TimeAmount = .seconds(15)
    /// Changes are written this long after the first one (several messages, one write).
    static let saveDelay: Duration = .milliseconds(200)
    /// How long `skychat send` waits for the acknowledgement by default before saying "queued".
    static let defaultSendWaitSeconds: Int64 = 5
    static let maxSendWaitSeconds: Int64 = 60
    static let waitStep: Duration = .milliseconds(100)

    init(context: AppContext, options: ChatOptions, limits: ChatLimits = ChatLimits()) {
        self.context = context
        self.options = options
        admitted = options.whitelist.hexIndex
        localKey = context.localKey.hex
        let dir = context.stateDirectory
        statePath = (dir.hasSuffix("/") ? dir : dir + "/") + ChatStore.stateFileName
        store = ChatStore(limits: limits)
        limiter = ChatRateLimiter(perMinute: options.ratePerMinute)
    }

    var whitelist: AppWhitelist? { options.whitelist }

    /// The state directory's mode when skychat creates it (it holds the history).
    static let stateDirectoryMode: mode_t = 0o700

    func start() async throws {
        do {
            try FileIO.makeDirectories(context.stateDirectory, mode: Self.stateDirectoryMode)
        } catch {
            throw AppError(.failed, "skychat: cannot create the state directory \(context.stateDirectory): \(error)")
        }
        let loaded = loadState()
        let peers: [String] = lock.withLock {
            if let loaded { store = loaded }
            running = true
            return store.peersWithQueue
        }
        for peer in peers { kick(peer) }
    }

    func stop() async {
        let tasks: [Task<Void, Never>] = lock.withLock {
            running = false
            defer { deliveries = [:] }
            return deliveries.values.compactMap(\.task)
        }
        for task in tasks { task.cancel() }
        await saveNow()
    }

    // MARK: Receiving

    func accept(stream: AppStream) -> Bool {
        let key = stream.remoteKeyHex
        let refusal: String? = lock.withLock {
            guard running else { return "not running" }
            if store.blocked.contains(key) {
                counters.refusedBlocked += 1
                return "blocked"
            }
            guard admitted.admits(key) || store.allowed.contains(key) else {
                counters.refusedStrangers += 1
                return "not on the whitelist"
            }
            guard inboundTotal < Self.maxInboundStreams, inbound[key, default: 0] < Self.maxInboundPerSender else {
                counters.busy += 1
                return "too many streams at once"
            }
            inbound[key, default: 0] += 1
            inboundTotal += 1
            return nil
        }
        if let refusal {
            context.logger.info("skychat: refused a stream: \(refusal)", metadata: ["pk": "\(key)"])
            return false
        }
        ChatInboundSession(stream: stream, app: self).start()
        // The peer is reachable now: what waits for it goes at once.
        if lock.withLock({ store.queuedPerPeer[key] != nil }) { kick(key) }
        return true
    }

    /// A message from `sender` (admitted when its stream was): stored, a repeat, or over the rate.
    func receive(_ message: ChatWireMessage, from sender: String) -> ChatAckStatus {
        let now = Self.nowMillis(), seconds = Self.monotonicSeconds()
        let status: ChatAckStatus = lock.withLock {
            guard running, !store.blocked.contains(sender) else { return .retryLater }
            guard limiter.admit(sender, now: seconds) else {
                counters.rateLimited += 1
                return .retryLater
            }
            if store.receive(message, from: sender, now: now) { counters.received += 1 } else { counters.duplicates += 1 }
            return .delivered
        }
        if status == .delivered { scheduleSave() }
        return status
    }

    func inboundClosed(_ sender: String) {
        lock.withLock {
            inboundTotal -= 1
            let left = inbound[sender, default: 1] - 1
            inbound[sender] = left > 0 ? left : nil
        }
    }

    func countMalformed(from sender: String, _ error: Error) {
        lock.withLock { counters.malformed += 1 }
        context.logger.warning("skychat: malformed frame, stream reset: \(error)", metadata: ["pk": "\(sender)"])
    }

    // MARK: Sending

    /// Queues `text` for the conversation `to` (a key, or a group's `g…` id) and waits up to
    /// `wait` seconds for every recipient's acknowledgement.
    func send(to conversation: String, text: String, wait: Int64) async throws(ChatStoreError) -> ControlValue {
        if let problem = ChatProtocol.textProblem(text) { throw ChatStoreError(.invalid, problem) }
        let (message, peers) = try locked { () throws(ChatStoreError) -> (ChatWireMessage, [String]) in
            guard running else { throw ChatStoreError(.invalid, "skychat is not running") }
            var peers = [conversation]
            var group: ChatGroupRef?
            if let gid = ChatStore.groupID(conversation: conversation) {
                guard let g = store.groups[gid] else { throw ChatStoreError(.notFound, "no group \(conversation) (skychat group ls)") }
                peers = g.members
                group = ChatGroupRef(id: gid, name: g.name)
            } else if conversation == localKey {
                throw ChatStoreError(.invalid, "that is this visor's own key")
            }
            let m = ChatWireMessage(id: UInt64.random(in: 1...UInt64.max), timeMillis: UInt64(clamping: Self.nowMillis()), group: group, text: text)
            try store.enqueue(m, to: peers, conversation: conversation, localKey: localKey)
            return (m, peers)
        }
        scheduleSave()
        for peer in peers { kick(peer) }
        let deadline = ContinuousClock.now + .seconds(wait)
        while true {
            let (pending, errors) = lock.withLock { () -> (Int, [String]) in
                let entry = store.conversations[conversation]?.entries.last { $0.outgoing && $0.id == message.id }
                return (entry?.pending ?? 0, peers.compactMap { deliveries[$0]?.lastError })
            }
            if pending == 0 || ContinuousClock.now >= deadline {
                var row: [String: ControlValue] = [
                    "id": .string(ChatStore.hex(message.id)), "conversation": .string(conversation),
                    "state": .string(pending == 0 ? "delivered" : "queued"), "recipients": .int(Int64(peers.count)),
                    "pending": .int(Int64(pending)),
                ]
                row["last_error"] = pending == 0 ? .null : errors.first.map { .string($0) } ?? .null
                return .object(row)
            }
            try? await Task.sleep(for: Self.waitStep)
        }
    }

    /// Starts `peer`'s delivery loop, or makes the running one try now.
    func kick(_ peer: String) {
        lock.withLock {
            guard running else { return }
            var d = deliveries[peer] ?? Delivery()
            d.kicked = true
            if d.task == nil {
                d.task = Task { [self] in await deliveryLoop(peer) }
            }
            deliveries[peer] = d
        }
    }

    private func deliveryLoop(_ peer: String) async {
        while !Task.isCancelled {
            let next: (batch: [ChatOutgoing], due: Bool)? = lock.withLock {
                guard running, var d = deliveries[peer] else { return nil }
                let batch = store.queued(for: peer, limit: Self.maxBatch)
                if batch.isEmpty {
                    deliveries[peer] = nil
                    return nil
                }
                let due = d.kicked || NIODeadline.now() >= d.nextAttempt
                d.kicked = false
                deliveries[peer] = d
                return (batch, due)
            }
            guard let next else { return }
            guard next.due else {
                try? await Task.sleep(for: Self.pollInterval)
                continue
            }
            let result = await attempt(peer, next.batch)
            lock.withLock {
                for (id, status) in result.acks where status == .delivered {
                    store.acknowledged(peer: peer, id: id)
                    counters.delivered += 1
                }
                guard var d = deliveries[peer] else { return }
                let allDelivered = result.error == nil && result.acks.count == next.batch.count && result.acks.values.allSatisfy { $0 == .delivered }
                if allDelivered {
                    d.backoff = .zero
                    d.lastError = nil
                    d.nextAttempt = .now()
                    d.kicked = true  // more may wait behind this batch
                } else {
                    d.backoff = d.backoff == .zero ? Self.firstBackoff : min(Self.maxBackoff, d.backoff * 2)
                    d.nextAttempt = .now() + d.backoff
                    d.lastError = result.error ?? "the peer is over its rate limit for this visor; retrying"
                }
                deliveries[peer] = d
            }
            if !result.acks.isEmpty { scheduleSave() }
        }
    }

    /// One attempt: a transport (dialled when none is up), a stream to the peer's port 1, the batch.
    private func attempt(_ peer: String, _ batch: [ChatOutgoing]) async -> ChatDeliveryResult {
        guard let key = try? PublicKey(hex: peer) else { return ChatDeliveryResult(acks: [:], error: "\(peer) is not a key") }
        let transports = context.transports
        do {
            if !transports.list().contains(where: { $0.remoteKey == key && $0.state == .up }) {
                _ = try await transports.connect(remote: key, within: Self.dialTimeoutSeconds)
            }
            let stream = try await transports.openStream(to: key, port: AppName.skychat.defaultPort, sourcePort: context.port,
                                                         timeout: Self.openTimeout).get()
            var frames: [(UInt64, [UInt8])] = []
            for item in batch {
                if let bytes = try? ChatFrame.message(item.message).encoded() { frames.append((item.message.id, bytes)) }
            }
            return await ChatOutboundSession.run(stream: stream, frames: frames, timeout: Self.ackTimeout)
        } catch let e as TransportError {
            // (No `catch where`: swiftc 6.2.3 has crashed on it, see Visor.skynet().)
            let refused = e.streamCode == .refused || e.streamCode == .forbidden
            return ChatDeliveryResult(acks: [:], error: refused ? "refused by the peer (this visor is not on its skychat whitelist, or is blocked)"
                                                             : e.streamCode == .noSuchPort ? "the peer's skychat is not running" : "\(e)")
        } catch {
            return ChatDeliveryResult(acks: [:], error: "\(error)")
        }
    }

    // MARK: State file

    func scheduleSave() {
        let first: Bool = lock.withLock {
            defer { saveScheduled = true }
            return !saveScheduled
        }
        guard first else { return }
        Task { [self] in
            try? await Task.sleep(for: Self.saveDelay)
            await saveNow()
        }
    }

    /// Writes the store now (on the blocking pool); a failure is logged, the state stays in memory.
    func saveNow() async {
        let path = statePath, logger = context.logger
        await BlockingPool.shared.runOrInline { [self] in
            saveLock.withLock {
                let bytes: [UInt8] = lock.withLock {
                    saveScheduled = false
                    return Array(store.snapshot.json.compact().utf8)
                }
                do { try AtomicFile.write(bytes, to: path, mode: AtomicFile.defaultMode, replace: true) } catch {
                    logger.error("skychat: cannot save the history: \(error)")
                }
            }
        }
    }

    /// The saved store, nil when there is none. A file that does not parse is moved aside
    /// (`skychat.json.bad`) so the next write does not destroy it.
    private func loadState() -> ChatStore? {
        var st = stat()
        guard lstat(statePath, &st) == 0 else { return nil }
        do {
            guard Int(st.st_size) <= ChatStore.maxStateFileBytes else {
                throw ChatStoreError(.invalid, "\(st.st_size) bytes, at most \(ChatStore.maxStateFileBytes)")
            }
            guard let bytes = try FileIO.read(statePath) else { return nil }
            let value = try ControlValue(json: try JSONParser.parse(bytes))
            return try ChatStore(restoring: value, limits: store.limits)
        } catch {
            let aside = statePath + ".bad"
            _ = rename(statePath, aside)
            context.logger.error("skychat: \(statePath) unreadable (\(error)); moved to \(aside), starting with an empty history")
            return nil
        }
    }

    /// `body` under `lock`, its typed error passed on (NIOLock.withLock's is untyped).
    func locked<T>(_ body: () throws(ChatStoreError) -> T) throws(ChatStoreError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Clocks

    /// Unix time in milliseconds (clock_gettime(CLOCK_REALTIME)).
    static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func monotonicSeconds() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }
}
