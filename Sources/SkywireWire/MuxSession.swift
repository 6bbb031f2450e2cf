// The stream multiplexer of one visor connection, PROTOCOL.md §5. Transport-independent and pure:
// the owner calls methods (frames received, app actions) and collects frames to send and events.

/// One connection's mux state. Not thread-safe: one owner (the connection's event loop).
///
/// Driving it: feed every received frame to `receive`, perform app actions (`openStream`, `write`, ...),
/// then `drainOutgoing` (send each frame, in order) and `drainEvents` (dispatch each event). Output
/// only accumulates between drains, so a driver can batch a whole read burst into one flush.
public final class MuxSession<Payload: WirePayload> {
    /// Streams open at once per connection by default (PROTOCOL.md §5): more than a browser
    /// behind skysocks-client keeps open (Tests/integration/t-socks.sh runs 500 at once).
    public static var defaultMaxStreams: Int { 512 }
    /// Streams opened while fewer than this many are open get the full `initialWindow`; later
    /// ones get `reducedWindow` (PROTOCOL.md §5 lets each OPEN / OPEN_OK announce its own).
    public static var defaultFullWindowStreams: Int { 64 }
    /// The window of streams beyond `fullWindowStreams`.
    public static var defaultReducedWindow: UInt32 { 64 * 1024 }

    /// What one connection's streams may make the receiver hold at most (every stream's window
    /// unread by a paused app): 64 × 256 KiB + 448 × 64 KiB = 44 MiB with the defaults, where a
    /// flat 1024 × 256 KiB was 256 MiB (docs/hardening.md).
    public static func worstCaseReceiveBytes(_ c: Configuration) -> Int {
        let full = min(c.maxStreams, c.fullWindowStreams)
        return full * Int(c.initialWindow) + (c.maxStreams - full) * Int(min(c.reducedWindow, c.initialWindow))
    }

    public struct Configuration: Sendable {
        /// True on the side that dialled the transport: it opens odd stream ids.
        public var isInitiator: Bool
        /// The receive window announced in OPEN / OPEN_OK for every stream.
        public var initialWindow: UInt32 = 256 * 1024
        /// Streams open at once (both directions together); more incoming OPENs get code 4.
        public var maxStreams: Int = MuxSession.defaultMaxStreams
        /// Streams opened while fewer than this many are open announce `initialWindow`, the
        /// others `reducedWindow` (bounds `worstCaseReceiveBytes`).
        public var fullWindowStreams: Int = MuxSession.defaultFullWindowStreams
        public var reducedWindow: UInt32 = MuxSession.defaultReducedWindow
        /// Largest DATA payload (§5: 16 KiB over stcpr, 1200 over sudph).
        public var maxDataPayload: Int = MuxFrameLayout.maxDataPayloadStcpr
        /// Bytes per stream `write` accepts beyond the peer's current window.
        public var sendBufferLimit: Int = 64 * 1024
        /// Returned credit is sent as WINDOW once it reaches this (§5: half the window).
        public var windowUpdateThreshold: UInt32?
        /// More protocol errors than this on one connection close it with CLOSE code 3 (§5).
        public var maxProtocolErrors: Int = 16

        public init(isInitiator: Bool, initialWindow: UInt32 = 256 * 1024, maxStreams: Int = MuxSession.defaultMaxStreams,
                    maxDataPayload: Int = MuxFrameLayout.maxDataPayloadStcpr) {
            self.isInitiator = isInitiator
            self.initialWindow = initialWindow
            self.maxStreams = maxStreams
            self.maxDataPayload = maxDataPayload
        }
    }

    final class Stream {
        var phase: MuxStreamInfo.Phase
        var sendCredit: UInt64 = 0
        var sendQueue = ChunkQueue<Payload>()
        var bufferedBytes = 0
        var finRequested = false
        var finSent = false
        var remoteFin = false
        var receiveCredit: UInt64
        var unconsumed: UInt64 = 0
        var pendingReturn: UInt64 = 0
        var writeBlocked = false
        /// DATA bytes sent before OPEN_OK (opener) or received before accepting (acceptor), §5 early data.
        var earlyBytes: UInt64 = 0
        /// A deferred OPEN not yet emitted: it goes out right before the stream's first DATA/FIN.
        var pendingOpen: MuxFrame<Payload>?
        /// Accepted with `deferAnswer`: OPEN_OK not yet emitted; it goes out right before the stream's
        /// first DATA/FIN/WINDOW, or on `sendDeferredAnswer`.
        var answerDeferred = false
        /// The receive window this stream announces (OPEN / OPEN_OK) and its WINDOW threshold.
        let window: UInt32
        let creditThreshold: UInt64

        init(phase: MuxStreamInfo.Phase, window: UInt32, threshold: UInt64) {
            self.phase = phase
            self.window = window
            self.receiveCredit = UInt64(window)
            creditThreshold = threshold
        }
    }

    public let configuration: Configuration
    private var streams: [MuxStreamID: Stream] = [:]
    private var outgoing: [MuxFrame<Payload>] = []
    private var events: [MuxEvent<Payload>] = []
    private var nextLocalID: UInt64
    /// Streams whose OPEN is deferred, in increasing id order (OPENs must go out in id order, §5).
    private var deferredOpens: [MuxStreamID] = []
    private var highestPeerID: UInt32 = 0
    private var protocolErrors = 0
    private let windowThreshold: UInt64
    private let maxDataPayload: Int
    public private(set) var isClosed = false
    /// Frames for streams that no longer exist (late frames after RESET), dropped silently.
    public private(set) var lateFrames: UInt64 = 0
    /// Incoming OPENs refused with code 4 because `maxStreams` streams were open.
    public private(set) var refusedOpens: UInt64 = 0

    public init(configuration: Configuration) {
        var configuration = configuration
        // §5: a window below the early-data allowance could not hold the early bytes.
        configuration.initialWindow = max(configuration.initialWindow, UInt32(MuxFrameLayout.earlyDataLimit))
        configuration.reducedWindow = max(configuration.reducedWindow, UInt32(MuxFrameLayout.earlyDataLimit))
        self.configuration = configuration
        nextLocalID = configuration.isInitiator ? 1 : 2
        let threshold = UInt64(configuration.windowUpdateThreshold ?? configuration.initialWindow / 2)
        windowThreshold = max(1, threshold)
        maxDataPayload = max(1, configuration.maxDataPayload)
        outgoing.reserveCapacity(64)
        events.reserveCapacity(64)
    }

    public convenience init(isInitiator: Bool, initialWindow: UInt32 = 256 * 1024, maxStreams: Int = MuxSession.defaultMaxStreams,
                            maxDataPayload: Int = MuxFrameLayout.maxDataPayloadStcpr) {
        self.init(configuration: Configuration(isInitiator: isInitiator, initialWindow: initialWindow,
                                               maxStreams: maxStreams, maxDataPayload: maxDataPayload))
    }

    // MARK: - Output

    public var hasOutgoingFrames: Bool { !outgoing.isEmpty }
    public var hasEvents: Bool { !events.isEmpty }

    /// Hands every pending frame to `body` in order and clears the queue (its storage is reused).
    /// `body` may call back into the session; frames that causes are left for the next drain.
    public func drainOutgoing(_ body: (MuxFrame<Payload>) throws -> Void) rethrows {
        var batch: [MuxFrame<Payload>] = []
        swap(&batch, &outgoing)
        defer {
            batch.removeAll(keepingCapacity: true)
            if outgoing.isEmpty { swap(&batch, &outgoing) }   // keep the grown buffer
        }
        for frame in batch { try body(frame) }
    }

    /// Hands every pending event to `body` in order and clears the queue. `body` may call back into
    /// the session; events that causes are left for the next drain.
    public func drainEvents(_ body: (MuxEvent<Payload>) throws -> Void) rethrows {
        var batch: [MuxEvent<Payload>] = []
        swap(&batch, &events)
        defer {
            batch.removeAll(keepingCapacity: true)
            if events.isEmpty { swap(&batch, &events) }
        }
        for event in batch { try body(event) }
    }

    public func takeOutgoingFrames() -> [MuxFrame<Payload>] {
        defer { outgoing.removeAll(keepingCapacity: true) }
        return outgoing
    }

    public func takeEvents() -> [MuxEvent<Payload>] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    // MARK: - Introspection

    public var streamCount: Int { streams.count }

    public func info(_ id: MuxStreamID) -> MuxStreamInfo? {
        guard let s = streams[id] else { return nil }
        return MuxStreamInfo(phase: s.phase, sendCredit: s.sendCredit, bufferedBytes: s.bufferedBytes,
                             receiveCredit: s.receiveCredit, unconsumedBytes: s.unconsumed,
                             localFinished: s.finRequested, remoteFinished: s.remoteFin)
    }

    // MARK: - Owner actions

    /// Opens a stream to the peer's `destinationPort` and emits OPEN. Writes may start at once: up to
    /// `MuxFrameLayout.earlyDataLimit` bytes go out as early DATA right behind the OPEN (§5), the rest
    /// is buffered (up to `sendBufferLimit`) until OPEN_OK.
    public func openStream(destinationPort: UInt16, sourcePort: UInt16,
                           deferOpen: Bool = false) throws(MuxSessionError) -> MuxStreamID {
        guard !isClosed else { throw .sessionClosed }
        guard streams.count < configuration.maxStreams else { throw .tooManyStreams(limit: configuration.maxStreams) }
        guard nextLocalID <= UInt64(UInt32.max) else { throw .streamIDsExhausted }
        let id = MuxStreamID(UInt32(nextLocalID))
        nextLocalID += 2
        let s = newStream(phase: .opening)
        s.sendCredit = UInt64(MuxFrameLayout.earlyDataLimit)
        streams[id] = s
        let open = MuxFrame<Payload>.open(streamID: id, destinationPort: destinationPort, sourcePort: sourcePort,
                                          initialWindow: s.window)
        if deferOpen {
            // With `deferOpen` nothing is sent until the first write or finish: OPEN and the first DATA
            // then leave in one batch (one write, one wake-up at the peer).
            s.pendingOpen = open
            deferredOpens.append(id)
        } else {
            emitDeferredOpens(upTo: id)
            outgoing.append(open)
        }
        return id
    }

    /// Emits every deferred OPEN with an id up to `id`, in id order (§5: OPEN ids only increase).
    private func emitDeferredOpens(upTo id: MuxStreamID) {
        while let first = deferredOpens.first, first <= id {
            deferredOpens.removeFirst()
            if let s = streams[first], let open = s.pendingOpen {
                s.pendingOpen = nil
                outgoing.append(open)
            }
        }
    }

    /// Accepts an incoming OPEN: emits OPEN_OK with our window. With `deferAnswer` the OPEN_OK waits
    /// for the stream's first outgoing DATA/FIN/WINDOW (one batch, §5 "Deferred OPEN_OK") or for
    /// `sendDeferredAnswer`; the owner bounds the wait. Data from the peer is taken meanwhile (the
    /// peer stays within its early-data allowance until the OPEN_OK reaches it).
    public func accept(_ id: MuxStreamID, deferAnswer: Bool = false) throws(MuxSessionError) {
        guard !isClosed else { throw .sessionClosed }
        guard let s = streams[id] else { throw .unknownStream(id) }
        guard s.phase == .awaitingAccept else { throw .notAwaitingAccept(id) }
        s.phase = .open
        if deferAnswer {
            s.answerDeferred = true
        } else {
            outgoing.append(.openOK(streamID: id, initialWindow: s.window))
        }
        // Early data the owner consumed before answering: its credit was held back (no WINDOW before OPEN_OK, §5).
        returnCredit(id, s)
    }

    /// Emits the OPEN_OK of a stream accepted with `deferAnswer` if it has not gone out yet.
    public func sendDeferredAnswer(_ id: MuxStreamID) {
        guard !isClosed, let s = streams[id] else { return }
        emitDeferredAnswer(id, s)
    }

    private func emitDeferredAnswer(_ id: MuxStreamID, _ s: Stream) {
        guard s.answerDeferred else { return }
        s.answerDeferred = false
        outgoing.append(.openOK(streamID: id, initialWindow: s.window))
    }

    /// Refuses an incoming OPEN: emits OPEN_REJECT and forgets the stream.
    public func reject(_ id: MuxStreamID, code: MuxErrorCode, reason: String = "") throws(MuxSessionError) {
        guard !isClosed else { throw .sessionClosed }
        guard let s = streams[id] else { throw .unknownStream(id) }
        guard s.phase == .awaitingAccept else { throw .notAwaitingAccept(id) }
        streams[id] = nil
        outgoing.append(.openReject(streamID: id, code: code, reason: MuxFrameLayout.truncatedReason(reason)))
    }

    /// Offers `payload` for sending and returns how many leading bytes were taken (the rest stays with
    /// the caller): at most the peer's window plus `sendBufferLimit` minus what is already buffered.
    /// Taken bytes go out as DATA frames of at most `maxDataPayload` as the window allows. When fewer
    /// than offered were taken, `.writable` follows once more can be taken.
    public func write(_ id: MuxStreamID, _ payload: Payload) throws(MuxSessionError) -> Int {
        guard !isClosed else { throw .sessionClosed }
        guard let s = streams[id] else { throw .unknownStream(id) }
        guard s.phase != .awaitingAccept else { throw .notAccepted(id) }
        guard !s.finRequested else { throw .alreadyFinished(id) }
        let offered = payload.count
        guard offered > 0 else { return 0 }
        let taken = min(offered, writeCapacity(s))
        if taken < offered { s.writeBlocked = true }
        guard taken > 0 else { return 0 }
        s.sendQueue.append(taken == offered ? payload : payload.slice(0..<taken))
        s.bufferedBytes += taken
        flush(id, s)
        return taken
    }

    /// The app consumed `count` bytes of `.data` on `id`; credit goes back to the peer as WINDOW once it
    /// reaches `windowUpdateThreshold` (§5). Unknown streams are ignored (they may have been reset).
    public func consumed(_ id: MuxStreamID, _ count: Int) {
        guard !isClosed, count > 0, let s = streams[id] else { return }
        let n = min(UInt64(count), s.unconsumed)
        s.unconsumed -= n
        s.pendingReturn += n
        returnCredit(id, s)
    }

    /// Half-closes our direction: FIN is sent after all buffered data.
    public func finish(_ id: MuxStreamID) throws(MuxSessionError) {
        guard !isClosed else { throw .sessionClosed }
        guard let s = streams[id] else { throw .unknownStream(id) }
        guard s.phase != .awaitingAccept else { throw .notAccepted(id) }
        guard !s.finRequested else { throw .alreadyFinished(id) }
        s.finRequested = true
        flush(id, s)
    }

    /// Aborts a stream in both directions: emits RESET and forgets it. Unknown ids are ignored.
    /// An incoming OPEN not yet answered is refused with RESET too (prefer `reject`).
    public func reset(_ id: MuxStreamID, code: MuxErrorCode) {
        guard !isClosed, let s = streams.removeValue(forKey: id) else { return }
        if s.pendingOpen != nil {
            // The peer never heard of it: nothing to send.
            deferredOpens.removeAll { $0 == id }
            return
        }
        outgoing.append(.reset(streamID: id, code: code))
    }

    public func sendDatagram(destinationPort: UInt16, sourcePort: UInt16, payload: Payload) throws(MuxSessionError) {
        guard !isClosed else { throw .sessionClosed }
        outgoing.append(.datagram(destinationPort: destinationPort, sourcePort: sourcePort, payload: payload))
    }

    public func ping(opaque: UInt64) throws(MuxSessionError) {
        guard !isClosed else { throw .sessionClosed }
        outgoing.append(.ping(opaque: opaque))
    }

    /// Orderly or error close: emits CLOSE, resets every stream locally (events), and refuses further
    /// use. The owner closes the transport after sending the pending frames.
    public func close(code: MuxErrorCode, reason: String = "") {
        guard !isClosed else { return }
        outgoing.append(.close(code: code, reason: MuxFrameLayout.truncatedReason(reason)))
        resetAllStreams(code: code, byPeer: false)
        isClosed = true
    }

    /// The transport is gone: every stream gets a `.reset(code)` event; nothing is sent.
    public func closeAll(code: MuxErrorCode = .transportLost) {
        outgoing.removeAll(keepingCapacity: false)
        resetAllStreams(code: code, byPeer: false)
        isClosed = true
    }

    // MARK: - Receiving

    /// Decodes and processes one received frame. Payloads are made by `makePayload` from offsets into
    /// `bytes` (e.g. a zero-copy slice of the receive buffer). Malformed frames count as protocol errors.
    public func receive(encoded bytes: UnsafeRawBufferPointer, makePayload: (Range<Int>) -> Payload) {
        do {
            let frame = try MuxFrame<Range<Int>>.decode(bytes)
            receive(frame.mapPayload(makePayload))
        } catch {
            receiveMalformed(error)
        }
    }

    /// Counts a frame that failed to decode (§5: dropped; repeated errors close the connection).
    public func receiveMalformed(_ error: MuxFrameError) {
        guard !isClosed else { return }
        protocolError("malformed frame: \(error)")
    }

    /// Processes one decoded frame from the peer.
    public func receive(_ frame: MuxFrame<Payload>) {
        guard !isClosed else { return }
        switch frame {
        case .open(let id, let dst, let src, let window):
            receiveOpen(id, destinationPort: dst, sourcePort: src, window: window)
        case .openOK(let id, let window):
            guard let s = existing(id, .openOK) else { return }
            guard s.phase == .opening else { return violation(id, "OPEN_OK for stream \(id) that is not opening") }
            s.phase = .open
            // Early DATA already sent counts against the announced window (§5).
            s.sendCredit = UInt64(window) > s.earlyBytes ? UInt64(window) - s.earlyBytes : 0
            events.append(.openAccepted(id))
            flush(id, s)
            notifyWritable(id, s)
        case .openReject(let id, let code, let reason):
            guard let s = existing(id, .openReject) else { return }
            guard s.phase == .opening else { return violation(id, "OPEN_REJECT for stream \(id) that is not opening") }
            streams[id] = nil
            events.append(.openRejected(id, code: code, reason: reason))
        case .data(let id, let payload):
            guard let s = existing(id, .data) else { return }
            if s.phase == .awaitingAccept || s.answerDeferred {
                // Early data (§5): at most earlyDataLimit bytes before we answer the OPEN.
                s.earlyBytes += UInt64(payload.count)
                guard s.earlyBytes <= UInt64(MuxFrameLayout.earlyDataLimit) else {
                    return violation(id, "\(s.earlyBytes) bytes of early DATA on stream \(id) before OPEN_OK "
                                         + "(limit \(MuxFrameLayout.earlyDataLimit))")
                }
            } else {
                guard s.phase == .open else { return violation(id, "DATA on stream \(id) before OPEN_OK") }
            }
            guard !s.remoteFin else { return violation(id, "DATA on stream \(id) after FIN") }
            let n = UInt64(payload.count)
            guard n <= s.receiveCredit else {
                return violation(id, "DATA of \(n) bytes on stream \(id) exceeds the window (\(s.receiveCredit) left)")
            }
            s.receiveCredit -= n
            s.unconsumed += n
            events.append(.data(id, payload))
        case .window(let id, let increment):
            guard let s = existing(id, .window) else { return }
            guard s.phase != .opening else { return violation(id, "WINDOW on stream \(id) before OPEN_OK") }
            let credit = s.sendCredit + UInt64(increment)
            guard credit <= UInt64(UInt32.max) else { return violation(id, "WINDOW overflows stream \(id)'s credit") }
            s.sendCredit = credit
            flush(id, s)
            notifyWritable(id, s)
        case .fin(let id):
            guard let s = existing(id, .fin) else { return }
            guard s.phase == .open else { return violation(id, "FIN on stream \(id) before OPEN_OK") }
            guard !s.remoteFin else { return violation(id, "second FIN on stream \(id)") }
            s.remoteFin = true
            events.append(.remoteFinished(id))
            closeIfDone(id, s)
        case .reset(let id, let code):
            guard existing(id, .reset) != nil else { return }
            streams[id] = nil
            events.append(.reset(id, code: code, byPeer: true))
        case .datagram(let dst, let src, let payload):
            events.append(.datagram(destinationPort: dst, sourcePort: src, payload: payload))
        case .ping(let opaque):
            outgoing.append(.pong(opaque: opaque))
        case .pong(let opaque):
            events.append(.pong(opaque: opaque))
        case .close(let code, let reason):
            resetAllStreams(code: .transportLost, byPeer: true)
            isClosed = true
            events.append(.closed(code: code, reason: reason, byPeer: true))
        }
    }

    private func receiveOpen(_ id: MuxStreamID, destinationPort: UInt16, sourcePort: UInt16, window: UInt32) {
        guard isPeerParity(id) else {
            return protocolError("OPEN with stream id \(id) of the wrong parity")
        }
        guard id.rawValue > highestPeerID else {
            return protocolError("OPEN reuses stream id \(id) (highest so far \(highestPeerID))")
        }
        highestPeerID = id.rawValue
        guard streams.count < configuration.maxStreams else {
            refusedOpens += 1
            outgoing.append(.openReject(streamID: id, code: .tooManyStreams, reason: "too many streams"))
            return
        }
        let s = newStream(phase: .awaitingAccept)
        s.sendCredit = UInt64(window)
        streams[id] = s
        events.append(.streamOpened(id, destinationPort: destinationPort, sourcePort: sourcePort))
    }

    // MARK: - Internals

    /// A stream with the full window while fewer than `fullWindowStreams` are open, else the
    /// reduced one (whose credit goes back at half of it, §5).
    private func newStream(phase: MuxStreamInfo.Phase) -> Stream {
        guard streams.count >= configuration.fullWindowStreams,
              configuration.reducedWindow < configuration.initialWindow else {
            return Stream(phase: phase, window: configuration.initialWindow, threshold: windowThreshold)
        }
        let window = configuration.reducedWindow
        return Stream(phase: phase, window: window, threshold: max(1, min(windowThreshold, UInt64(window / 2))))
    }

    private func isPeerParity(_ id: MuxStreamID) -> Bool {
        id.isInitiatorParity != configuration.isInitiator
    }

    /// Has this id ever named a stream on this connection? (Ids only increase, §5.)
    private func hasExisted(_ id: MuxStreamID) -> Bool {
        if isPeerParity(id) { return id.rawValue <= highestPeerID }
        return UInt64(id.rawValue) < nextLocalID
    }

    /// The live stream, or nil after dropping the frame: silently when late, as an error otherwise.
    private func existing(_ id: MuxStreamID, _ type: MuxFrameType) -> Stream? {
        if let s = streams[id] { return s }
        if hasExisted(id) {
            lateFrames += 1
        } else {
            protocolError("\(type) for stream \(id) that was never opened")
        }
        return nil
    }

    /// §5: a stream-level violation resets the stream with code 3.
    private func violation(_ id: MuxStreamID, _ description: String) {
        streams[id] = nil
        outgoing.append(.reset(streamID: id, code: .protocolError))
        events.append(.reset(id, code: .protocolError, byPeer: false))
        protocolError(description)
    }

    private func protocolError(_ description: String) {
        protocolErrors += 1
        events.append(.protocolError(description))
        if protocolErrors > configuration.maxProtocolErrors {
            close(code: .protocolError, reason: "too many protocol errors")
            events.append(.closed(code: .protocolError, reason: "too many protocol errors", byPeer: false))
        }
    }

    private func resetAllStreams(code: MuxErrorCode, byPeer: Bool) {
        for id in streams.keys.sorted() {
            events.append(.reset(id, code: code, byPeer: byPeer))
        }
        streams.removeAll()
        deferredOpens.removeAll()
    }

    private func writeCapacity(_ s: Stream) -> Int {
        let limit = UInt64(configuration.sendBufferLimit) + s.sendCredit
        let used = UInt64(s.bufferedBytes)
        return used >= limit ? 0 : Int(min(limit - used, UInt64(Int.max)))
    }

    /// Sends buffered data as far as the peer's window allows, then FIN if requested and drained.
    private func flush(_ id: MuxStreamID, _ s: Stream) {
        guard s.phase != .awaitingAccept else { return }
        if s.pendingOpen != nil {
            guard !s.sendQueue.isEmpty || s.finRequested else { return }
            emitDeferredOpens(upTo: id)
        }
        if s.answerDeferred, !s.sendQueue.isEmpty || s.finRequested {
            emitDeferredAnswer(id, s)
        }
        let early = s.phase == .opening
        while s.sendCredit > 0, let chunk = s.sendQueue.first {
            let n = min(chunk.count, maxDataPayload, Int(min(s.sendCredit, UInt64(Int.max))))
            if n == chunk.count {
                outgoing.append(.data(streamID: id, payload: chunk))
                s.sendQueue.removeFirst()
            } else {
                outgoing.append(.data(streamID: id, payload: chunk.slice(0..<n)))
                s.sendQueue.replaceFirst(chunk.slice(n..<chunk.count))
            }
            s.sendCredit -= UInt64(n)
            s.bufferedBytes -= n
            if early { s.earlyBytes += UInt64(n) }
        }
        // FIN only after OPEN_OK (§5).
        if s.phase == .open, s.finRequested, !s.finSent, s.sendQueue.isEmpty {
            s.finSent = true
            outgoing.append(.fin(streamID: id))
            closeIfDone(id, s)
        }
    }

    private func notifyWritable(_ id: MuxStreamID, _ s: Stream) {
        guard s.writeBlocked, !s.finRequested, streams[id] != nil, writeCapacity(s) > 0 else { return }
        s.writeBlocked = false
        events.append(.writable(id))
    }

    private func returnCredit(_ id: MuxStreamID, _ s: Stream) {
        // Not before the OPEN is answered: the opener treats WINDOW before OPEN_OK as a violation (§5).
        guard !s.remoteFin, s.phase != .awaitingAccept, s.pendingReturn >= s.creditThreshold else { return }
        let increment = UInt32(min(s.pendingReturn, UInt64(UInt32.max)))
        s.pendingReturn -= UInt64(increment)
        s.receiveCredit += UInt64(increment)
        emitDeferredAnswer(id, s)
        outgoing.append(.window(streamID: id, increment: increment))
    }

    private func closeIfDone(_ id: MuxStreamID, _ s: Stream) {
        guard s.finSent, s.remoteFin else { return }
        streams[id] = nil
        events.append(.streamClosed(id))
    }
}
