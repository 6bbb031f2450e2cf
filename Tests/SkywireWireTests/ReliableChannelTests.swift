import XCTest
@testable import SkywireWire

final class ReliableChannelTests: XCTestCase {
    static let ms = WireDuration.nanosecondsPerMillisecond

    /// Frame `i`: its index then a pattern whose length varies with `i` (1..1000 bytes after the index).
    static func frame(_ i: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.appendBigEndian(UInt32(i))
        let length = 1 + (i &* 7919) % 1000
        for k in 0..<length { out.append(UInt8(truncatingIfNeeded: i &+ k &* 31)) }
        return out
    }

    /// Collects what `poll` emits as owned records.
    static func poll(_ channel: ReliableChannel, now: UInt64) -> [[UInt8]] {
        var records: [[UInt8]] = []
        channel.poll(now: now) { records.append(Array($0)) }
        return records
    }

    static func ack(_ record: [UInt8]) -> SudphAck? {
        if case .ack(let a)? = try? decodeRecord(record).get() { return a }
        return nil
    }

    // MARK: - Receiver timing and ACK contents

    func testDelayedAckEverySecondSegmentOrAfterTenMilliseconds() {
        let rx = ReliableChannel()
        var delivered: [[UInt8]] = []
        let f0 = Self.frame(0), f1 = Self.frame(1), f2 = Self.frame(2)
        f0.withUnsafeBytes { rx.receiveSegment(seq: 0, frame: $0, now: 0) { delivered.append(Array($0)) } }
        XCTAssertTrue(Self.poll(rx, now: 0).isEmpty, "one segment: ACK is delayed")
        XCTAssertEqual(rx.nextTimeout, 10 * Self.ms)
        f1.withUnsafeBytes { rx.receiveSegment(seq: 1, frame: $0, now: 1 * Self.ms) { delivered.append(Array($0)) } }
        let second = Self.poll(rx, now: 1 * Self.ms)
        XCTAssertEqual(second, [SudphAck(cumulative: 2, window: 1024).encoded], "second segment: ACK at once")
        XCTAssertNil(rx.nextTimeout)

        f2.withUnsafeBytes { rx.receiveSegment(seq: 2, frame: $0, now: 20 * Self.ms) { delivered.append(Array($0)) } }
        XCTAssertTrue(Self.poll(rx, now: 29 * Self.ms).isEmpty)
        XCTAssertEqual(Self.poll(rx, now: 30 * Self.ms), [SudphAck(cumulative: 3, window: 1024).encoded])
        XCTAssertEqual(delivered, [f0, f1, f2])

        f1.withUnsafeBytes { rx.receiveSegment(seq: 5, frame: $0, now: 40 * Self.ms) { _ in XCTFail("out of order") } }
        XCTAssertEqual(rx.nextTimeout, 0, "an out-of-order segment makes an ACK due at once")
        XCTAssertEqual(Self.poll(rx, now: 40 * Self.ms).count, 1)
        XCTAssertNil(rx.nextTimeout)
    }

    func testOutOfOrderSegmentsAreSackedAtOnceAndDeliveredInOrder() {
        let rx = ReliableChannel()
        var delivered: [UInt32] = []
        func receive(_ seq: UInt32) {
            Self.frame(Int(seq)).withUnsafeBytes { f in
                rx.receiveSegment(seq: seq, frame: f, now: 0) { delivered.append($0.readBigEndian(at: 0)) }
            }
        }
        receive(0); receive(2); receive(3); receive(5)
        XCTAssertEqual(Self.poll(rx, now: 0), [SudphAck(cumulative: 1, window: 1024, sackBlocks: [
            SackBlock(start: 2, end: 4), SackBlock(start: 5, end: 6),
        ]).encoded])
        receive(3)      // duplicate of a buffered one
        XCTAssertEqual(rx.statistics.duplicateSegments, 1)
        receive(1)      // fills the gap: 1, 2, 3 delivered
        XCTAssertEqual(Self.poll(rx, now: 0), [SudphAck(cumulative: 4, window: 1024, sackBlocks: [
            SackBlock(start: 5, end: 6),
        ]).encoded])
        receive(4)
        XCTAssertEqual(delivered, [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(Self.poll(rx, now: 0), [SudphAck(cumulative: 6, window: 1024).encoded],
                       "a segment that fills a gap is acknowledged at once")
        receive(2)      // old duplicate: re-ACK at once
        XCTAssertEqual(Self.poll(rx, now: 0), [SudphAck(cumulative: 6, window: 1024).encoded])
        XCTAssertEqual(rx.statistics.reorderBuffered, 0)
    }

    func testAtMostSixteenSackBlocksLowestFirst() {
        let rx = ReliableChannel()
        for k in 0..<40 {
            let seq = UInt32(2 * k + 1)
            Self.frame(k).withUnsafeBytes { rx.receiveSegment(seq: seq, frame: $0, now: 0) { _ in } }
        }
        let records = Self.poll(rx, now: 0)
        XCTAssertEqual(records.count, 1)
        let ack = Self.ack(records[0])
        XCTAssertEqual(ack?.sackBlocks.count, 16)
        XCTAssertEqual(ack?.sackBlocks.first, SackBlock(start: 1, end: 2))
        XCTAssertEqual(ack?.sackBlocks.last, SackBlock(start: 31, end: 32))
    }

    func testReceiverDropsBeyondWindowAndReacks() {
        var config = ReliableChannel.Configuration()
        config.receiveBufferSegments = 8
        let rx = ReliableChannel(configuration: config)
        var delivered = 0
        Self.frame(8).withUnsafeBytes { rx.receiveSegment(seq: 8, frame: $0, now: 0) { _ in delivered += 1 } }
        Self.frame(7).withUnsafeBytes { rx.receiveSegment(seq: 7, frame: $0, now: 0) { _ in delivered += 1 } }
        XCTAssertEqual(rx.statistics.segmentsBeyondWindow, 1)
        XCTAssertEqual(rx.statistics.reorderBuffered, 1)
        XCTAssertEqual(Self.poll(rx, now: 0), [SudphAck(cumulative: 0, window: 8, sackBlocks: [
            SackBlock(start: 7, end: 8),
        ]).encoded])
        let big = [UInt8](repeating: 1, count: config.maxFrameSize + 1)
        big.withUnsafeBytes { rx.receiveSegment(seq: 0, frame: $0, now: 0) { _ in delivered += 1 } }
        XCTAssertEqual(rx.statistics.oversizeSegments, 1)
        XCTAssertEqual(delivered, 0)
    }

    func testReceiveRecordDispatchesEveryKind() throws {
        let tx = ReliableChannel(), rx = ReliableChannel()
        try tx.enqueue(Self.frame(0))
        let segments = Self.poll(tx, now: 0)
        XCTAssertEqual(segments.count, 1)
        var got: [([UInt8], Bool)] = []
        func feed(_ channel: ReliableChannel, _ record: [UInt8]) throws {
            let result = record.withUnsafeBytes { raw in
                Result { () throws(SudphRecordError) in
                    try channel.receiveRecord(raw, now: 5 * Self.ms) { got.append((Array($0), $1)) }
                }
            }
            try result.get()
        }
        try feed(rx, segments[0])
        try feed(rx, [0x01, 0x08, 0, 1, 0, 2, 0xEE])
        try feed(rx, [])                               // keepalive
        XCTAssertEqual(got.map(\.0), [Self.frame(0), [0x08, 0, 1, 0, 2, 0xEE]])
        XCTAssertEqual(got.map(\.1), [true, false])
        XCTAssertThrowsError(try feed(rx, [0x07])) { XCTAssertEqual($0 as? SudphRecordError, .unknownKind(7)) }
        let acks = Self.poll(rx, now: 15 * Self.ms)
        XCTAssertEqual(acks, [SudphAck(cumulative: 1, window: 1024).encoded], "delayed ACK after 10 ms")
        try feed(tx, acks[0])
        XCTAssertTrue(tx.isIdle)
    }

    // MARK: - Sender basics

    func testEnqueueLimitsAndInitialWindow() throws {
        var config = ReliableChannel.Configuration()
        config.sendBufferSegments = 16
        let tx = ReliableChannel(configuration: config)
        XCTAssertThrowsError(try tx.enqueue([])) { XCTAssertEqual($0 as? ReliableChannel.EnqueueError, .emptyFrame) }
        XCTAssertThrowsError(try tx.enqueue([UInt8](repeating: 0, count: 1401))) {
            XCTAssertEqual($0 as? ReliableChannel.EnqueueError, .frameTooLarge(size: 1401, maximum: 1400))
        }
        for i in 0..<16 { try tx.enqueue(Self.frame(i)) }
        XCTAssertEqual(tx.freeSendSlots, 0)
        XCTAssertThrowsError(try tx.enqueue(Self.frame(16))) {
            XCTAssertEqual($0 as? ReliableChannel.EnqueueError, .sendBufferFull)
        }
        let sent = Self.poll(tx, now: 0)
        XCTAssertEqual(sent.count, 10, "initial cwnd and assumed peer window are 10")
        var expected: [UInt8] = []
        SudphRecord.appendSegmentHeader(seq: 0, to: &expected)
        expected += Self.frame(0)
        XCTAssertEqual(sent[0], expected)
        XCTAssertEqual(tx.nextTimeout, WireDuration.seconds(1), "initial RTO is 1 s")

        // An ACK for data never sent is ignored.
        tx.receiveAck(SudphAck(cumulative: 11, window: 64), now: 1)
        XCTAssertEqual(tx.statistics.invalidAcks, 1)
        XCTAssertEqual(tx.freeSendSlots, 0)

        tx.receiveAck(SudphAck(cumulative: 10, window: 64), now: 100 * Self.ms)
        XCTAssertEqual(tx.freeSendSlots, 10)
        let stats = tx.statistics
        XCTAssertEqual(stats.smoothedRTT, 100 * Self.ms)
        XCTAssertEqual(stats.rttVariation, 50 * Self.ms)
        XCTAssertEqual(stats.rto, 300 * Self.ms + 0, "RTO = SRTT + 4 * RTTVAR")
        XCTAssertEqual(stats.congestionWindow, 16, "slow start: +1 per acked segment, capped at the send ring")
        XCTAssertEqual(Self.poll(tx, now: 100 * Self.ms).count, 6, "the remaining queued segments go out")
    }

    /// After an outage (RTO backed off, window 1) a path change resends at once with the
    /// initial RTO and window; without it the next resend waits for the doubled RTO.
    func testPathChangeRetransmitsAtOnceWithTheInitialRTO() throws {
        let tx = ReliableChannel()
        for i in 0..<4 { try tx.enqueue(Self.frame(i)) }
        XCTAssertEqual(Self.poll(tx, now: 0).count, 4)
        var t: UInt64 = 0
        for _ in 0..<3 {   // three RTO expiries: 1 s, 2 s, 4 s
            t = try XCTUnwrap(tx.nextTimeout)
            _ = Self.poll(tx, now: t)
        }
        XCTAssertEqual(tx.statistics.rto, WireDuration.seconds(8))
        XCTAssertEqual(tx.statistics.congestionWindow, 1)
        XCTAssertTrue(Self.poll(tx, now: t + 1).isEmpty, "nothing more until the backed-off RTO")
        tx.pathChanged(now: t + 1)
        XCTAssertEqual(tx.statistics.rto, WireDuration.seconds(1))
        XCTAssertEqual(tx.statistics.congestionWindow, 10)
        XCTAssertNil(tx.statistics.smoothedRTT)
        XCTAssertEqual(tx.nextTimeout, 0, "due now")
        XCTAssertEqual(Self.poll(tx, now: t + 1).count, 4, "every outstanding segment resent at once")
        XCTAssertEqual(tx.nextTimeout, t + 1 + WireDuration.seconds(1))
    }

    func testFastRetransmitAfterThreeSackingAcksHalvesWindowOnce() throws {
        let tx = ReliableChannel()
        for i in 0..<10 { try tx.enqueue(Self.frame(i)) }
        XCTAssertEqual(Self.poll(tx, now: 0).count, 10)
        // Segment 0 lost; ACKs SACK 1.., 1..2, 1..3.
        for k in 1...2 {
            tx.receiveAck(SudphAck(cumulative: 0, window: 1024, sackBlocks: [SackBlock(start: 1, end: UInt32(1 + k))]),
                          now: 40 * Self.ms)
            XCTAssertTrue(Self.poll(tx, now: 40 * Self.ms).isEmpty, "no retransmit after \(k) ACKs")
        }
        tx.receiveAck(SudphAck(cumulative: 0, window: 1024, sackBlocks: [SackBlock(start: 1, end: 4)]), now: 41 * Self.ms)
        let afterThird = tx.statistics
        XCTAssertEqual(afterThird.congestionWindow, 5)
        XCTAssertEqual(afterThird.slowStartThreshold, 5)
        XCTAssertEqual(afterThird.lossEvents, 1)
        let resent = Self.poll(tx, now: 41 * Self.ms)
        XCTAssertEqual(resent.first.map { Array($0[0..<5]) }, [0x02, 0, 0, 0, 0], "segment 0 retransmitted")
        XCTAssertEqual(tx.statistics.retransmits, 1)
        // Segment 4 is lost too in the same window. An ACK that SACKs nothing new does not count.
        for end: UInt32 in [6, 6, 7, 8] {
            tx.receiveAck(SudphAck(cumulative: 0, window: 1024, sackBlocks: [SackBlock(start: 1, end: 4),
                                                                           SackBlock(start: 5, end: end)]),
                          now: 42 * Self.ms)
            XCTAssertEqual(tx.statistics.fastRetransmits, end == 8 ? 2 : 1)
        }
        // ... and causes no second halving.

        XCTAssertEqual(tx.statistics.congestionWindow, 5)
        XCTAssertEqual(tx.statistics.lossEvents, 1)
        XCTAssertEqual(tx.statistics.fastRetransmits, 2)
        // The retransmitted segment gives no RTT sample (Karn); later ones do.
        tx.receiveAck(SudphAck(cumulative: 10, window: 1024), now: 100 * Self.ms)
        XCTAssertEqual(tx.statistics.smoothedRTT, 100 * Self.ms, "sample from segments sent once at t=0")
        XCTAssertTrue(tx.isIdle)
        XCTAssertNil(tx.nextTimeout)
    }

    // MARK: - Simulation

    struct Outcome {
        var delivered = 0
        var finishedAt: UInt64 = 0
        var txStats: ReliableChannel.Statistics
        var rxStats: ReliableChannel.Statistics
        var cwndReductions = 0
        var lossEventsSeen = 0
        var timeoutRTOs: [UInt64] = []
        var maxQueued = 0
        var maxReorder = 0
    }

    /// Drives a sender and a receiver over two simulated links with a fake clock until `total` frames
    /// arrive (checked byte for byte, in order) or `timeLimit` passes.
    func simulate(total: Int, forward: inout SimulatedLink, backward: inout SimulatedLink,
                  config: ReliableChannel.Configuration = .init(), timeLimit: UInt64,
                  blackout: (from: UInt64, to: UInt64)? = nil, initialSequence: UInt32 = 0) -> Outcome {
        let tx = ReliableChannel(configuration: config, initialSequence: initialSequence)
        let rx = ReliableChannel(configuration: config, initialSequence: initialSequence)
        var now: UInt64 = 0
        var nextToEnqueue = 0
        var outcome = Outcome(txStats: tx.statistics, rxStats: rx.statistics)
        var mismatch = false
        var lastStats = tx.statistics
        var steps = 0

        func observe() {
            let s = tx.statistics
            if s.lossEvents > lastStats.lossEvents {
                outcome.lossEventsSeen += 1
                // A reduction, or already at the floor (2 after a fast retransmit, 1 after a timeout).
                if s.congestionWindow < lastStats.congestionWindow || s.congestionWindow <= 2 {
                    outcome.cwndReductions += 1
                }
            }
            if s.timeouts > lastStats.timeouts { outcome.timeoutRTOs.append(s.rto) }
            outcome.maxQueued = max(outcome.maxQueued, s.queued)
            outcome.maxReorder = max(outcome.maxReorder, rx.statistics.reorderBuffered)
            lastStats = s
        }

        while outcome.delivered < total, now <= timeLimit, steps < 10_000_000 {
            steps += 1
            if let b = blackout {
                forward.blackout = now >= b.from && now < b.to
                backward.blackout = forward.blackout
            }
            while nextToEnqueue < total, tx.freeSendSlots > 0 {
                try? tx.enqueue(Self.frame(nextToEnqueue))
                nextToEnqueue += 1
            }
            tx.poll(now: now) { forward.send($0, now: now) }
            observe()
            rx.poll(now: now) { backward.send($0, now: now) }

            while let packet = forward.receive(now: now) {
                packet.withUnsafeBytes { raw in
                    guard case .segment(let seq, let range)? = try? SudphRecord.decode(raw) else { return }
                    rx.receiveSegment(seq: seq, frame: UnsafeRawBufferPointer(rebasing: raw[range]), now: now) { f in
                        if !f.elementsEqual(Self.frame(outcome.delivered)) { mismatch = true }
                        outcome.delivered += 1
                    }
                }
            }
            while let packet = backward.receive(now: now) {
                if let ack = Self.ack(packet) { tx.receiveAck(ack, now: now) }
                observe()
            }
            // Jump to the next event; a channel with output due now reports a past deadline.
            var next = [forward.nextArrival, backward.nextArrival, tx.nextTimeout, rx.nextTimeout]
                .compactMap { $0 }.min() ?? (now + 1000 * Self.ms)
            if let b = blackout, now < b.to { next = min(next, now < b.from ? b.from : b.to) }
            now = max(now, next)
        }
        XCTAssertFalse(mismatch, "a frame arrived corrupted or out of order")
        outcome.finishedAt = now
        outcome.txStats = tx.statistics
        outcome.rxStats = rx.statistics
        return outcome
    }

    func testLossyReorderingLinkDeliversEverythingInOrder() {
        let total = 20_000
        var forward = SimulatedLink(delay: 20 * Self.ms, jitter: 2 * Self.ms, lossRate: 0.02,
                                    bytesPerSecond: 4_000_000, queueLimit: 200, seed: 42)
        var backward = SimulatedLink(delay: 20 * Self.ms, jitter: 2 * Self.ms, lossRate: 0.02,
                                     bytesPerSecond: 4_000_000, queueLimit: 200, seed: 43)
        var config = ReliableChannel.Configuration()
        config.sendBufferSegments = 512
        config.receiveBufferSegments = 512
        let out = simulate(total: total, forward: &forward, backward: &backward, config: config,
                           timeLimit: WireDuration.seconds(3600))
        XCTAssertEqual(out.delivered, total)
        XCTAssertEqual(out.rxStats.segmentsDelivered, UInt64(total))
        XCTAssertGreaterThan(out.txStats.retransmits, 0)
        XCTAssertGreaterThan(out.txStats.fastRetransmits, 0)
        XCTAssertGreaterThan(out.lossEventsSeen, 0)
        XCTAssertEqual(out.cwndReductions, out.lossEventsSeen, "every loss event shrinks cwnd")
        XCTAssertGreaterThan(forward.dropped, 0)
        XCTAssertLessThanOrEqual(out.maxQueued, 512)
        XCTAssertLessThan(out.maxReorder, 512)
        XCTAssertNotNil(out.txStats.smoothedRTT)
        // About 40 ms of propagation plus queueing: the estimate must be in that range.
        XCTAssertGreaterThanOrEqual(out.txStats.smoothedRTT ?? 0, 40 * Self.ms)
        XCTAssertLessThan(out.txStats.smoothedRTT ?? .max, 400 * Self.ms)
        print("lossy link: \(total) frames in \(Double(out.finishedAt) / 1e9) s simulated; " +
              "retransmits \(out.txStats.retransmits), fast \(out.txStats.fastRetransmits), " +
              "timeouts \(out.txStats.timeouts), loss events \(out.lossEventsSeen), " +
              "cwnd \(out.txStats.congestionWindow), srtt \(Double(out.txStats.smoothedRTT ?? 0) / 1e6) ms")
    }

    func testCongestionOnlyLossAtBottleneckIsRecovered() {
        // No random loss: drops come only from the bottleneck queue, so cwnd must adapt to it.
        var forward = SimulatedLink(delay: 10 * Self.ms, jitter: 0, lossRate: 0, bytesPerSecond: 2_000_000,
                                    queueLimit: 30, seed: 1)
        var backward = SimulatedLink(delay: 10 * Self.ms, jitter: 0, lossRate: 0, bytesPerSecond: 2_000_000,
                                     queueLimit: 1000, seed: 2)
        let out = simulate(total: 5000, forward: &forward, backward: &backward, timeLimit: WireDuration.seconds(600))
        XCTAssertEqual(out.delivered, 5000)
        XCTAssertGreaterThan(forward.dropped, 0, "slow start overran the bottleneck")
        XCTAssertGreaterThan(out.lossEventsSeen, 0)
        XCTAssertEqual(out.cwndReductions, out.lossEventsSeen)
        // The sender cannot run much faster than the bottleneck (≈ 2 MB/s for ≈ 2.5 MB of frames).
        XCTAssertGreaterThan(out.finishedAt, WireDuration.seconds(1))
    }

    func testBlackoutBacksOffRTOAndRecovers() {
        // 500 kB/s: about a third of the frames are still unsent when the link goes dark.
        var forward = SimulatedLink(delay: 20 * Self.ms, jitter: 0, lossRate: 0, bytesPerSecond: 500_000,
                                    queueLimit: 1000, seed: 3)
        var backward = SimulatedLink(delay: 20 * Self.ms, jitter: 0, lossRate: 0, bytesPerSecond: 500_000,
                                     queueLimit: 1000, seed: 4)
        let start = WireDuration.seconds(1), end = WireDuration.seconds(60)
        let out = simulate(total: 3000, forward: &forward, backward: &backward,
                           timeLimit: WireDuration.seconds(600), blackout: (start, end))
        XCTAssertEqual(out.delivered, 3000, "transfer completes after the blackout")
        XCTAssertGreaterThan(out.finishedAt, end)
        XCTAssertGreaterThanOrEqual(out.txStats.timeouts, 5)
        // RTO doubles on each timeout up to the 10 s cap.
        let rtos = out.timeoutRTOs
        XCTAssertGreaterThanOrEqual(rtos.count, 5)
        for (a, b) in zip(rtos, rtos.dropFirst()) {
            XCTAssertTrue(b == min(a * 2, WireDuration.seconds(10)), "RTO \(a) then \(b)")
        }
        XCTAssertEqual(rtos.last, WireDuration.seconds(10))
        // After recovery a fresh RTT sample brings RTO back down.
        XCTAssertLessThan(out.txStats.rto, WireDuration.seconds(1))
        print("blackout: finished at \(Double(out.finishedAt) / 1e9) s; timeouts \(out.txStats.timeouts), " +
              "RTOs \(rtos.map { $0 / Self.ms }) ms, retransmits \(out.txStats.retransmits)")
        // Recovery happens within one capped RTO of the blackout's end.
        XCTAssertLessThan(out.finishedAt, end + WireDuration.seconds(10) + WireDuration.seconds(5))
    }

    func testSequenceNumbersWrapAroundTwoToThe32() throws {
        // Start 1000 below 2^32 with small rings and heavy loss: seqs, SACK blocks and the rings all
        // cross the wrap (RFC 1982 arithmetic).
        var config = ReliableChannel.Configuration()
        config.sendBufferSegments = 64
        config.receiveBufferSegments = 64
        var forward = SimulatedLink(delay: 5 * Self.ms, jitter: 1 * Self.ms, lossRate: 0.05,
                                    bytesPerSecond: 50_000_000, queueLimit: 1000, seed: 9)
        var backward = SimulatedLink(delay: 5 * Self.ms, jitter: 1 * Self.ms, lossRate: 0.05,
                                     bytesPerSecond: 50_000_000, queueLimit: 1000, seed: 10)
        let out = simulate(total: 3000, forward: &forward, backward: &backward, config: config,
                           timeLimit: WireDuration.seconds(600), initialSequence: UInt32.max - 1000)
        XCTAssertEqual(out.delivered, 3000)
        XCTAssertLessThanOrEqual(out.maxQueued, 64)
        XCTAssertGreaterThan(out.txStats.retransmits, 0)
    }
}
