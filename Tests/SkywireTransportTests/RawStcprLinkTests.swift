#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport
import SkywireWire
import Dispatch
import SkywireIO

/// Writes `data` on a stream as fast as its window allows, then FIN; collects what comes back.
private final class PumpingSender: AppStreamDelegate {
    let data: ByteBuffer
    var offset = 0
    var received = ByteBuffer()
    let done: EventLoopPromise<ByteBuffer>

    init(data: ByteBuffer, done: EventLoopPromise<ByteBuffer>) { self.data = data; self.done = done }

    func pump(_ stream: AppStream) {
        while offset < data.readableBytes && stream.isWritable {
            let n = min(32 * 1024, data.readableBytes - offset)
            stream.write(data.getSlice(at: offset, length: n)!)
            offset += n
            if offset == data.readableBytes { stream.finish() }
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        var d = data
        received.writeBuffer(&d)
    }
    func appStreamDidReceiveFinish(_ stream: AppStream) { done.succeed(received) }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        done.fail(TransportError(.closed, "reset \(code)"))
    }
    func appStreamWritabilityChanged(_ stream: AppStream) { pump(stream) }
}

/// What a link's `established` hook saw.
private struct Established: @unchecked Sendable {
    // @unchecked Sendable: both are confined to their loop; the test only hands them back to it.
    let connection: MuxConnection
    let link: RawStcprLink
}

final class RawStcprLinkTests: XCTestCase {
    private var loopA: EpollEventLoop!
    private var loopB: EpollEventLoop!
    private let keyA = KeyPair.generate()
    private let keyB = KeyPair.generate()
    private let logger = Logger(label: "raw-stcpr-test")
    /// Stream delegates are held weakly by their streams; the test keeps them.
    private let keepAlive = NIOLockedValueBox<[AnyObject]>([])

    override func setUpWithError() throws {
        loopA = try EpollEventLoop(name: "raw-a")
        loopB = try EpollEventLoop(name: "raw-b")
    }

    override func tearDown() {
        loopA.shutdown(); loopB.shutdown()
    }

    private func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// Starts a link on `loop` over `fd`, or over `pipe` (a `MemoryPipe` end on `loop`); `closed`
    /// learns its reason.
    private func startLink(loop: EpollEventLoop, fd: Int32 = -1, pipe: LinkPipe? = nil, identity: KeyPair, expecting: PublicKey?,
                           router: AppRouter, accept: Bool = true, sinks: DatagramSinks? = nil,
                           closed: EventLoopPromise<String>, connection: EventLoopPromise<Established>) throws {
        let logger = self.logger
        let given = LoopTransfer(value: pipe)
        try loop.submit {
            _ = try RawStcprLink(
                loop: loop, pipe: given.value ?? DescriptorPipe(loop: loop, descriptor: OwnedDescriptor(taking: fd)),
                identity: NoiseStaticIdentity(identity: identity),
                expectedRemote: expecting, timestamp: expecting == nil ? nil : .now(), handshakeTimeout: .seconds(5),
                logger: logger,
                hooks: .init(
                    established: { remote, link in
                        guard accept else { return nil }
                        let conn = MuxConnection(eventLoop: loop, isInitiator: expecting != nil, remote: remote,
                                                 link: link, router: router, logger: logger)
                        connection.succeed(Established(connection: conn, link: link))
                        return conn
                    },
                    closed: { reason in closed.succeed(reason) },
                    sinks: sinks))
        }.wait()
    }

    /// B (responder, on `loopB`) and A (initiator expecting B, on `loopA`) over a socket pair:
    /// their `closed` and `connection` promises.
    private func startPair(acceptB: Bool = true, sinksB: DatagramSinks? = nil) throws
        -> (EventLoopPromise<String>, EventLoopPromise<String>, EventLoopPromise<Established>, EventLoopPromise<Established>) {
        let (fdA, fdB) = socketPair()
        let closedA = loopA.makePromise(of: String.self), closedB = loopB.makePromise(of: String.self)
        let connA = loopA.makePromise(of: Established.self), connB = loopB.makePromise(of: Established.self)
        try startLink(loop: loopB, fd: fdB, identity: keyB, expecting: nil, router: TestRouter(), accept: acceptB,
                      sinks: sinksB, closed: closedB, connection: connB)
        try startLink(loop: loopA, fd: fdA, identity: keyA, expecting: keyB.publicKey, router: TestRouter(),
                      closed: closedA, connection: connA)
        return (closedA, closedB, connA, connB)
    }

    /// A router that echoes every stream to port 7.
    private func echoRouter() -> TestRouter {
        let router = TestRouter()
        let keepAlive = self.keepAlive
        router.onStream = { stream, port in
            guard port == 7 else { return .noSuchPort }
            let echo = Collector()
            echo.echo = true
            stream.setDelegate(echo)
            keepAlive.withLockedValue { $0.append(echo) }
            return nil
        }
        return router
    }

    /// Sends `payload` on a new stream of `a` (on `loopA`) to port 7 and returns what came back.
    private func echo(_ payload: ByteBuffer, over a: MuxConnection) throws -> ByteBuffer {
        let keepAlive = self.keepAlive
        let done = loopA.makePromise(of: ByteBuffer.self)
        let connection = LoopTransfer(value: a)
        try loopA.flatSubmit {
            connection.value.openStream(destinationPort: 7, sourcePort: 50000, timeout: .seconds(5)).map { stream in
                let sender = PumpingSender(data: payload, done: done)
                stream.setDelegate(sender)
                keepAlive.withLockedValue { $0.append(sender) }
                sender.pump(stream)
            }
        }.wait()
        return try done.futureResult.wait()
    }

    func testStreamEchoesOneMegabyteOverTheRawLinkBetweenTwoLoops() throws {
        let (fdA, fdB) = socketPair()
        let routerB = echoRouter()
        let closedA = loopA.makePromise(of: String.self), closedB = loopB.makePromise(of: String.self)
        let connA = loopA.makePromise(of: Established.self), connB = loopB.makePromise(of: Established.self)
        try startLink(loop: loopB, fd: fdB, identity: keyB, expecting: nil, router: routerB, closed: closedB, connection: connB)
        try startLink(loop: loopA, fd: fdA, identity: keyA, expecting: keyB.publicKey, router: TestRouter(),
                      closed: closedA, connection: connA)
        let established = try connA.futureResult.wait()
        let a = established.connection
        XCTAssertEqual(try connB.futureResult.wait().connection.remote, keyA.publicKey)

        var payload = ByteBuffer()
        for i in 0..<(1024 * 1024) { payload.writeInteger(UInt8(truncatingIfNeeded: i &* 31 ^ (i >> 7))) }
        XCTAssertEqual(try echo(payload, over: a), payload)

        try loopA.submit { established.link.close(reason: "test over") }.wait()
        XCTAssertEqual(try closedA.futureResult.wait(), "test over")
        XCTAssertEqual(try closedB.futureResult.wait(), "connection closed by peer")
    }

    /// A read burst takes everything waiting (up to `maxReadBytesPerWake`), so the sinks push
    /// their merged TCP super-packets once per burst, not once per read: ~100 KB of DATAGRAM
    /// records waiting in the socket reach the sink before its first `datagramBatchEnded`. Before,
    /// a read larger than 16 KiB (the receive buffer had grown) ended the burst as if the socket
    /// were drained: the first burst stopped after ~48 KB (the exit's TUN got ~30 KB
    /// super-packets instead of 64 KB ones, twice the writes and wake-ups per byte).
    func testAReadBurstTakesEverythingWaitingBeforeTheSinksFlush() throws {
        let sink = BurstRecordingSink()
        let sinks = DatagramSinks()
        let port: UInt16 = 44
        sinks.set(sink, port: port)
        let (closedA, closedB, connA, connB) = try startPair(sinksB: sinks)
        let link = try connA.futureResult.wait().link
        _ = try connB.futureResult.wait()

        // B's loop is held while A's records fill B's socket.
        let hold = NIOLockedValueBox(true), held = NIOLockedValueBox(false)
        loopB.execute {
            held.withLockedValue { $0 = true }
            let until = NIODeadline.now() + .seconds(20)
            while hold.withLockedValue({ $0 }) && NIODeadline.now() < until { usleep(1000) }
        }
        while !held.withLockedValue({ $0 }) { usleep(1000) }
        let count = 100, size = 1000
        XCTAssertLessThan(count * size, RawStcprLink.maxReadBytesPerWake, "one burst's worth")
        XCTAssertGreaterThan(count * size, RawStcprLink.firstReadChunk + RawStcprLink.transportReadChunk, "more than two reads")
        let unsent = try loopA.submit {
            for i in 0..<count {
                var frame = ByteBuffer()
                frame.writeWithUnsafeMutableBytes(minimumWritableBytes: MuxFrameLayout.datagramHeader + size) { raw in
                    MuxFrameLayout.writeDatagramHeader(destinationPort: port, sourcePort: 45, into: raw)
                    let body = UnsafeMutableRawBufferPointer(rebasing: raw[MuxFrameLayout.datagramHeader..<(MuxFrameLayout.datagramHeader + size)])
                    body.initializeMemory(as: UInt8.self, repeating: UInt8(i))
                    return MuxFrameLayout.datagramHeader + size
                }
                link.send(frame: frame, reliable: true)
            }
            link.flush()
            return link.unsentBytes
        }.wait()
        XCTAssertEqual(unsent, 0, "every record is in B's socket")
        hold.withLockedValue { $0 = false }

        let until = NIODeadline.now() + .seconds(20)
        while sink.ends.withLockedValue({ $0.isEmpty }) && NIODeadline.now() < until { usleep(1000) }
        let ends = sink.ends.withLockedValue { $0 }
        XCTAssertEqual(ends.first, count, "datagrams delivered before the sinks' first flush (each flush: \(ends))")
        XCTAssertEqual(sink.firstBytes.withLockedValue { $0 }, (0..<count).map { UInt8($0) }, "in order, intact")

        try loopA.submit { link.close(reason: "test over") }.wait()
        XCTAssertEqual(try closedA.futureResult.wait(), "test over")
        _ = try closedB.futureResult.wait()
    }

    // MARK: Over a byte pipe other than TCP (the dmsg relay stream)

    /// The same handshake and records over an in-memory pipe (the relay stream's shape: a
    /// reliable byte stream with a bounded buffer each way): 1 MiB echoed through a mux stream;
    /// what crossed the pipe is ciphertext (the payload's marker never appears in it).
    func testStreamEchoesOneMegabyteOverAnInMemoryPipe() throws {
        let (pipeA, pipeB, memoryA, memoryB) = MemoryPipe.pair(on: loopA, capacity: 16 * 1024)
        let routerB = echoRouter()
        let closedA = loopA.makePromise(of: String.self), closedB = loopA.makePromise(of: String.self)
        let connA = loopA.makePromise(of: Established.self), connB = loopA.makePromise(of: Established.self)
        try startLink(loop: loopA, pipe: pipeB, identity: keyB, expecting: nil, router: routerB, closed: closedB, connection: connB)
        try startLink(loop: loopA, pipe: pipeA, identity: keyA, expecting: keyB.publicKey, router: TestRouter(),
                      closed: closedA, connection: connA)
        let established = try connA.futureResult.wait()
        let a = established.connection
        XCTAssertEqual(try connB.futureResult.wait().connection.remote, keyA.publicKey)

        let marker = Array("plaintext-marker-7f3a".utf8)
        var payload = ByteBuffer()
        while payload.readableBytes < 1024 * 1024 {
            payload.writeBytes(marker)
            payload.writeInteger(UInt32(payload.readableBytes))
        }
        XCTAssertEqual(try echo(payload, over: a), payload)
        let memories = LoopTransfer(value: (memoryA, memoryB))
        let wire = try loopA.submit {
            (Array(memories.value.0.written.readableBytesView), Array(memories.value.1.written.readableBytesView))
        }.wait()
        XCTAssertGreaterThan(wire.0.count, payload.readableBytes)
        XCTAssertFalse(Self.contains(wire.0, marker), "plaintext crossed the pipe A→B")
        XCTAssertFalse(Self.contains(wire.1, marker), "plaintext crossed the pipe B→A")

        try loopA.submit { established.link.close(reason: "test over") }.wait()
        XCTAssertEqual(try closedA.futureResult.wait(), "test over")
        XCTAssertEqual(try closedB.futureResult.wait(), "connection closed by peer")
    }

    /// A relay stream that reaches the wrong visor (a relay that lies about whom it connected):
    /// the inner handshake fails, neither end establishes.
    func testInMemoryPipeToAnotherKeyFailsTheInnerHandshake() throws {
        let (pipeA, pipeB, _, _) = MemoryPipe.pair(on: loopA)
        let closedA = loopA.makePromise(of: String.self), closedB = loopA.makePromise(of: String.self)
        let connA = loopA.makePromise(of: Established.self), connB = loopA.makePromise(of: Established.self)
        try startLink(loop: loopA, pipe: pipeB, identity: keyB, expecting: nil, router: TestRouter(), closed: closedB, connection: connB)
        try startLink(loop: loopA, pipe: pipeA, identity: keyA, expecting: KeyPair.generate().publicKey, router: TestRouter(),
                      closed: closedA, connection: connA)
        XCTAssertEqual(try closedB.futureResult.wait(), "handshake refused (mac1)")
        XCTAssertEqual(try closedA.futureResult.wait(), "connection closed by peer")
        connA.fail(TransportError(.closed, "")); connB.fail(TransportError(.closed, ""))
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    func testInitiatorExpectingAnotherKeyIsRejectedAndBothEndsClose() throws {
        let (fdA, fdB) = socketPair()
        let closedA = loopA.makePromise(of: String.self), closedB = loopB.makePromise(of: String.self)
        let connA = loopA.makePromise(of: Established.self), connB = loopB.makePromise(of: Established.self)
        try startLink(loop: loopB, fd: fdB, identity: keyB, expecting: nil, router: TestRouter(), closed: closedB, connection: connB)
        try startLink(loop: loopA, fd: fdA, identity: keyA, expecting: KeyPair.generate().publicKey, router: TestRouter(),
                      closed: closedA, connection: connA)
        XCTAssertEqual(try closedB.futureResult.wait(), "handshake refused (mac1)", "mac1 is keyed by the key the initiator expected")
        XCTAssertEqual(try closedA.futureResult.wait(), "connection closed by peer")
        connA.fail(TransportError(.closed, "")); connB.fail(TransportError(.closed, ""))
    }

    func testRefusedPeerClosesTheInitiator() throws {
        let (closedA, closedB, connA, connB) = try startPair(acceptB: false)
        XCTAssertEqual(try closedB.futureResult.wait(), "peer \(keyA.publicKey.hex) refused")
        // The responder refuses after the confirmation, when the initiator may have sent frames
        // already: it closes with them unread, so the initiator sees EOF or a reset.
        let reason = try closedA.futureResult.wait()
        XCTAssertTrue(reason == "connection closed by peer" || reason.contains("reset by peer"), reason)
        connA.fail(TransportError(.closed, "")); connB.fail(TransportError(.closed, ""))
    }

    // MARK: Bounded memory (docs/hardening.md)

    /// A raw initiator on `fd` (made blocking) that completes the handshake with `loopB`'s responder.
    private func rawInitiator(_ fd: Int32) throws -> StcprClientCodec {
        _ = fcntl(fd, F_SETFL, 0)
        var codec = try StcprClientCodec(identity: keyA, remote: keyB.publicKey)
        let first = try codec.firstRecord()
        XCTAssertEqual(first.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, first.count)
        var reply = [UInt8](repeating: 0, count: 2 + StcprClientCodec.responseLength)
        var got = 0
        while got < reply.count {
            let n = reply[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TransportError(.closed, "no handshake reply") }
            got += n
        }
        let confirmation = try codec.readResponse(Array(reply[2...]))
        XCTAssertEqual(confirmation.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, confirmation.count)
        return codec
    }

    func testPeerThatSendsPingsAndNeverReadsIsNoLongerReadAndResumesOnceItReads() throws {
        let (fdA, fdB) = socketPair()
        let closedB = loopB.makePromise(of: String.self), connB = loopB.makePromise(of: Established.self)
        try startLink(loop: loopB, fd: fdB, identity: keyB, expecting: nil, router: TestRouter(), closed: closedB, connection: connB)
        var codec = try rawInitiator(fdA)
        let established = try connB.futureResult.wait()
        _ = fcntl(fdA, F_SETFL, O_NONBLOCK)
        defer { close(fdA) }

        // PINGs until the visor side stops taking them for half a second (bounded: 200,000 PINGs).
        var pending = ByteBuffer()
        var plain = ByteBuffer()
        var sent = 0, idleSince: Double?
        while sent < 200_000 {
            if pending.readableBytes == 0 {
                for i in 0..<256 {
                    plain.clear()
                    plain.writeInteger(MuxFrameType.ping.rawValue)
                    plain.writeInteger(UInt64(sent + i))
                    try codec.seal(frame: plain, into: &pending)
                }
                sent += 256
            }
            let n = pending.withUnsafeReadableBytes { send(fdA, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                pending.moveReaderIndex(forwardBy: n)
                idleSince = nil
                continue
            }
            XCTAssertEqual(errno, EAGAIN)
            let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
            if let since = idleSince, now - since > 0.5 { break }
            if idleSince == nil { idleSince = now }
            usleep(10_000)
        }
        XCTAssertLessThan(sent, 200_000, "the visor side kept reading")
        let link = established.link
        let (paused, unsent) = try loopB.submit { (link.readPaused, link.unsentBytes) }.wait()
        XCTAssertTrue(paused)
        // The answers it holds: the pause watermark plus at most one read burst's worth.
        XCTAssertLessThanOrEqual(unsent, RawStcprLink.controlPauseWatermark
                                         + RawStcprLink.maxReadBytesPerWake * 2)

        // Once the peer reads its PONGs, the link reads again.
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        var resumed = false
        for _ in 0..<500 where !resumed {
            while scratch.withUnsafeMutableBytes({ read(fdA, $0.baseAddress, $0.count) }) > 0 {}
            if pending.readableBytes > 0 {
                let n = pending.withUnsafeReadableBytes { send(fdA, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { pending.moveReaderIndex(forwardBy: n) }
            }
            resumed = try loopB.submit { !link.readPaused }.wait()
            usleep(10_000)
        }
        XCTAssertTrue(resumed)
        try loopB.submit { link.close(reason: "test over") }.wait()
        XCTAssertEqual(try closedB.futureResult.wait(), "test over")
    }

    func testWrongHandshakeLengthPrefixClosesAtOnce() throws {
        let (fdA, fdB) = socketPair()
        defer { close(fdA) }
        let closedB = loopB.makePromise(of: String.self), connB = loopB.makePromise(of: Established.self)
        try startLink(loop: loopB, fd: fdB, identity: keyB, expecting: nil, router: TestRouter(), closed: closedB, connection: connB)
        let before = RefusalLog.shared.count(.badHandshakeLength)
        let start = DispatchTime.now()
        XCTAssertEqual([UInt8]([0xFF, 0xFF, 0x01]).withUnsafeBytes { write(fdA, $0.baseAddress, $0.count) }, 3)
        XCTAssertEqual(try closedB.futureResult.wait(),
                       "handshake record of 65535 bytes (expected \(StcprSession.initiationRecordLength))")
        // Well before the 5 s handshake timeout.
        XCTAssertLessThan(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds, 2_000_000_000)
        XCTAssertEqual(RefusalLog.shared.count(.badHandshakeLength), before + 1)
        connB.fail(TransportError(.closed, "never established"))
    }

}

/// Records, at each `datagramBatchEnded`, how many datagrams had arrived (from the link's loop).
private final class BurstRecordingSink: DatagramSink, @unchecked Sendable {
    // @unchecked Sendable: `firstBytes` and `ends` are locked boxes; nothing else is stored.
    let firstBytes = NIOLockedValueBox<[UInt8]>([])
    let ends = NIOLockedValueBox<[Int]>([])

    func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from: PublicKey, sourcePort: UInt16) {
        let first = payload.first ?? 0
        XCTAssertTrue(payload.allSatisfy { $0 == first })
        firstBytes.withLockedValue { $0.append(first) }
    }

    func datagramBatchEnded() {
        let n = firstBytes.withLockedValue { $0.count }
        ends.withLockedValue { $0.append(n) }
    }
}
