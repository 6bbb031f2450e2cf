// Reliable, ordered, congestion-controlled delivery of mux frames over sudph, PROTOCOL.md §4.4.
//
// One instance per peer holds both halves: the sender (sequence numbers, retransmission queue, RTT/RTO
// per RFC 6298 with Karn's rule, SACK-driven fast retransmit, NewReno-like congestion window in segments)
// and the receiver (reorder buffer, cumulative ACK + SACK blocks, delayed ACK). Pure: bytes in, records
// out; time is passed in. Both buffers are rings with fixed caps; slot storage is reused, so the steady
// state does not allocate.

/// The sudph reliability state machine for one peer. Not thread-safe: one owner (the peer's event loop).
public final class ReliableChannel {
    public struct Configuration: Sendable {
        /// Send ring size in segments (power of two): at most this many frames queued or unacknowledged.
        public var sendBufferSegments: Int = 1024
        /// Reorder ring size in segments (power of two); also the advertised `wnd`.
        public var receiveBufferSegments: Int = 1024
        /// Largest frame `enqueue` accepts and `receiveSegment` buffers (§4.4).
        public var maxFrameSize: Int = SudphRecordLayout.maxSegmentFrameSize
        /// `cwnd` at start (§4.4: 10 segments); also the `wnd` assumed before the first ACK.
        public var initialCongestionWindow: Int = 10
        /// RFC 6298 (2.1) initial RTO.
        public var initialRTO: UInt64 = WireDuration.seconds(1)
        public var minRTO: UInt64 = WireDuration.milliseconds(200)
        public var maxRTO: UInt64 = WireDuration.seconds(10)
        /// RFC 6298 clock granularity G.
        public var clockGranularity: UInt64 = WireDuration.milliseconds(1)
        /// Delayed-ACK limit (§4.4: 10 ms).
        public var ackDelay: UInt64 = WireDuration.milliseconds(10)
        /// ACK at least every this many in-order segments (§4.4: 2).
        public var ackEvery: Int = 2
        /// ACKs SACKing above a segment before it is retransmitted (§4.4: 3).
        public var fastRetransmitThreshold: Int = 3

        public init() {}
    }

    /// Counters and estimator state for `cli tp ls`.
    public struct Statistics: Sendable, Equatable {
        /// Smoothed RTT and its variation, nanoseconds (nil before the first sample).
        public var smoothedRTT: UInt64?
        public var rttVariation: UInt64?
        public var rto: UInt64
        public var congestionWindow: Int
        public var slowStartThreshold: Int
        /// Segments sent and neither acknowledged, SACKed nor deemed lost.
        public var inFlight: Int
        /// Segments enqueued and not yet cumulatively acknowledged (sent or not).
        public var queued: Int
        public var peerWindow: UInt32
        public var segmentsSent: UInt64 = 0
        public var retransmits: UInt64 = 0
        public var fastRetransmits: UInt64 = 0
        public var timeouts: UInt64 = 0
        public var lossEvents: UInt64 = 0
        public var acksSent: UInt64 = 0
        public var acksReceived: UInt64 = 0
        public var invalidAcks: UInt64 = 0
        public var segmentsReceived: UInt64 = 0
        public var segmentsDelivered: UInt64 = 0
        public var duplicateSegments: UInt64 = 0
        public var segmentsBeyondWindow: UInt64 = 0
        public var oversizeSegments: UInt64 = 0
        /// Out-of-order segments held in the reorder buffer.
        public var reorderBuffered: Int
    }

    public enum EnqueueError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The send ring is full: stop reading from the app until `freeSendSlots > 0`.
        case sendBufferFull
        case frameTooLarge(size: Int, maximum: Int)
        case emptyFrame

        public var description: String {
            switch self {
            case .sendBufferFull: "send buffer full"
            case .frameTooLarge(let n, let max): "frame of \(n) bytes exceeds the \(max)-byte limit"
            case .emptyFrame: "empty frame"
            }
        }
    }

    struct SendSlot {
        var sentAt: WireTime = 0
        /// Position of the latest transmission in the sender's transmission order.
        var sentOrder: UInt64 = 0
        var transmissions: UInt16 = 0
        var sacked = false
        var lost = false
        /// ACKs that newly SACKed a segment transmitted after this one's latest transmission.
        var sackHits: UInt8 = 0
    }

    public let configuration: Configuration

    // Sender: [una, nxt) sent and unacknowledged, [nxt, tail) queued and never sent.
    private var sendRecords: [[UInt8]]
    private var sendSlots: [SendSlot]
    private let sendMask: UInt32
    private var una: UInt32 = 0
    private var nxt: UInt32 = 0
    private var tail: UInt32 = 0
    private var sackedCount = 0
    private var lostCount = 0
    /// No segment below it is marked lost.
    private var lostCursor: UInt32 = 0
    private var peerWindow: UInt32
    private var cwnd: Int
    private var ssthresh = Int.max
    private var cwndCredit = 0
    private let maxCwnd: Int
    private var inFastRecovery = false
    /// The window of the last loss event: no second reduction until `una` passes it.
    private var recoveryPoint: UInt32 = 0
    private var lossGuardActive = false
    private var rtoDeadline: WireTime?
    /// Counts transmissions; orders them for loss detection.
    private var transmitOrder: UInt64 = 0
    /// Entering recovery retransmits the first lost segment even if cwnd is full (RFC 6675 §5 (4.3)).
    private var retransmitNow = false
    private var srtt: UInt64?
    private var rttvar: UInt64 = 0
    private var rto: UInt64

    // Receiver: `rcvNext` is `cum`; [rcvNext + 1, highestReceived) may hold out-of-order segments.
    private var recvRecords: [[UInt8]]
    private var recvPresent: [Bool]
    private let recvMask: UInt32
    private var rcvNext: UInt32 = 0
    private var highestReceivedEnd: UInt32 = 0
    private var bufferedCount = 0
    private var unackedSegments = 0
    private var ackNow = false
    private var ackDeadline: WireTime?
    private var ackScratch: [UInt8]

    private var counters: Statistics

    /// `sendBufferSegments` and `receiveBufferSegments` are rounded up to powers of two (at least 2).
    public init(configuration: Configuration = Configuration()) {
        var config = configuration
        config.sendBufferSegments = Self.powerOfTwo(atLeast: config.sendBufferSegments)
        config.receiveBufferSegments = Self.powerOfTwo(atLeast: config.receiveBufferSegments)
        config.initialCongestionWindow = max(1, config.initialCongestionWindow)
        config.ackEvery = max(1, config.ackEvery)
        config.fastRetransmitThreshold = min(max(1, config.fastRetransmitThreshold), Int(UInt8.max))
        self.configuration = config
        sendRecords = [[UInt8]](repeating: [], count: config.sendBufferSegments)
        sendSlots = [SendSlot](repeating: SendSlot(), count: config.sendBufferSegments)
        sendMask = UInt32(config.sendBufferSegments - 1)
        recvRecords = [[UInt8]](repeating: [], count: config.receiveBufferSegments)
        recvPresent = [Bool](repeating: false, count: config.receiveBufferSegments)
        recvMask = UInt32(config.receiveBufferSegments - 1)
        cwnd = config.initialCongestionWindow
        maxCwnd = max(config.sendBufferSegments, config.initialCongestionWindow)
        peerWindow = UInt32(config.initialCongestionWindow)
        rto = config.initialRTO
        ackScratch = []
        ackScratch.reserveCapacity(SudphRecordLayout.maxAckSize)
        counters = Statistics(rto: rto, congestionWindow: cwnd, slowStartThreshold: Int.max, inFlight: 0,
                              queued: 0, peerWindow: peerWindow, reorderBuffered: 0)
    }

    /// Test hook: both directions start at `initialSequence` instead of 0 (exercises the 2^32 wrap).
    convenience init(configuration: Configuration, initialSequence: UInt32) {
        self.init(configuration: configuration)
        una = initialSequence
        nxt = initialSequence
        tail = initialSequence
        lostCursor = initialSequence
        rcvNext = initialSequence
        highestReceivedEnd = initialSequence
    }

    private static func powerOfTwo(atLeast n: Int) -> Int {
        var p = 2
        while p < n { p <<= 1 }
        return p
    }

    // MARK: - Public state

    /// Frames that can still be enqueued.
    public var freeSendSlots: Int { configuration.sendBufferSegments - Int(tail &- una) }
    /// Segments neither cumulatively acknowledged, SACKed nor deemed lost: RFC 6675's "pipe".
    public var inFlight: Int { Int(nxt &- una) - sackedCount - lostCount }
    /// True when every enqueued frame has been acknowledged.
    public var isIdle: Bool { tail == una }

    /// The earliest time the driver must call `poll` even if nothing arrives: 0 when an ACK or a
    /// transmission is already due, else the RTO or delayed-ACK deadline; nil when nothing is pending.
    /// (A driver that polls after every `enqueue`, `receiveSegment` and `receiveAck` only ever sees
    /// the timer deadlines.)
    public var nextTimeout: WireTime? {
        if ackNow || canTransmit { return 0 }
        switch (rtoDeadline, ackDeadline) {
        case (nil, nil): return nil
        case (let a?, nil): return a
        case (nil, let b?): return b
        case (let a?, let b?): return min(a, b)
        }
    }

    /// True when `poll` would send a segment now.
    private var canTransmit: Bool {
        guard inFlight < cwnd else { return false }
        return lostCount > 0 || (nxt != tail && (nxt &- una) < peerWindow)
    }

    public var statistics: Statistics {
        var s = counters
        s.smoothedRTT = srtt
        s.rttVariation = srtt == nil ? nil : rttvar
        s.rto = rto
        s.congestionWindow = cwnd
        s.slowStartThreshold = ssthresh
        s.inFlight = inFlight
        s.queued = Int(tail &- una)
        s.peerWindow = peerWindow
        s.reorderBuffered = bufferedCount
        return s
    }

    // MARK: - Sender

    /// Queues one mux frame for reliable delivery; it is sent by a later `poll`.
    public func enqueue(_ frame: UnsafeRawBufferPointer) throws(EnqueueError) {
        guard frame.count > 0 else { throw .emptyFrame }
        guard frame.count <= configuration.maxFrameSize else {
            throw .frameTooLarge(size: frame.count, maximum: configuration.maxFrameSize)
        }
        guard freeSendSlots > 0 else { throw .sendBufferFull }
        let index = Int(tail & sendMask)
        sendRecords[index].removeAll(keepingCapacity: true)
        SudphRecord.appendSegmentHeader(seq: tail, to: &sendRecords[index])
        sendRecords[index].append(contentsOf: frame)
        sendSlots[index] = SendSlot()
        tail &+= 1
    }

    public func enqueue(_ frame: [UInt8]) throws(EnqueueError) {
        let result = frame.withUnsafeBytes { raw in
            Result { () throws(EnqueueError) in try enqueue(raw) }
        }
        try result.get()
    }

    /// Processes an ACK record from the peer (§4.4). Stale or impossible ACKs are counted and ignored.
    public func receiveAck(_ ack: SudphAck, now: WireTime) {
        counters.acksReceived += 1
        let acked = ack.cumulative &- una
        let outstanding = nxt &- una
        guard acked <= outstanding else {
            counters.invalidAcks += 1
            return
        }
        peerWindow = max(ack.window, 1)   // never stall on a zero window: there is no probe timer

        if acked > 0 {
            var sample: UInt64?
            var seq = una
            while seq != ack.cumulative {
                let slot = sendSlots[Int(seq & sendMask)]
                if slot.sacked { sackedCount -= 1 }
                if slot.lost { lostCount -= 1 }
                // Karn: only segments transmitted once give RTT samples; the newest one is the best.
                if slot.transmissions == 1, now >= slot.sentAt {
                    let r = now - slot.sentAt
                    sample = min(sample ?? r, r)
                }
                if !inFastRecovery { growCongestionWindow() }
                seq &+= 1
            }
            una = ack.cumulative
            if SerialNumber.lessThan(lostCursor, una) { lostCursor = una }
            if let r = sample { updateRTT(sample: r) }
            if lossGuardActive, SerialNumber.lessThanOrEqual(recoveryPoint, una) {
                lossGuardActive = false
                inFastRecovery = false
            }
            // RFC 6298 (5.2, 5.3): stop the timer when all is acked, else restart it.
            rtoDeadline = una == nxt ? nil : now &+ rto
        }

        guard !ack.sackBlocks.isEmpty else { return }
        var highestSacked: UInt32 = 0   // offset above una, exclusive
        var newestSackedOrder: UInt64 = 0
        for block in ack.sackBlocks {
            var start = block.start &- una
            var end = block.end &- una
            let sent = nxt &- una
            // Ignore parts below una (already acked) or beyond what was sent.
            if start >= SerialNumber.half { start = 0 }
            if end >= SerialNumber.half { continue }
            end = min(end, sent)
            guard start < end else { continue }
            highestSacked = max(highestSacked, end)
            var offset = start
            while offset < end {
                let index = Int((una &+ offset) & sendMask)
                if !sendSlots[index].sacked {
                    sendSlots[index].sacked = true
                    sackedCount += 1
                    newestSackedOrder = max(newestSackedOrder, sendSlots[index].sentOrder)
                    if sendSlots[index].lost {
                        sendSlots[index].lost = false
                        lostCount -= 1
                    }
                }
                offset += 1
            }
        }
        // §4.4 fast retransmit: a segment is lost once `threshold` ACKs have each newly SACKed a
        // segment transmitted after it. Counting by transmission order also detects lost retransmissions.
        guard newestSackedOrder > 0 else { return }
        var offset: UInt32 = 0
        let threshold = UInt8(configuration.fastRetransmitThreshold)
        while offset < highestSacked {
            let seq = una &+ offset
            let index = Int(seq & sendMask)
            if !sendSlots[index].sacked, !sendSlots[index].lost, sendSlots[index].transmissions > 0,
               sendSlots[index].sentOrder < newestSackedOrder {
                sendSlots[index].sackHits &+= 1
                if sendSlots[index].sackHits >= threshold {
                    markLost(seq, index: index)
                    counters.fastRetransmits += 1
                    onFastLoss()
                }
            }
            offset += 1
        }
    }

    private func markLost(_ seq: UInt32, index: Int) {
        sendSlots[index].lost = true
        sendSlots[index].sackHits = 0
        lostCount += 1
        if SerialNumber.lessThan(seq, lostCursor) { lostCursor = seq }
    }

    /// §4.4: a fast retransmit halves cwnd, at most once per window of data.
    private func onFastLoss() {
        guard !lossGuardActive else { return }
        counters.lossEvents += 1
        cwnd = max(cwnd / 2, 2)
        ssthresh = cwnd
        cwndCredit = 0
        inFastRecovery = true
        lossGuardActive = true
        recoveryPoint = nxt
        retransmitNow = true
    }

    /// RFC 6298 (5.4–5.6) plus §4.4: ssthresh = cwnd/2, cwnd = 1, RTO doubled, and every
    /// outstanding un-SACKed segment is retransmitted as the window reopens.
    private func onTimeout(now: WireTime) {
        counters.timeouts += 1
        counters.lossEvents += 1
        ssthresh = max(cwnd / 2, 2)
        cwnd = 1
        cwndCredit = 0
        rto = min(rto &* 2, configuration.maxRTO)
        var seq = una
        while seq != nxt {
            let index = Int(seq & sendMask)
            if !sendSlots[index].sacked, !sendSlots[index].lost {
                markLost(seq, index: index)
            }
            seq &+= 1
        }
        lostCursor = una
        inFastRecovery = false
        lossGuardActive = true
        recoveryPoint = nxt
        rtoDeadline = now &+ rto
    }

    /// The network path changed under the channel (our uplink moved, docs/architecture.md
    /// "Network changes"): the RTT estimate and the backed-off RTO describe the old path, where
    /// segments were lost for reasons the new one does not have. Starts over as on a new
    /// connection (RFC 6298 §2.1: the initial RTO until a new sample; the initial window,
    /// RFC 5681 §3.1) and retransmits what is outstanding at the next `poll`, instead of after an
    /// RTO doubled by the outage.
    public func pathChanged(now: WireTime) {
        srtt = nil
        rttvar = 0
        rto = configuration.initialRTO
        cwnd = max(cwnd, configuration.initialCongestionWindow)
        cwndCredit = 0
        var seq = una
        while seq != nxt {
            let index = Int(seq & sendMask)
            if !sendSlots[index].sacked, !sendSlots[index].lost { markLost(seq, index: index) }
            seq &+= 1
        }
        lostCursor = una
        inFastRecovery = false
        if una != nxt { rtoDeadline = now &+ rto }
    }

    private func growCongestionWindow() {
        guard cwnd < maxCwnd else { return }
        if cwnd < ssthresh {
            cwnd += 1                       // slow start: +1 per acked segment
        } else {
            cwndCredit += 1                 // congestion avoidance: +1/cwnd per acked segment
            if cwndCredit >= cwnd {
                cwndCredit = 0
                cwnd += 1
            }
        }
    }

    /// RFC 6298 (2.2, 2.3) with alpha = 1/8, beta = 1/4, K = 4.
    private func updateRTT(sample r: UInt64) {
        if let s = srtt {
            let delta = s > r ? s - r : r - s
            rttvar = (3 * rttvar + delta) / 4
            srtt = (7 * s + r) / 8
        } else {
            srtt = r
            rttvar = r / 2
        }
        let base = (srtt ?? r) &+ max(configuration.clockGranularity, 4 &* rttvar)
        rto = min(max(base, configuration.minRTO), configuration.maxRTO)
    }

    // MARK: - Receiver

    /// Processes a SEGMENT record's sequence number and frame. Frames now in order are handed to
    /// `deliver` synchronously, oldest first (the first may be `frame` itself; later ones are views of
    /// the reorder buffer, valid only during the call). `deliver` must not call back into the channel.
    public func receiveSegment(seq: UInt32, frame: UnsafeRawBufferPointer, now: WireTime,
                               deliver: (UnsafeRawBufferPointer) -> Void) {
        counters.segmentsReceived += 1
        let distance = seq &- rcvNext
        if distance >= SerialNumber.half {
            // Already delivered: our ACK was probably lost. Re-acknowledge at once.
            counters.duplicateSegments += 1
            ackNow = true
            return
        }
        if distance >= UInt32(configuration.receiveBufferSegments) {
            counters.segmentsBeyondWindow += 1
            ackNow = true
            return
        }
        if frame.count > configuration.maxFrameSize {
            counters.oversizeSegments += 1      // dropped unacknowledged: the sender broke §4.4
            return
        }
        if distance == 0 {
            deliver(frame)
            counters.segmentsDelivered += 1
            rcvNext &+= 1
            var filledGap = false
            while bufferedCount > 0 {
                let index = Int(rcvNext & recvMask)
                guard recvPresent[index] else { break }
                filledGap = true
                recvRecords[index].withUnsafeBytes { deliver($0) }
                recvPresent[index] = false
                bufferedCount -= 1
                counters.segmentsDelivered += 1
                rcvNext &+= 1
            }
            if bufferedCount > 0 || filledGap {
                ackNow = true       // RFC 5681 §4.2: ACK at once while a gap exists or is filled
            } else {
                unackedSegments += 1
                if unackedSegments >= configuration.ackEvery {
                    ackNow = true
                } else if ackDeadline == nil {
                    ackDeadline = now &+ configuration.ackDelay
                }
            }
            return
        }
        let index = Int(seq & recvMask)
        if recvPresent[index] {
            counters.duplicateSegments += 1
        } else {
            recvRecords[index].removeAll(keepingCapacity: true)
            recvRecords[index].append(contentsOf: frame)
            recvPresent[index] = true
            bufferedCount += 1
            if bufferedCount == 1 || SerialNumber.lessThan(highestReceivedEnd, seq &+ 1) {
                highestReceivedEnd = seq &+ 1
            }
        }
        ackNow = true       // out of order: ACK at once with SACK blocks
    }

    /// Processes one decrypted data-packet plaintext (§4.4). An empty plaintext is a keepalive and is
    /// ignored; an ACK drives the sender; a SEGMENT's frames are passed to `deliver` with
    /// `reliable: true` once in order; an UNRELIABLE frame is passed straight through with
    /// `reliable: false`. The bytes are valid only during `deliver`, which must not call back into
    /// the channel. Malformed records throw and change nothing.
    public func receiveRecord(_ plaintext: UnsafeRawBufferPointer, now: WireTime,
                              deliver: (_ frame: UnsafeRawBufferPointer, _ reliable: Bool) -> Void) throws(SudphRecordError) {
        guard plaintext.count > 0 else { return }
        switch try SudphRecord.decode(plaintext) {
        case .unreliable(let range):
            deliver(UnsafeRawBufferPointer(rebasing: plaintext[range]), false)
        case .segment(let seq, let range):
            receiveSegment(seq: seq, frame: UnsafeRawBufferPointer(rebasing: plaintext[range]), now: now) {
                deliver($0, true)
            }
        case .ack(let ack):
            receiveAck(ack, now: now)
        }
    }

    // MARK: - Output

    /// Runs timers and emits records to send, each a complete record plaintext (an ACK, a SEGMENT or a
    /// retransmitted SEGMENT) to be encrypted into one data packet. `emit` must not call back into the
    /// channel; the bytes are valid only during the call.
    public func poll(now: WireTime, emit: (UnsafeRawBufferPointer) -> Void) {
        if let deadline = rtoDeadline, now >= deadline, una != nxt {
            onTimeout(now: now)
        }
        if ackNow || (ackDeadline.map { now >= $0 } ?? false) {
            buildAck()
            ackScratch.withUnsafeBytes { emit($0) }
            counters.acksSent += 1
            ackNow = false
            ackDeadline = nil
            unackedSegments = 0
        }
        transmit(now: now, emit: emit)
        if rtoDeadline == nil, una != nxt {
            rtoDeadline = now &+ rto
        }
    }

    private func transmit(now: WireTime, emit: (UnsafeRawBufferPointer) -> Void) {
        defer { retransmitNow = false }
        while inFlight < cwnd || (retransmitNow && lostCount > 0) {
            retransmitNow = false
            if lostCount > 0 {
                var seq = lostCursor
                while seq != nxt, !sendSlots[Int(seq & sendMask)].lost { seq &+= 1 }
                if seq != nxt {
                    let index = Int(seq & sendMask)
                    sendSlots[index].lost = false
                    lostCount -= 1
                    sendSlots[index].transmissions &+= 1
                    sendSlots[index].sentAt = now
                    transmitOrder &+= 1
                    sendSlots[index].sentOrder = transmitOrder
                    sendSlots[index].sackHits = 0
                    lostCursor = seq &+ 1
                    counters.retransmits += 1
                    counters.segmentsSent += 1
                    sendRecords[index].withUnsafeBytes { emit($0) }
                    continue
                }
                lostCursor = nxt
            }
            guard nxt != tail, (nxt &- una) < peerWindow else { return }
            let index = Int(nxt & sendMask)
            sendSlots[index].transmissions = 1
            sendSlots[index].sentAt = now
            transmitOrder &+= 1
            sendSlots[index].sentOrder = transmitOrder
            nxt &+= 1
            counters.segmentsSent += 1
            sendRecords[index].withUnsafeBytes { emit($0) }
        }
    }

    /// The ACK record: cum, wnd = reorder ring size, and up to 16 SACK blocks, lowest first.
    private func buildAck() {
        ackScratch.removeAll(keepingCapacity: true)
        ackScratch.append(SudphRecordKind.ack.rawValue)
        ackScratch.appendBigEndian(rcvNext)
        ackScratch.appendBigEndian(UInt32(configuration.receiveBufferSegments))
        let countOffset = ackScratch.count
        ackScratch.append(0)
        guard bufferedCount > 0 else { return }
        var blocks: UInt8 = 0
        var seq = rcvNext &+ 1
        var runStart: UInt32?
        while seq != highestReceivedEnd, Int(blocks) < SudphRecordLayout.maxSackBlocks {
            let present = recvPresent[Int(seq & recvMask)]
            if present, runStart == nil {
                runStart = seq
            } else if !present, let start = runStart {
                ackScratch.appendBigEndian(start)
                ackScratch.appendBigEndian(seq)
                blocks += 1
                runStart = nil
            }
            seq &+= 1
        }
        if let start = runStart, Int(blocks) < SudphRecordLayout.maxSackBlocks {
            ackScratch.appendBigEndian(start)
            ackScratch.appendBigEndian(seq)
            blocks += 1
        }
        ackScratch[countOffset] = blocks
    }
}
