#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem
import XCTest
@testable import SkywireIO

/// `RawStreamSocket` gathers the small writes of one loop turn into one send(2) (a burst of
/// sudph segments, ~1.2 KB each, arrives as many small writes to the app's socket).
final class RawStreamSocketGatherTests: XCTestCase {
    static let chunk = 1_200
    static let chunks = 20
    private var loop: EpollEventLoop!
    private var peer: Int32 = -1

    override func setUpWithError() throws { loop = try EpollEventLoop(name: "gather-loop") }
    override func tearDown() {
        loop.shutdown()
        loop = nil
        if peer >= 0 { Glibc.close(peer) }
    }

    /// A unix stream pair: one end as a `RawStreamSocket` on the loop, the other read here.
    private func makeSocket() throws -> RawStreamSocket {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        peer = fds[1]
        let owned = OwnedDescriptor(taking: fds[0])
        let loop = self.loop!
        return try loop.submit { LoopTransfer(value: try RawStreamSocket(loop: loop, socket: owned)) }.wait().value
    }

    /// Bytes readable on the peer end now (MSG_DONTWAIT), at most `limit`.
    private func readAvailable(limit: Int = 1 << 20) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: limit)
        let n = out.withUnsafeMutableBytes { recv(peer, $0.baseAddress, limit, Int32(MSG_DONTWAIT)) }
        return n > 0 ? Array(out[0..<n]) : []
    }

    private static func pattern(_ i: Int) -> ByteBuffer {
        ByteBuffer(repeating: UInt8(truncatingIfNeeded: i), count: chunk)
    }

    func testSmallWritesOfOneTurnLeaveInOneSendAfterTheTurn() throws {
        let socket = LoopTransfer(value: try makeSocket())
        // During the turn nothing reaches the peer yet (before the change each write was a send).
        let seenDuringTurn = try loop.submit { () -> Int in
            for i in 0..<Self.chunks { socket.value.write(Self.pattern(i)) }
            return self.readAvailable().count
        }.wait()
        XCTAssertEqual(seenDuringTurn, 0, "small writes were sent before the loop's turn ended")
        // The next task runs after the gathered send: everything there, in order, in one read.
        try loop.submit {}.wait()
        let got = readAvailable()
        XCTAssertEqual(got.count, Self.chunk * Self.chunks)
        let expected = (0..<Self.chunks).flatMap { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: Self.chunk) }
        XCTAssertTrue(got == expected, "bytes out of order")
        try loop.submit { socket.value.close() }.wait()
    }

    /// Counts `socketClosed` calls (on the loop).
    private final class ClosingSocket: RawStreamSocket {
        var closedCalls = 0
        override func socketClosed() { closedCalls += 1 }
    }

    /// A gathered send that fails (the peer is gone) closes the socket from inside the send;
    /// the close must not touch the gathered bytes the send still holds (before the fix a
    /// debug build trapped: "Simultaneous accesses", RawStreamSocket.gathered).
    func testGatheredSendToAClosedPeerClosesTheSocket() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        Glibc.close(fds[1])                          // the peer is gone: send(2) fails with EPIPE
        let owned = OwnedDescriptor(taking: fds[0])
        let loop = self.loop!
        let socket = try loop.submit { LoopTransfer(value: try ClosingSocket(loop: loop, socket: owned)) }.wait()
        try loop.submit {
            for i in 0..<Self.chunks { socket.value.write(Self.pattern(i)) }
        }.wait()
        try loop.submit {}.wait()                    // after the turn's gathered send
        let closedCalls = try loop.submit { socket.value.closedCalls }.wait()
        XCTAssertEqual(closedCalls, 1, "the failed gathered send did not close the socket once")
        try loop.submit { socket.value.write(Self.pattern(0)) }.wait()   // writes after close are dropped
        try loop.submit {}.wait()
        XCTAssertEqual(try loop.submit { socket.value.closedCalls }.wait(), 1)
    }

    func testLargeWriteAfterSmallOnesKeepsOrderAndCloseFlushes() throws {
        let socket = LoopTransfer(value: try makeSocket())
        let large = ByteBuffer(repeating: 0xEE, count: 3 * RawStreamSocket.gatherBelow)
        try loop.submit {
            socket.value.write(Self.pattern(1))
            socket.value.write(large)              // joins the gathered bytes: order kept
            socket.value.writeAndClose(Self.pattern(2))
        }.wait()
        var got: [UInt8] = []
        for _ in 0..<100 {                           // bounded; a unix pair delivers at once
            let part = readAvailable()
            if part.isEmpty { if got.count >= Self.chunk * 2 + large.readableBytes { break }; usleep(1_000); continue }
            got += part
        }
        var expected = [UInt8](repeating: 1, count: Self.chunk)
        expected += [UInt8](repeating: 0xEE, count: large.readableBytes)
        expected += [UInt8](repeating: 2, count: Self.chunk)
        XCTAssertEqual(got.count, expected.count)
        XCTAssertTrue(got == expected, "bytes out of order")
        // writeAndClose sent what was gathered and closed: the peer sees end of file.
        var byte: UInt8 = 0
        XCTAssertEqual(recv(peer, &byte, 1, Int32(MSG_DONTWAIT)), 0)
    }
}
