import NIOCore
import NIOPosix
import SkywireIO
import SkywireSocks
import SkywireTestSupport
import SkywireTransport
import XCTest
@testable import SkywireVisor

/// `HoppingAppStream` (the control socket's `stream.open` bridge's view of a stream): a
/// `LoopbackAppStream` pair on a NIO loop, one end presented on an `EpollEventLoop`.
final class HoppingAppStreamTests: XCTestCase {
    typealias Recorder = AppStreamRecorder

    /// A pair on `nio` (`inner` ↔ `peer`), `inner` presented on `epoll` as `wrapped`.
    final class Fixture: @unchecked Sendable {
        // @unchecked Sendable: `inner`, `peer` and `peerRecorder` are touched on the NIO loop only,
        // `wrapped` and `local` on the epoll loop only (tests reach them through `submit`/`execute`).
        let inner: LoopbackAppStream
        let peer: LoopbackAppStream
        let peerRecorder = Recorder()
        let local = Recorder()
        var wrapped: HoppingAppStream!

        init(nio: EventLoop, epoll: EventLoop, writeBufferLimit: Int, peerPaused: Bool) throws {
            (inner, peer) = LoopbackAppStream.makePair(on: nio, writeBufferLimit: writeBufferLimit)
            try nio.submit { [self] in
                peer.setDelegate(peerRecorder)
                peer.setReadPaused(peerPaused)
                wrapped = HoppingAppStream(wrapping: inner, on: epoll)
            }.wait()
            try epoll.submit { [self] in wrapped.setDelegate(local) }.wait()
        }
    }

    private var group: MultiThreadedEventLoopGroup!
    private var epoll: EpollEventLoop!

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        epoll = try EpollEventLoop(name: "hopping-test")
    }

    override func tearDown() {
        epoll.shutdown()
        try? group.syncShutdownGracefully()
    }

    /// Polls `condition` on `loop` until it holds (bounded).
    private func wait(on loop: EventLoop, _ what: String, _ condition: @escaping @Sendable () -> Bool) throws {
        for _ in 0..<500 {
            if try loop.submit(condition).wait() { return }
            usleep(10_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    func testBytesFinishAndBackPressureCrossBothWays() throws {
        let nio = group.next()
        let f = try Fixture(nio: nio, epoll: epoll, writeBufferLimit: 16 * 1024, peerPaused: true)
        XCTAssertTrue(f.wrapped.eventLoop === epoll)
        // Write whenever the wrapper says "writable", in rounds, until the inner stream is full.
        let window = 256 * 1024
        var accepted = 0
        for _ in 0..<500 {
            let round = try epoll.submit { () -> Int in
                var written = 0
                let chunk = ByteBuffer(repeating: 0x61, count: 4096)
                while f.wrapped.isWritable {
                    f.wrapped.write(chunk)
                    written += chunk.readableBytes
                }
                return written
            }.wait()
            XCTAssertLessThanOrEqual(round, HoppingAppStream.maxBytesInFlight + 4096, "writes beyond the in-flight bound")
            accepted += round
            // Full for good only once the peer's window is used up too (before that the inner
            // stream turns writable again as it transmits what it queued).
            if accepted >= window + 16 * 1024, try !nio.submit({ f.inner.isWritable }).wait() { break }
            usleep(2_000)
        }
        // The peer does not read: what was accepted is bounded by its window and the queues.
        XCTAssertLessThanOrEqual(accepted, window + 16 * 1024 + HoppingAppStream.maxBytesInFlight + 4096)
        try wait(on: epoll, "wrapper unwritable") { !f.wrapped.isWritable }
        usleep(50_000)
        XCTAssertFalse(try epoll.submit { f.wrapped.isWritable }.wait(), "writable while the inner stream is full")
        // The peer reads: everything arrives in order and the wrapper becomes writable again.
        nio.execute { f.peer.setReadPaused(false) }
        let total = accepted
        try wait(on: nio, "all bytes at the peer") {
            f.peerRecorder.received.count == total && f.peerRecorder.received.allSatisfy { $0 == 0x61 }
        }
        try wait(on: epoll, "writable again") { f.wrapped.isWritable && f.local.writabilityChanges >= 2 }
        // Peer → wrapper bytes and FIN, then wrapper FIN → peer.
        nio.execute {
            f.peer.write(ByteBuffer(bytes: [1, 2, 3]))
            f.peer.finish()
        }
        try wait(on: epoll, "bytes and FIN from the peer") { f.local.received == [1, 2, 3] && f.local.finished }
        epoll.execute { f.wrapped.finish() }
        try wait(on: nio, "FIN at the peer") { f.peerRecorder.finished }
    }

    func testPauseHoldsDeliveryAndResetsCrossBothWays() throws {
        let nio = group.next()
        let f = try Fixture(nio: nio, epoll: epoll, writeBufferLimit: 64 * 1024, peerPaused: false)
        try epoll.submit { f.wrapped.setReadPaused(true) }.wait()
        nio.execute { f.peer.write(ByteBuffer(bytes: [9, 9])) }
        usleep(100_000)
        XCTAssertEqual(try epoll.submit { f.local.received }.wait(), [], "delivered while paused")
        epoll.execute { f.wrapped.setReadPaused(false) }
        try wait(on: epoll, "delivery after resume") { f.local.received == [9, 9] }
        // A reset from the peer reaches the wrapper's delegate.
        nio.execute { f.peer.reset(.transportLost) }
        try wait(on: epoll, "reset at the wrapper") { f.local.resetCode == .transportLost }
        XCTAssertFalse(try epoll.submit { f.wrapped.isWritable }.wait())

        // A reset by the wrapper's user reaches the peer.
        let g = try Fixture(nio: nio, epoll: epoll, writeBufferLimit: 64 * 1024, peerPaused: false)
        epoll.execute { g.wrapped.reset(.appClosed) }
        try wait(on: nio, "reset at the peer") { g.peerRecorder.resetCode == .appClosed }
    }
}
