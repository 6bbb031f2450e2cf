import Foundation
import Logging
import NIOCore
import NIOEmbedded
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport
import SkywireWire

/// A `FrameLink` test double: frames sent on one end are queued for the other end, and
/// delivered when the test calls `deliver()`, so the test controls timing.
final class LoopbackLink: FrameLink {
    let counters = LinkCounters()
    var maxDataPayload: Int
    var isWritable = true
    weak var peer: LoopbackLink?
    var connection: MuxConnection?
    var queue: [ByteBuffer] = []
    var closedReason: String?
    var framesSent = 0

    init(maxDataPayload: Int = 16 * 1024) { self.maxDataPayload = maxDataPayload }

    func send(frame: ByteBuffer, reliable: Bool) {
        framesSent += 1
        counters.addSent(frame.readableBytes)
        peer?.queue.append(frame)
    }

    func flush() {}

    func close(reason: String) {
        guard closedReason == nil else { return }
        closedReason = reason
        connection?.linkClosed(reason: reason)
        peer?.close(reason: "peer closed")
    }

    /// Hands queued frames to this end's connection; returns how many.
    @discardableResult
    func deliver() -> Int {
        let frames = queue
        queue.removeAll()
        for f in frames {
            counters.addReceived(f.readableBytes)
            connection?.receive(frame: f)
        }
        return frames.count
    }
}

/// Routes streams to a closure and records datagrams.
final class TestRouter: AppRouter, @unchecked Sendable {
    // @unchecked Sendable: used on the single EmbeddedEventLoop thread only.
    var onStream: (AppStream, UInt16) -> AppStreamResetCode? = { _, _ in .noSuchPort }
    var datagrams: [(ByteBuffer, PublicKey, UInt16, UInt16)] = []

    func route(stream: AppStream, destinationPort: UInt16) -> AppStreamResetCode? {
        onStream(stream, destinationPort)
    }

    func route(datagram: ByteBuffer, from: PublicKey, destinationPort: UInt16, sourcePort: UInt16) {
        datagrams.append((datagram, from, destinationPort, sourcePort))
    }
}

/// Collects what a stream delivers.
final class Collector: AppStreamDelegate {
    var data = ByteBuffer()
    var finished = false
    var resetCode: AppStreamResetCode?
    var writabilityChanges = 0
    var echo = false

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        var d = data
        self.data.writeBuffer(&d)
        if echo { stream.write(data) }
    }
    func appStreamDidReceiveFinish(_ stream: AppStream) {
        finished = true
        if echo { stream.finish() }
    }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { resetCode = code }
    func appStreamWritabilityChanged(_ stream: AppStream) { writabilityChanges += 1 }
}

final class MuxConnectionTests: XCTestCase {
    var loop: EmbeddedEventLoop!
    var linkA: LoopbackLink!
    var linkB: LoopbackLink!
    var connA: MuxConnection!
    var connB: MuxConnection!
    var routerB: TestRouter!
    let keyA = KeyPair.generate().publicKey
    let keyB = KeyPair.generate().publicKey

    override func setUp() {
        loop = EmbeddedEventLoop()
        linkA = LoopbackLink()
        linkB = LoopbackLink()
        linkA.peer = linkB
        linkB.peer = linkA
        routerB = TestRouter()
        let logger = Logger(label: "test")
        connA = MuxConnection(eventLoop: loop, isInitiator: true, remote: keyB, link: linkA, router: TestRouter(), logger: logger)
        connB = MuxConnection(eventLoop: loop, isInitiator: false, remote: keyA, link: linkB, router: routerB, logger: logger)
        linkA.connection = connA
        linkB.connection = connB
    }

    override func tearDown() {
        connA.linkClosed(reason: "test over")
        connB.linkClosed(reason: "test over")
        try? loop.syncShutdownGracefully()
    }

    /// Runs the loop and shuttles frames until both directions are quiet (bounded).
    func pump(rounds: Int = 10_000) {
        for _ in 0..<rounds {
            loop.run()
            let moved = linkA.deliver() + linkB.deliver()
            loop.run()
            if moved == 0 && linkA.queue.isEmpty && linkB.queue.isEmpty { return }
        }
        XCTFail("links did not go quiet")
    }

    func open(port: UInt16 = 7) throws -> AppStream {
        let future = connA.openStream(destinationPort: port, sourcePort: 50000, timeout: .seconds(5))
        pump()
        return try future.wait()
    }

    func testStreamEchoesLargeDataIntactWithFlowControl() throws {
        let echo = Collector()
        echo.echo = true
        routerB.onStream = { stream, port in
            XCTAssertEqual(port, 7)
            stream.setDelegate(echo)
            return nil
        }
        let stream = try open()
        XCTAssertEqual(stream.remoteKeyHex, keyB.hex)
        let collector = Collector()
        stream.setDelegate(collector)
        var sent = ByteBuffer()
        for i in 0..<(3 * 1024 * 1024) { sent.writeInteger(UInt8(truncatingIfNeeded: i &* 7 ^ (i >> 9))) }
        var offset = 0
        while offset < sent.readableBytes {
            if stream.isWritable {
                let n = min(64 * 1024, sent.readableBytes - offset)
                stream.write(sent.getSlice(at: offset, length: n)!)
                offset += n
            }
            pump()
        }
        stream.finish()
        pump()
        XCTAssertEqual(collector.data, sent)
        XCTAssertTrue(collector.finished)
        XCTAssertTrue(echo.finished)
    }

    func testPausedReaderStallsOnlyItsStreamAndBoundsMemory() throws {
        var serverStreams: [AppStream] = []
        let slow = Collector(), fast = Collector()
        routerB.onStream = { stream, _ in
            stream.setDelegate(serverStreams.isEmpty ? slow : fast)
            if serverStreams.isEmpty { stream.setReadPaused(true) }
            serverStreams.append(stream)
            return nil
        }
        let s1 = try open(), s2 = try open()
        let chunk = ByteBuffer(repeating: 0xAB, count: 32 * 1024)
        var written1 = 0
        for _ in 0..<200 {
            if s1.isWritable { s1.write(chunk); written1 += chunk.readableBytes }
            s2.write(chunk)
            pump()
        }
        // The paused stream received nothing and its writer was stopped by back-pressure.
        XCTAssertEqual(slow.data.readableBytes, 0)
        XCTAssertFalse(s1.isWritable)
        XCTAssertLessThanOrEqual(written1, 1024 * 1024, "writer kept going without bound")
        XCTAssertEqual(fast.data.readableBytes, 200 * chunk.readableBytes)
        // Resuming delivers everything written so far.
        serverStreams[0].setReadPaused(false)
        pump()
        XCTAssertEqual(slow.data.readableBytes, written1)
    }

    func testRefusedPortFailsTheOpenWithItsCode() throws {
        routerB.onStream = { _, _ in .noSuchPort }
        let future = connA.openStream(destinationPort: 99, sourcePort: 1, timeout: .seconds(5))
        pump()
        XCTAssertThrowsError(try future.wait()) { error in
            XCTAssertEqual((error as? TransportError)?.streamCode, .noSuchPort)
        }
    }

    func testAppResetDuringAcceptIsSeenAsForbidden() throws {
        routerB.onStream = { stream, _ in
            stream.reset(.forbidden)
            return nil
        }
        let future = connA.openStream(destinationPort: 3, sourcePort: 1, timeout: .seconds(5))
        pump()
        XCTAssertThrowsError(try future.wait()) { error in
            XCTAssertEqual((error as? TransportError)?.streamCode, .forbidden)
        }
    }

    func testOptimisticOpenCarriesDataAndReportsRefusalAsReset() throws {
        let server = Collector()
        routerB.onStream = { stream, port in
            if port == 3 { return .forbidden }
            stream.setDelegate(server)
            return nil
        }
        let acceptedFuture = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(5),
                                              waitForAccept: false)
        loop.run()   // EmbeddedEventLoop: nothing runs until asked
        let accepted = try acceptedFuture.wait()
        accepted.write(ByteBuffer(string: "early"))
        pump()
        XCTAssertEqual(server.data, ByteBuffer(string: "early"))
        let refusedFuture = connA.openStream(destinationPort: 3, sourcePort: 1, timeout: .seconds(5),
                                             waitForAccept: false)
        loop.run()
        let refused = try refusedFuture.wait()
        let client = Collector()
        refused.setDelegate(client)
        refused.write(ByteBuffer(string: "never delivered"))
        pump()
        XCTAssertEqual(client.resetCode, .forbidden)
    }

    func testResetReachesTheOtherEnd() throws {
        let server = Collector()
        routerB.onStream = { stream, _ in stream.setDelegate(server); return nil }
        let stream = try open()
        stream.write(ByteBuffer(string: "hello"))
        pump()
        stream.reset(.appClosed)
        pump()
        XCTAssertEqual(server.data, ByteBuffer(string: "hello"))
        XCTAssertEqual(server.resetCode, .appClosed)
    }

    func testDatagramsAreRoutedWithPortsAndSender() {
        connA.sendDatagram(destinationPort: 44, sourcePort: 43, payload: ByteBuffer(string: "packet"))
        pump()
        XCTAssertEqual(routerB.datagrams.count, 1)
        XCTAssertEqual(routerB.datagrams.first?.0, ByteBuffer(string: "packet"))
        XCTAssertEqual(routerB.datagrams.first?.1, keyA)
        XCTAssertEqual(routerB.datagrams.first?.2, 44)
        XCTAssertEqual(routerB.datagrams.first?.3, 43)
    }

    func testLinkLossResetsStreamsAndFailsPendingOpens() throws {
        let server = Collector()
        routerB.onStream = { stream, _ in stream.setDelegate(server); return nil }
        let stream = try open()
        let client = Collector()
        stream.setDelegate(client)
        let pending = connA.openStream(destinationPort: 7, sourcePort: 2, timeout: .seconds(5))
        linkA.close(reason: "cable cut")
        loop.run()
        XCTAssertEqual(client.resetCode, .transportLost)
        XCTAssertEqual(server.resetCode, .transportLost)
        XCTAssertThrowsError(try pending.wait())
    }

    func testOpenTimesOutWhenThePeerNeverAnswers() throws {
        let future = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(3))
        loop.run()
        linkB.queue.removeAll()   // the OPEN is lost
        loop.advanceTime(by: .seconds(4))
        XCTAssertThrowsError(try future.wait()) { error in
            XCTAssertEqual((error as? TransportError)?.kind, .timeout)
        }
    }

    func testUnansweredOptimisticOpenIsResetAfterTheTimeout() throws {
        let future = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(3), waitForAccept: false)
        loop.run()
        let stream = try future.wait()
        let client = Collector()
        stream.setDelegate(client)
        stream.write(ByteBuffer(string: "greeting"))
        loop.run()
        linkB.queue.removeAll()   // the OPEN and its early data are lost
        loop.advanceTime(by: .seconds(2))
        XCTAssertNil(client.resetCode, "still within the timeout")
        loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(client.resetCode, .transportLost)
    }

    func testAnsweredOptimisticOpenIsNotResetLater() throws {
        let server = Collector()
        routerB.onStream = { stream, _ in stream.setDelegate(server); return nil }
        let future = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(3), waitForAccept: false)
        loop.run()
        let stream = try future.wait()
        let client = Collector()
        stream.setDelegate(client)
        stream.write(ByteBuffer(string: "early"))
        pump()
        loop.advanceTime(by: .seconds(10))
        pump()
        XCTAssertNil(client.resetCode)
        XCTAssertEqual(server.data, ByteBuffer(string: "early"))
    }

    /// Opens optimistically with `greeting` as early data and lets B's app defer its acceptance.
    private func openWithDeferredAcceptance(_ greeting: String) throws -> (client: AppStream, server: () -> AppStream?) {
        var accepted: AppStream?
        routerB.onStream = { stream, _ in
            stream.deferAcceptance()
            accepted = stream
            return nil
        }
        pump()   // the first PING/PONG, so later frame counts are this stream's alone
        let future = connA.openStream(destinationPort: 3, sourcePort: 1, timeout: .seconds(5), waitForAccept: false)
        loop.run()
        let client = try future.wait()
        client.write(ByteBuffer(string: greeting))
        loop.run()
        XCTAssertEqual(linkB.deliver(), 2, "OPEN + early DATA")
        loop.run()
        return (client, { accepted })
    }

    func testDeferredAcceptanceLeavesWithTheAppsFirstReply() throws {
        let (client, server) = try openWithDeferredAcceptance("hello")
        let replies = Collector()
        client.setDelegate(replies)
        XCTAssertTrue(linkA.queue.isEmpty, "no OPEN_OK on its own")
        let accepted = try XCTUnwrap(server())
        accepted.write(ByteBuffer(string: "reply"))
        loop.run()
        XCTAssertEqual(linkA.queue.count, 2, "OPEN_OK and DATA in one flush")
        pump()
        XCTAssertEqual(replies.data, ByteBuffer(string: "reply"))
        // The acceptance timer has nothing left to send.
        loop.advanceTime(by: .seconds(2))
        XCTAssertTrue(linkA.queue.isEmpty)
    }

    func testDeferredAcceptanceIsSentAloneAfterItsLimit() throws {
        let (_, server) = try openWithDeferredAcceptance("hello")
        XCTAssertNotNil(server())
        loop.advanceTime(by: MuxConnection.deferredAcceptanceLimit - .milliseconds(1))
        XCTAssertTrue(linkA.queue.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        loop.run()
        XCTAssertEqual(linkA.queue.count, 1, "the OPEN_OK, alone, once the app has not answered in time")
    }

    func testFINCompletingAFinishedStreamRidesWithTheNextFrames() throws {
        var accepted: [AppStream] = []
        routerB.onStream = { stream, _ in
            stream.setDelegate(Collector())
            accepted.append(stream)
            return nil
        }
        let stream = try open()
        let client = Collector()
        stream.setDelegate(client)
        // B finishes first; A's FIN then completes the stream and is not sent on its own.
        accepted[0].finish()
        pump()
        XCTAssertTrue(client.finished)
        stream.finish()
        loop.run()
        XCTAssertTrue(linkB.queue.isEmpty, "lazy: waits for company")
        // A regular write on another stream takes it along in the same flush.
        let other = connA.openStream(destinationPort: 7, sourcePort: 2, timeout: .seconds(5), waitForAccept: false)
        loop.run()
        try other.wait().write(ByteBuffer(string: "x"))
        loop.run()
        XCTAssertEqual(linkB.queue.count, 3, "FIN + OPEN + DATA in one flush")
        pump()
        // Alone, it goes after `lazyFlushDelay`.
        let third = try open()
        third.setDelegate(Collector())
        accepted[2].finish()
        pump()
        third.finish()
        loop.run()
        XCTAssertTrue(linkB.queue.isEmpty)
        loop.advanceTime(by: MuxConnection.lazyFlushDelay)
        XCTAssertEqual(linkB.queue.count, 1, "the FIN, after the delay")
        pump()
        XCTAssertEqual(connB.stats.streams, 1, "only the second stream is still open")
    }

    func testASilentPeerIsProbedWhenAStreamOpensAndTheLinkClosed() throws {
        routerB.onStream = { stream, _ in stream.setDelegate(Collector()); return nil }
        pump()   // the first PING/PONG: both sides have heard from each other
        loop.advanceTime(by: MuxConnection.silenceBeforeProbe + .milliseconds(1))
        linkA.queue.removeAll()
        linkB.queue.removeAll()
        // B is gone without a word (e.g. it restarted and forgot the sudph session): nothing A sends arrives.
        linkA.peer = nil
        let future = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(10), waitForAccept: false)
        loop.run()
        _ = try future.wait()
        XCTAssertNil(linkA.closedReason)
        loop.advanceTime(by: MuxConnection.probeTimeout - .milliseconds(1))
        XCTAssertNil(linkA.closedReason, "still within the probe's time")
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(linkA.closedReason, "dead peer: no answer to a liveness probe within 5 s")
    }

    func testAPeerThatAnswersTheProbeKeepsTheLink() throws {
        routerB.onStream = { stream, _ in stream.setDelegate(Collector()); return nil }
        pump()
        loop.advanceTime(by: MuxConnection.silenceBeforeProbe + .milliseconds(1))
        pump()   // keepalive traffic, if any, settles
        loop.advanceTime(by: MuxConnection.silenceBeforeProbe + .milliseconds(1))
        let framesBefore = linkA.framesSent
        let future = connA.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(10), waitForAccept: false)
        loop.run()
        XCTAssertGreaterThan(linkA.framesSent, framesBefore, "the probe (a PING) went out at once")
        _ = try future.wait()
        pump()
        loop.advanceTime(by: MuxConnection.probeTimeout)
        pump()
        XCTAssertNil(linkA.closedReason)
        XCTAssertNil(linkB.closedReason)
    }

    func testOrderlyCloseTellsThePeer() throws {
        let server = Collector()
        routerB.onStream = { stream, _ in stream.setDelegate(server); return nil }
        let stream = try open()
        let client = Collector()
        stream.setDelegate(client)
        connA.close(reason: "visor stopping")
        XCTAssertEqual(linkA.closedReason, "visor stopping")
        XCTAssertEqual(client.resetCode, .appClosed, "local streams end")
        // The CLOSE went out before the link closed (the test double then closes B's end too).
        let last = try XCTUnwrap(linkB.queue.last)
        let frame = try last.withUnsafeReadableBytes { try MuxFrame<Range<Int>>.decode($0) }
        guard case .close(let code, let reason) = frame else { return XCTFail("\(frame)") }
        XCTAssertEqual(code, .appClosed)
        XCTAssertEqual(reason, "visor stopping")
    }

    func testRTTIsMeasuredByTheFirstPing() {
        XCTAssertNil(connA.stats.rttMillis, "no PONG yet")
        pump()
        XCTAssertNotNil(connA.stats.rttMillis, "the first PING goes out at once")
        XCTAssertNotNil(connB.stats.rttMillis)
    }

    /// Resident set size of this process (/proc/self/statm), in bytes.
    private func residentBytes() -> Int {
        guard let fields = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " "),
              fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// A peer fills a paused stream's whole window with 1-byte DATA frames, each decrypted into its
    /// own buffer (as `StcprSession.receive` does): queued as they come they cost ~100 bytes of
    /// heap per byte (docs/hardening.md); the queue must cost about its bytes.
    func testOneByteFramesOnAPausedStreamCostAboutTheirBytes() throws {
        let loop = EmbeddedEventLoop()
        let link = LoopbackLink()
        let router = TestRouter()
        var accepted: AppStream?
        let collector = Collector()
        router.onStream = { stream, _ in
            stream.setDelegate(collector)
            stream.setReadPaused(true)
            accepted = stream
            return nil
        }
        let conn = MuxConnection(eventLoop: loop, isInitiator: false, remote: KeyPair.generate().publicKey, link: link,
                                 router: router, logger: Logger(label: "test"))
        link.connection = conn
        func feed(_ frame: MuxFrame<ArraySlice<UInt8>>) {
            var bytes: [UInt8] = []
            frame.encode(into: &bytes)
            var buffer = ByteBufferAllocator().buffer(capacity: bytes.count + 16)
            buffer.writeBytes(bytes)
            conn.receive(frame: buffer)
        }
        let window = 256 * 1024
        feed(.open(streamID: MuxStreamID(1), destinationPort: 7, sourcePort: 9, initialWindow: UInt32(window)))
        XCTAssertNotNil(accepted)
        let before = residentBytes()
        for _ in 0..<window { feed(.data(streamID: MuxStreamID(1), payload: [0x61])) }
        let growth = residentBytes() - before
        XCTAssertEqual(collector.data.readableBytes, 0, "the stream is paused")
        XCTAssertLessThan(growth, 8 << 20, "\(growth) bytes of heap for \(window) queued bytes")
        accepted?.setReadPaused(false)
        XCTAssertEqual(collector.data.readableBytes, window)
        conn.linkClosed(reason: "test over")
    }

}
