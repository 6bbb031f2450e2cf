#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport
import XCTest
@testable import SkywireVisor

/// `SocketAppStream` (the pty app's end of its session-host socket) and `RawUnixSocket.connect`:
/// one end of a unix socketpair on an `EpollEventLoop`, the other read and written here.
final class SocketAppStreamTests: XCTestCase {
    /// Records a stream's events (loop thread only).
    private final class Recorder: AppStreamDelegate, @unchecked Sendable {
        // @unchecked Sendable: touched only on the stream's loop (the test reads it through `submit`).
        var received = ByteBuffer()
        var finished = false
        var reset: AppStreamResetCode?
        var writableAgain = false
        func appStream(_ stream: AppStream, didReceive data: ByteBuffer) { var d = data; received.writeBuffer(&d) }
        func appStreamDidReceiveFinish(_ stream: AppStream) { finished = true }
        func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { reset = code }
        func appStreamWritabilityChanged(_ stream: AppStream) { if stream.isWritable { writableAgain = true } }
    }

    private var loop: EpollEventLoop!
    private var peer: Int32 = -1
    private var stream: SocketAppStream!
    private let recorder = Recorder()

    override func setUpWithError() throws {
        loop = try EpollEventLoop(name: "socket-stream-test")
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        peer = fds[1]
        let mine = LoopTransfer(value: OwnedDescriptor(taking: fds[0]))
        let recorder = self.recorder
        let loop = self.loop!
        stream = try loop.submit {
            let stream = try SocketAppStream(loop: loop, socket: mine.value, remoteKeyHex: "")
            stream.setDelegate(recorder)
            return LoopTransfer(value: stream)
        }.wait().value
    }

    override func tearDown() {
        if let stream { let s = LoopTransfer(value: stream); try? loop.submit { s.value.reset(.appClosed) }.wait() }
        stream = nil
        if peer >= 0 { close(peer) }
        loop.shutdown()
        loop = nil
    }

    /// Writes past the high-water mark stop at "not writable"; what is queued stays bounded; the
    /// peer reading everything makes the stream writable again, and the bytes arrive in order.
    func testWritesAreBoundedAndResumeWhenThePeerReads() throws {
        let chunk = 16 * 1024
        let stream = LoopTransfer(value: self.stream!)
        let limit = 64 * 1024 * 1024  // far above any socket buffer: the loop must stop before it
        let written = try loop.submit { () -> Int in
            var total = 0
            while stream.value.isWritable && total < limit {
                stream.value.write(ByteBuffer(bytes: (0..<chunk).map { UInt8(truncatingIfNeeded: (total + $0) % 251) }))
                total += chunk
            }
            return total
        }.wait()
        XCTAssertLessThan(written, limit, "never became not writable")
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let deadline = ContinuousClock.now + .seconds(30)
        while got.count < written && ContinuousClock.now < deadline {
            let n = read(peer, &buffer, buffer.count)
            if n > 0 { got += buffer[0..<n] } else { usleep(1000) }
        }
        XCTAssertEqual(got.count, written)
        XCTAssertTrue(got.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) }, "bytes out of order")
        let recorder = self.recorder
        XCTAssertTrue(try loop.submit { recorder.writableAgain && stream.value.isWritable }.wait())
    }

    /// Bytes and FIN from the peer reach the delegate; `finish` is the peer's EOF; no reset.
    func testReadsAndHalfClose() throws {
        XCTAssertEqual(write(peer, "hello", 5), 5)
        XCTAssertEqual(shutdown(peer, Int32(SHUT_WR)), 0)
        let recorder = self.recorder
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, !(try loop.submit { recorder.finished }.wait()) { usleep(1000) }
        let (text, finished, reset) = try loop.submit { (String(buffer: recorder.received), recorder.finished, recorder.reset) }.wait()
        XCTAssertEqual(text, "hello")
        XCTAssertTrue(finished)
        XCTAssertNil(reset)
        let stream = LoopTransfer(value: self.stream!)
        try loop.submit { stream.value.finish() }.wait()
        var byte: UInt8 = 0
        var n = -1
        while ContinuousClock.now < deadline { n = read(peer, &byte, 1); if n >= 0 { break }; usleep(1000) }
        XCTAssertEqual(n, 0, "no EOF after finish")
    }

    /// A path longer than `sun_path`, and one nobody listens on, are refused with the errno.
    func testUnixConnectRefusals() {
        let long = "/tmp/" + String(repeating: "x", count: RawUnixSocket.maxPathLength)
        XCTAssertThrowsError(try RawUnixSocket.connect(path: long)) { XCTAssertEqual(($0 as? SystemError)?.errno, ENAMETOOLONG) }
        let missing = "/tmp/skw-nobody-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        XCTAssertThrowsError(try RawUnixSocket.connect(path: missing)) { XCTAssertEqual(($0 as? SystemError)?.errno, ENOENT) }
    }
}
