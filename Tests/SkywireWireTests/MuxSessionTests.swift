import XCTest
@testable import SkywireWire

/// Two sessions wired back to back; every frame goes through encode and decode.
final class MuxPair {
    typealias Session = MuxSession<ArraySlice<UInt8>>
    typealias Event = MuxEvent<ArraySlice<UInt8>>

    let a: Session
    let b: Session
    var eventsA: [Event] = []
    var eventsB: [Event] = []
    var framesAtoB: [MuxFrame<ArraySlice<UInt8>>] = []
    var framesBtoA: [MuxFrame<ArraySlice<UInt8>>] = []

    init(window: UInt32 = 64 * 1024, maxDataPayload: Int = 1000, sendBufferLimit: Int = 16 * 1024,
         maxStreamsB: Int = 1024) {
        var ca = MuxSession<ArraySlice<UInt8>>.Configuration(isInitiator: true, initialWindow: window,
                                                             maxDataPayload: maxDataPayload)
        ca.sendBufferLimit = sendBufferLimit
        var cb = MuxSession<ArraySlice<UInt8>>.Configuration(isInitiator: false, initialWindow: window,
                                                             maxStreams: maxStreamsB, maxDataPayload: maxDataPayload)
        cb.sendBufferLimit = sendBufferLimit
        a = Session(configuration: ca)
        b = Session(configuration: cb)
    }

    /// Moves frames both ways until both sides are quiet; collects events.
    func pump() {
        var rounds = 0
        while (a.hasOutgoingFrames || b.hasOutgoingFrames) && rounds < 1000 {
            rounds += 1
            a.drainOutgoing { frame in
                framesAtoB.append(frame)
                let bytes = frame.encoded
                bytes.withUnsafeBytes { raw in b.receive(encoded: raw) { bytes[$0] } }
            }
            b.drainOutgoing { frame in
                framesBtoA.append(frame)
                let bytes = frame.encoded
                bytes.withUnsafeBytes { raw in a.receive(encoded: raw) { bytes[$0] } }
            }
        }
        eventsA += a.takeEvents()
        eventsB += b.takeEvents()
    }

    /// Opens a stream from A to B and accepts it.
    func openAccepted(port: UInt16 = 80) throws -> MuxStreamID {
        let id = try a.openStream(destinationPort: port, sourcePort: 40000)
        pump()
        try b.accept(id)
        pump()
        return id
    }

    static func dataBytes(_ events: [Event], _ id: MuxStreamID) -> [UInt8] {
        var out: [UInt8] = []
        for case .data(let sid, let payload) in events where sid == id { out += payload }
        return out
    }
}

final class MuxSessionTests: XCTestCase {
    typealias Event = MuxPair.Event

    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(seed)) }
    }

    func testOpenAcceptAndIdParity() throws {
        let p = MuxPair()
        let s1 = try p.a.openStream(destinationPort: 80, sourcePort: 1000)
        let s3 = try p.a.openStream(destinationPort: 81, sourcePort: 1001)
        let s2 = try p.b.openStream(destinationPort: 22, sourcePort: 2000)
        XCTAssertEqual([s1, s3, s2].map(\.rawValue), [1, 3, 2], "odd for the initiator, even for the responder")
        p.pump()
        XCTAssertEqual(p.eventsB, [.streamOpened(s1, destinationPort: 80, sourcePort: 1000),
                                   .streamOpened(s3, destinationPort: 81, sourcePort: 1001)])
        XCTAssertEqual(p.eventsA, [.streamOpened(s2, destinationPort: 22, sourcePort: 2000)])
        XCTAssertEqual(p.framesAtoB.first, .open(streamID: s1, destinationPort: 80, sourcePort: 1000,
                                                 initialWindow: 64 * 1024))
        try p.b.accept(s1)
        try p.a.accept(s2)
        p.pump()
        XCTAssertTrue(p.eventsA.contains(.openAccepted(s1)))
        XCTAssertTrue(p.eventsB.contains(.openAccepted(s2)))
        XCTAssertEqual(p.a.info(s1)?.phase, .open)
        XCTAssertEqual(p.a.info(s3)?.phase, .opening)
        XCTAssertEqual(p.b.info(s3)?.phase, .awaitingAccept)
        XCTAssertThrowsError(try p.b.accept(s1)) { XCTAssertEqual($0 as? MuxSessionError, .notAwaitingAccept(s1)) }
        XCTAssertThrowsError(try p.b.write(s3, [1])) { XCTAssertEqual($0 as? MuxSessionError, .notAccepted(s3)) }
    }

    func testRejectRemovesStreamOnBothSides() throws {
        let p = MuxPair()
        let id = try p.a.openStream(destinationPort: 9, sourcePort: 1)
        p.pump()
        try p.b.reject(id, code: .noSuchPort, reason: "nothing on port 9")
        p.pump()
        XCTAssertEqual(p.eventsA, [.openRejected(id, code: .noSuchPort, reason: "nothing on port 9")])
        XCTAssertNil(p.a.info(id))
        XCTAssertNil(p.b.info(id))
        XCTAssertEqual(p.framesBtoA, [.openReject(streamID: id, code: .noSuchPort, reason: "nothing on port 9")])
    }

    func testTooManyStreamsIsRejectedWithCode4() throws {
        let p = MuxPair(maxStreamsB: 2)
        let ids = try (0..<3).map { _ in try p.a.openStream(destinationPort: 80, sourcePort: 1) }
        p.pump()
        XCTAssertEqual(p.eventsB.count, 2)
        XCTAssertTrue(p.eventsA.contains(.openRejected(ids[2], code: .tooManyStreams, reason: "too many streams")))
        XCTAssertEqual(p.b.streamCount, 2)
        XCTAssertThrowsError(try p.b.openStream(destinationPort: 1, sourcePort: 1)) {
            XCTAssertEqual($0 as? MuxSessionError, .tooManyStreams(limit: 2))
        }
    }

    func testBulkDataBothWaysWithFlowControl() throws {
        let p = MuxPair()
        let id = try p.openAccepted()
        let total = 300 * 1024
        let fromA = Self.pattern(total, seed: 1), fromB = Self.pattern(total, seed: 2)
        var offsetA = 0, offsetB = 0
        var rounds = 0
        while (offsetA < total || offsetB < total) && rounds < 10_000 {
            rounds += 1
            if offsetA < total { offsetA += try p.a.write(id, fromA[offsetA...]) }
            if offsetB < total { offsetB += try p.b.write(id, fromB[offsetB...]) }
            XCTAssertLessThanOrEqual(p.a.info(id)?.bufferedBytes ?? 0, 16 * 1024)
            p.pump()
            // Both apps consume everything they were given.
            p.b.consumed(id, Int(p.b.info(id)?.unconsumedBytes ?? 0))
            p.a.consumed(id, Int(p.a.info(id)?.unconsumedBytes ?? 0))
            p.pump()
        }
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, id), fromA)
        XCTAssertEqual(MuxPair.dataBytes(p.eventsA, id), fromB)
        // DATA frames never exceed maxDataPayload; every write beyond the window was limited.
        for case .data(_, let payload) in p.framesAtoB { XCTAssertLessThanOrEqual(payload.count, 1000) }
        XCTAssertTrue(p.eventsA.contains(.writable(id)), "writes were limited and resumed")
        // WINDOW increments are at least half the window (the batching rule) and never exceed it.
        let increments = p.framesBtoA.compactMap { frame -> UInt32? in
            if case .window(_, let inc) = frame { return inc }
            return nil
        }
        XCTAssertFalse(increments.isEmpty)
        for inc in increments { XCTAssertTrue((32 * 1024...64 * 1024).contains(inc), "\(inc)") }
    }

    func testWindowBatchingRule() throws {
        let w = MuxFrameLayout.earlyDataLimit   // the smallest window a session announces
        let p = MuxPair(window: UInt32(w), maxDataPayload: 1000, sendBufferLimit: 0)
        let id = try p.openAccepted()
        XCTAssertEqual(try p.a.write(id, Self.pattern(w + w / 2, seed: 0)[...]), w, "window w, no local buffer")
        p.pump()
        XCTAssertEqual(try p.a.write(id, [1][...]), 0, "window exhausted")
        p.b.consumed(id, w / 2 - 1)
        p.pump()
        XCTAssertFalse(p.framesBtoA.contains { if case .window = $0 { return true } else { return false } })
        p.b.consumed(id, 1)
        p.pump()
        XCTAssertEqual(p.framesBtoA.last, .window(streamID: id, increment: UInt32(w / 2)))
        XCTAssertEqual(p.eventsA.last, .writable(id))
        XCTAssertEqual(p.a.info(id)?.sendCredit, UInt64(w / 2))
        p.b.consumed(id, 100_000)   // more than delivered: clamped
        p.pump()
        XCTAssertEqual(p.framesBtoA.last, .window(streamID: id, increment: UInt32(w / 2)))
        XCTAssertEqual(p.a.info(id)?.sendCredit, UInt64(w))
    }

    func testSlowReaderStallsOnlyItsOwnStream() throws {
        let p = MuxPair(window: 32 * 1024, maxDataPayload: 1000, sendBufferLimit: 8 * 1024)
        let slow = try p.openAccepted(port: 1)
        let fast = try p.openAccepted(port: 2)
        let chunk = Self.pattern(4096, seed: 3)[...]
        var fastSent = 0, slowSent = 0
        for _ in 0..<500 {
            slowSent += try p.a.write(slow, chunk)
            fastSent += try p.a.write(fast, chunk)
            let info = try XCTUnwrap(p.a.info(slow))
            XCTAssertLessThanOrEqual(info.bufferedBytes, 8 * 1024, "the send buffer cap holds")
            p.pump()
            p.b.consumed(fast, Int(p.b.info(fast)?.unconsumedBytes ?? 0))   // only `fast` is read
            p.pump()
        }
        XCTAssertEqual(slowSent, 32 * 1024 + 8 * 1024, "window plus local buffer, then stalled")
        XCTAssertEqual(try p.a.write(slow, chunk), 0)
        XCTAssertGreaterThanOrEqual(fastSent, 500 * 4096 - 8 * 1024, "the other stream kept flowing")
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, slow).count, 32 * 1024, "receiver holds only the granted window")
        XCTAssertEqual(p.b.info(slow)?.receiveCredit, 0)
        // The reader catches up: the stalled stream resumes.
        XCTAssertFalse(p.eventsA.contains(.writable(slow)))
        p.b.consumed(slow, 32 * 1024)
        p.pump()
        XCTAssertTrue(p.eventsA.contains(.writable(slow)))
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, slow).count, 32 * 1024 + 8 * 1024)
    }

    func testEarlyDataGoesWithOpenAndTheRestAfterOpenOK() throws {
        let p = MuxPair(sendBufferLimit: 4096)
        let id = try p.a.openStream(destinationPort: 80, sourcePort: 1)
        let payload = Self.pattern(25000, seed: 4)
        // Capacity before OPEN_OK: the early allowance (16 KiB) plus the send buffer (4 KiB).
        let early = MuxFrameLayout.earlyDataLimit
        XCTAssertEqual(try p.a.write(id, payload[...]), early + 4096)
        try p.a.finish(id)
        p.pump()
        XCTAssertEqual(p.framesAtoB.first, .open(streamID: id, destinationPort: 80, sourcePort: 1,
                                                 initialWindow: 64 * 1024))
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, id), Array(payload[0..<early]), "early data right behind OPEN")
        XCTAssertFalse(p.eventsB.contains(.remoteFinished(id)), "no FIN before OPEN_OK")
        XCTAssertEqual(p.b.info(id)?.receiveCredit, UInt64(64 * 1024 - early))
        try p.b.accept(id)
        p.pump()
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, id), Array(payload[0..<(early + 4096)]))
        XCTAssertEqual(p.eventsB.last, .remoteFinished(id), "FIN follows the buffered data")
        // The announced window counted the early bytes: credit is window - everything sent.
        XCTAssertEqual(p.a.info(id)?.sendCredit, UInt64(64 * 1024 - early - 4096))
    }

    func testDeferredOpenLeavesWithTheFirstDataInIdOrder() throws {
        let p = MuxPair()
        let s1 = try p.a.openStream(destinationPort: 3, sourcePort: 1, deferOpen: true)
        let s3 = try p.a.openStream(destinationPort: 3, sourcePort: 2, deferOpen: true)
        XCTAssertFalse(p.a.hasOutgoingFrames, "nothing before the first write")
        // Stream 3 writes first: stream 1's OPEN must still precede it (ids only increase on the wire).
        XCTAssertEqual(try p.a.write(s3, [7, 7]), 2)
        XCTAssertEqual(p.a.takeOutgoingFrames(), [
            .open(streamID: s1, destinationPort: 3, sourcePort: 1, initialWindow: 64 * 1024),
            .open(streamID: s3, destinationPort: 3, sourcePort: 2, initialWindow: 64 * 1024),
            .data(streamID: s3, payload: [7, 7]),
        ])
        // A later write on stream 1 sends only its DATA.
        XCTAssertEqual(try p.a.write(s1, [1]), 1)
        XCTAssertEqual(p.a.takeOutgoingFrames(), [.data(streamID: s1, payload: [1])])
    }

    func testDeferredOpenResetBeforeAnyWriteSendsNothing() throws {
        let p = MuxPair()
        let id = try p.a.openStream(destinationPort: 3, sourcePort: 1, deferOpen: true)
        p.a.reset(id, code: .appClosed)
        XCTAssertFalse(p.a.hasOutgoingFrames)
        XCTAssertNil(p.a.info(id))
        // A normal open afterwards is not preceded by the forgotten one.
        let next = try p.a.openStream(destinationPort: 4, sourcePort: 1)
        XCTAssertEqual(p.a.takeOutgoingFrames(), [.open(streamID: next, destinationPort: 4, sourcePort: 1,
                                                        initialWindow: 64 * 1024)])
    }

    func testNormalOpenFlushesEarlierDeferredOpens() throws {
        let p = MuxPair()
        let deferred = try p.a.openStream(destinationPort: 3, sourcePort: 1, deferOpen: true)
        let normal = try p.a.openStream(destinationPort: 4, sourcePort: 1)
        p.pump()
        XCTAssertEqual(p.eventsB, [.streamOpened(deferred, destinationPort: 3, sourcePort: 1),
                                   .streamOpened(normal, destinationPort: 4, sourcePort: 1)])
        XCTAssertFalse(p.eventsB.contains { if case .protocolError = $0 { return true } else { return false } })
    }

    func testEarlyDataBeyondTheAllowanceResetsWithCode3() {
        let p = MuxPair()
        let id = MuxStreamID(7)
        p.b.receive(.open(streamID: id, destinationPort: 1, sourcePort: 1, initialWindow: 65536))
        p.b.receive(.data(streamID: id, payload: Array(repeating: 1, count: MuxFrameLayout.earlyDataLimit)[...]))
        XCTAssertEqual(p.b.info(id)?.phase, .awaitingAccept)
        p.b.receive(.data(streamID: id, payload: [2]))
        XCTAssertNil(p.b.info(id))
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.reset(streamID: id, code: .protocolError)])
        let errors = p.b.takeEvents().compactMap { e -> String? in
            if case .protocolError(let s) = e { return s }
            return nil
        }
        XCTAssertEqual(errors.count, 1)
        XCTAssertTrue(errors[0].contains("early DATA"), "\(errors)")
    }

    func testEarlyDataOfARejectedStreamIsDropped() throws {
        let p = MuxPair()
        let id = try p.a.openStream(destinationPort: 9, sourcePort: 1)
        XCTAssertEqual(try p.a.write(id, [1, 2, 3]), 3)
        p.pump()
        try p.b.reject(id, code: .noSuchPort)
        p.pump()
        XCTAssertEqual(p.eventsA, [.openRejected(id, code: .noSuchPort, reason: "")])
        XCTAssertNil(p.a.info(id))
        XCTAssertNil(p.b.info(id))
    }

    func testDeferredAnswerLeavesRightBeforeTheFirstData() throws {
        let p = MuxPair()
        let id = MuxStreamID(1)
        p.b.receive(.open(streamID: id, destinationPort: 3, sourcePort: 9, initialWindow: 65536))
        p.b.receive(.data(streamID: id, payload: [5, 1, 0]))
        try p.b.accept(id, deferAnswer: true)
        XCTAssertFalse(p.b.hasOutgoingFrames, "no OPEN_OK on its own")
        XCTAssertEqual(p.b.info(id)?.phase, .open)
        // More early data is still taken meanwhile.
        p.b.receive(.data(streamID: id, payload: [5, 1, 0, 1]))
        XCTAssertEqual(try p.b.write(id, [5, 0]), 2)
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.openOK(streamID: id, initialWindow: 64 * 1024),
                                                  .data(streamID: id, payload: [5, 0])])
        p.b.sendDeferredAnswer(id)
        XCTAssertFalse(p.b.hasOutgoingFrames, "answered once")
    }

    func testDeferredAnswerGoesOnRequestOrWithFINOrWINDOW() throws {
        let p = MuxPair()
        for id in [MuxStreamID(1), MuxStreamID(3), MuxStreamID(5)] {
            p.b.receive(.open(streamID: id, destinationPort: 3, sourcePort: 9, initialWindow: 65536))
            try p.b.accept(id, deferAnswer: true)
        }
        XCTAssertFalse(p.b.hasOutgoingFrames)
        p.b.sendDeferredAnswer(MuxStreamID(1))
        try p.b.finish(MuxStreamID(3))
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.openOK(streamID: MuxStreamID(1), initialWindow: 64 * 1024),
                                                  .openOK(streamID: MuxStreamID(3), initialWindow: 64 * 1024),
                                                  .fin(streamID: MuxStreamID(3))])
        let id = MuxStreamID(5)
        p.b.receive(.data(streamID: id, payload: Array(repeating: 1, count: 1000)[...]))
        p.b.consumed(id, 1000)
        XCTAssertEqual(p.b.takeOutgoingFrames(), [], "below the WINDOW threshold: nothing yet")
        p.b.sendDeferredAnswer(id)
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.openOK(streamID: id, initialWindow: 64 * 1024)])

        // Returning window (the app consumed the whole early allowance) answers first too.
        let small = MuxPair(window: 32 * 1024)
        let sid = MuxStreamID(1)
        small.b.receive(.open(streamID: sid, destinationPort: 3, sourcePort: 9, initialWindow: 65536))
        try small.b.accept(sid, deferAnswer: true)
        let early = MuxFrameLayout.earlyDataLimit
        small.b.receive(.data(streamID: sid, payload: Array(repeating: 1, count: early)[...]))
        small.b.consumed(sid, early)
        XCTAssertEqual(small.b.takeOutgoingFrames(), [.openOK(streamID: sid, initialWindow: 32 * 1024),
                                                      .window(streamID: sid, increment: UInt32(early))])
    }

    func testDeferredAnswerStillLimitsEarlyData() throws {
        let p = MuxPair()
        let id = MuxStreamID(1)
        p.b.receive(.open(streamID: id, destinationPort: 3, sourcePort: 9, initialWindow: 65536))
        try p.b.accept(id, deferAnswer: true)
        p.b.receive(.data(streamID: id, payload: Array(repeating: 1, count: MuxFrameLayout.earlyDataLimit)[...]))
        p.b.receive(.data(streamID: id, payload: [2]))
        XCTAssertNil(p.b.info(id), "the peer cannot have had more credit than the early allowance")
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.reset(streamID: id, code: .protocolError)])
    }

    func testDeferredAnswerThroughAPairCompletesTheOpen() throws {
        let p = MuxPair()
        let id = try p.a.openStream(destinationPort: 3, sourcePort: 1, deferOpen: true)
        XCTAssertEqual(try p.a.write(id, [5, 1, 0, 5, 1, 0, 1]), 7)
        p.pump()
        try p.b.accept(id, deferAnswer: true)
        p.pump()
        XCTAssertFalse(p.eventsA.contains(.openAccepted(id)))
        XCTAssertEqual(try p.b.write(id, [5, 0, 5, 0]), 4)
        p.pump()
        XCTAssertTrue(p.eventsA.contains(.openAccepted(id)))
        XCTAssertEqual(MuxPair.dataBytes(p.eventsA, id), [5, 0, 5, 0])
        XCTAssertEqual(p.a.info(id)?.sendCredit, UInt64(64 * 1024 - 7))
    }

    /// fuzz-mux-session reproducer (FuzzTesting/corpus/fuzz-mux-session/regression-window-before-open-ok):
    /// early data consumed before the OPEN is answered must not send WINDOW ahead of OPEN_OK (the opener
    /// resets the stream: "WINDOW before OPEN_OK"); the credit leaves right after the OPEN_OK instead, so
    /// an opener whose window the early data used up can send again.
    func testCreditConsumedBeforeTheAnswerLeavesAfterOpenOK() throws {
        let window = MuxFrameLayout.earlyDataLimit
        let p = MuxPair(window: UInt32(window))
        let id = try p.a.openStream(destinationPort: 3, sourcePort: 1)
        XCTAssertEqual(try p.a.write(id, Array(repeating: 7, count: window)[...]), window)
        p.pump()
        XCTAssertEqual(MuxPair.dataBytes(p.eventsB, id).count, window)
        p.b.consumed(id, window)
        XCTAssertFalse(p.b.hasOutgoingFrames, "no WINDOW for a stream not answered yet")
        try p.b.accept(id)
        XCTAssertEqual(p.b.takeOutgoingFrames().map(\.type), [.openOK, .window])
        let q = MuxPair(window: UInt32(window))
        let id2 = try q.a.openStream(destinationPort: 3, sourcePort: 1)
        XCTAssertEqual(try q.a.write(id2, Array(repeating: 7, count: window)[...]), window)
        q.pump()
        q.b.consumed(id2, window)
        try q.b.accept(id2)
        q.pump()
        XCTAssertEqual(q.a.info(id2)?.phase, .open)
        XCTAssertEqual(try q.a.write(id2, [1, 2, 3]), 3)
        q.pump()
        XCTAssertEqual(MuxPair.dataBytes(q.eventsB, id2).suffix(3), [1, 2, 3])
        XCTAssertFalse((q.eventsA + q.eventsB).contains { if case .protocolError = $0 { return true } else { return false } })
    }

    func testSmallConfiguredWindowIsRaisedToTheEarlyAllowance() {
        let s = MuxSession<ArraySlice<UInt8>>(isInitiator: true, initialWindow: 1024)
        XCTAssertEqual(s.configuration.initialWindow, UInt32(MuxFrameLayout.earlyDataLimit))
    }

    func testHalfCloseBothWays() throws {
        let p = MuxPair()
        let id = try p.openAccepted()
        XCTAssertEqual(try p.a.write(id, [1, 2, 3]), 3)
        try p.a.finish(id)
        p.pump()
        XCTAssertEqual(Array(p.eventsB.suffix(2)), [.data(id, [1, 2, 3]), .remoteFinished(id)])
        XCTAssertThrowsError(try p.a.write(id, [4])) { XCTAssertEqual($0 as? MuxSessionError, .alreadyFinished(id)) }
        // The other direction still works.
        XCTAssertEqual(try p.b.write(id, [9, 8]), 2)
        p.pump()
        XCTAssertEqual(MuxPair.dataBytes(p.eventsA, id), [9, 8])
        try p.b.finish(id)
        p.pump()
        XCTAssertEqual(Array(p.eventsA.suffix(2)), [.remoteFinished(id), .streamClosed(id)])
        XCTAssertEqual(p.eventsB.last, .streamClosed(id))
        XCTAssertEqual(p.a.streamCount, 0)
        XCTAssertEqual(p.b.streamCount, 0)
        // A late WINDOW for the closed stream is dropped quietly.
        p.a.receive(.window(streamID: id, increment: 10))
        XCTAssertEqual(p.a.lateFrames, 1)
        XCTAssertTrue(p.a.takeEvents().isEmpty)
    }

    func testResetAndLateFrames() throws {
        let p = MuxPair()
        let id = try p.openAccepted()
        _ = try p.b.write(id, [1, 2, 3])      // in flight when A resets
        p.a.reset(id, code: .appClosed)
        p.pump()
        XCTAssertTrue(p.eventsB.contains(.reset(id, code: .appClosed, byPeer: true)))
        XCTAssertNil(p.b.info(id))
        XCTAssertFalse(p.eventsA.contains { if case .protocolError = $0 { return true } else { return false } },
                       "late DATA after RESET is not an error")
        XCTAssertEqual(p.a.lateFrames, 1)
        XCTAssertThrowsError(try p.a.write(id, [1])) { XCTAssertEqual($0 as? MuxSessionError, .unknownStream(id)) }
    }

    func testDataBeyondWindowResetsWithCode3() throws {
        let window = MuxFrameLayout.earlyDataLimit   // the smallest window a session announces
        let p = MuxPair(window: UInt32(window))
        let id = try p.openAccepted()
        p.b.receive(.data(streamID: id, payload: ArraySlice(Self.pattern(window - 40, seed: 0))))
        p.b.receive(.data(streamID: id, payload: ArraySlice(Self.pattern(41, seed: 0))))
        let events = p.b.takeEvents()
        XCTAssertEqual(events.count, 3)
        XCTAssertEqual(events[1], .reset(id, code: .protocolError, byPeer: false))
        guard case .protocolError(let text) = events[2] else { return XCTFail("no protocol error") }
        XCTAssertTrue(text.contains("exceeds the window"), text)
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.reset(streamID: id, code: .protocolError)])
        XCTAssertNil(p.b.info(id))
    }

    func testProtocolViolations() throws {
        let p = MuxPair()
        // B is the responder: peer (A) streams are odd. An even OPEN from A is a parity violation.
        p.b.receive(.open(streamID: MuxStreamID(2), destinationPort: 1, sourcePort: 1, initialWindow: 10))
        p.a.receive(.open(streamID: MuxStreamID(5), destinationPort: 1, sourcePort: 1, initialWindow: 10))
        // Reuse: an id not above the highest seen.
        p.b.receive(.open(streamID: MuxStreamID(7), destinationPort: 1, sourcePort: 1, initialWindow: 10))
        p.b.receive(.open(streamID: MuxStreamID(5), destinationPort: 1, sourcePort: 1, initialWindow: 10))
        // Frames for streams that never existed.
        p.b.receive(.data(streamID: MuxStreamID(99), payload: [1]))
        p.b.receive(.fin(streamID: MuxStreamID(100)))
        // FIN before OPEN_OK on a stream awaiting our answer (early DATA is allowed, FIN is not).
        p.b.receive(.fin(streamID: MuxStreamID(7)))
        let errorsB = p.b.takeEvents().compactMap { e -> String? in
            if case .protocolError(let s) = e { return s }
            return nil
        }
        XCTAssertEqual(errorsB.count, 5, "\(errorsB)")
        XCTAssertTrue(errorsB[0].contains("parity"))
        XCTAssertTrue(errorsB[1].contains("reuses"))
        XCTAssertTrue(errorsB[2].contains("never opened"))
        XCTAssertTrue(errorsB[4].contains("before OPEN_OK"))
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.reset(streamID: MuxStreamID(7), code: .protocolError)])
        let errorsA = p.a.takeEvents()
        XCTAssertEqual(errorsA.count, 1)
        // Malformed bytes count too.
        [UInt8]([0x04, 0, 0, 0, 1]).withUnsafeBytes { raw in p.a.receive(encoded: raw) { _ in [] } }
        guard case .protocolError(let text)? = p.a.takeEvents().first else { return XCTFail("no error") }
        XCTAssertTrue(text.contains("empty payload"), text)
    }

    func testRepeatedProtocolErrorsCloseTheConnection() {
        let p = MuxPair()
        for i in 0..<17 { p.b.receive(.fin(streamID: MuxStreamID(UInt32(1001 + 2 * i)))) }
        XCTAssertTrue(p.b.isClosed)
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.close(code: .protocolError, reason: "too many protocol errors")])
        XCTAssertEqual(p.b.takeEvents().last, .closed(code: .protocolError, reason: "too many protocol errors", byPeer: false))
    }

    func testDatagramsAndPingPong() throws {
        let p = MuxPair()
        try p.a.sendDatagram(destinationPort: 53, sourcePort: 5353, payload: [0x45, 0, 0, 20])
        try p.b.sendDatagram(destinationPort: 7, sourcePort: 8, payload: [])
        try p.a.ping(opaque: 0xDEAD_BEEF)
        p.pump()
        XCTAssertEqual(p.eventsB, [.datagram(destinationPort: 53, sourcePort: 5353, payload: [0x45, 0, 0, 20])])
        XCTAssertEqual(p.eventsA, [.datagram(destinationPort: 7, sourcePort: 8, payload: []),
                                   .pong(opaque: 0xDEAD_BEEF)])
        XCTAssertEqual(p.framesBtoA.last, .pong(opaque: 0xDEAD_BEEF), "PING is answered automatically")
    }

    func testCloseAllAndPeerClose() throws {
        let p = MuxPair()
        let s1 = try p.openAccepted()
        let s3 = try p.openAccepted()
        p.eventsA.removeAll()
        p.eventsB.removeAll()
        p.a.closeAll(code: .transportLost)
        XCTAssertEqual(p.a.takeEvents(), [.reset(s1, code: .transportLost, byPeer: false),
                                          .reset(s3, code: .transportLost, byPeer: false)])
        XCTAssertFalse(p.a.hasOutgoingFrames, "nothing is sent on a lost transport")
        XCTAssertThrowsError(try p.a.openStream(destinationPort: 1, sourcePort: 1)) {
            XCTAssertEqual($0 as? MuxSessionError, .sessionClosed)
        }
        XCTAssertThrowsError(try p.a.ping(opaque: 1))
        // B learns of it by CLOSE in the other scenario: an orderly close from B's side.
        p.b.close(code: .normal, reason: "shutting down")
        XCTAssertEqual(p.b.takeOutgoingFrames(), [.close(code: .normal, reason: "shutting down")])
        let q = MuxPair()
        let id = try q.openAccepted()
        q.eventsA.removeAll()
        q.b.close(code: .normal, reason: "bye")
        q.pump()
        XCTAssertEqual(q.eventsA, [.reset(id, code: .transportLost, byPeer: true),
                                   .closed(code: .normal, reason: "bye", byPeer: true)])
        XCTAssertTrue(q.a.isClosed)
    }

    func testDrainingBatchesAndReusesOutput() throws {
        let p = MuxPair()
        let id = try p.openAccepted()
        _ = try p.a.write(id, Self.pattern(3500, seed: 5)[...])
        var frames: [MuxFrame<ArraySlice<UInt8>>] = []
        p.a.drainOutgoing { frames.append($0) }
        XCTAssertEqual(frames.count, 4, "3500 bytes in DATA frames of at most 1000")
        XCTAssertFalse(p.a.hasOutgoingFrames)
        guard case .data(_, let first) = frames[0] else { return XCTFail("not DATA") }
        XCTAssertEqual(first.count, 1000)
    }

    func testDefaultStreamLimitRefusesTheOpenBeyondItWithCode4AndLaterStreamsGetTheReducedWindow() {
        typealias S = MuxSession<ArraySlice<UInt8>>
        let b = S(isInitiator: false)
        XCTAssertEqual(b.configuration.maxStreams, 512)
        for i in 0..<(S.defaultMaxStreams + 1) {
            b.receive(.open(streamID: MuxStreamID(UInt32(2 * i + 1)), destinationPort: 7, sourcePort: 1, initialWindow: 1024))
        }
        XCTAssertEqual(b.streamCount, 512)
        XCTAssertEqual(b.refusedOpens, 1)
        let rejects = b.takeOutgoingFrames().filter {
            if case .openReject(_, let code, _) = $0 { return code == .tooManyStreams } else { return false }
        }
        XCTAssertEqual(rejects.count, 1)
        // The first 64 accepted streams announce 256 KiB, the others 64 KiB.
        for i in 0..<S.defaultMaxStreams { try? b.accept(MuxStreamID(UInt32(2 * i + 1))) }
        let windows = b.takeOutgoingFrames().compactMap { frame -> UInt32? in
            if case .openOK(_, let w) = frame { return w } else { return nil }
        }
        XCTAssertEqual(windows.count, 512)
        XCTAssertEqual(windows.prefix(64).allSatisfy { $0 == 256 * 1024 }, true)
        XCTAssertEqual(windows.dropFirst(64).allSatisfy { $0 == 64 * 1024 }, true)
        XCTAssertEqual(S.worstCaseReceiveBytes(b.configuration), 64 * 256 * 1024 + 448 * 64 * 1024)   // 44 MiB
    }

    func testReducedWindowStreamReturnsCreditAtHalfItsWindow() {
        var cb = MuxSession<ArraySlice<UInt8>>.Configuration(isInitiator: false, initialWindow: 256 * 1024)
        cb.fullWindowStreams = 0
        let b = MuxSession<ArraySlice<UInt8>>(configuration: cb)
        let id = MuxStreamID(1)
        b.receive(.open(streamID: id, destinationPort: 7, sourcePort: 1, initialWindow: 1024))
        try? b.accept(id)
        XCTAssertEqual(b.takeOutgoingFrames().first, .openOK(streamID: id, initialWindow: 64 * 1024))
        b.receive(.data(streamID: id, payload: ArraySlice(repeating: 1, count: 32 * 1024)))
        b.consumed(id, 32 * 1024)
        XCTAssertEqual(b.takeOutgoingFrames(), [.window(streamID: id, increment: 32 * 1024)])
    }

}
