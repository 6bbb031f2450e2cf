import NIOCore
import NIOPosix
import XCTest
@testable import SkywireSocks
import SkywireIO
import SkywireTestSupport
import SkywireTransport

/// `LoopbackAppStream`: delivery honours a delegate handover made inside a delegate callback.
final class LoopbackAppStreamTests: XCTestCase {
    typealias Recorder = AppStreamRecorder

    /// Takes the first chunk, then hands the stream to `next` the way `SkynetOpening` and its
    /// forwarder do: pause, new delegate, resume, all inside the callback.
    final class HandOver: AppStreamDelegate {
        let next: Recorder
        var first: [UInt8]?
        var laterEvents = 0
        init(next: Recorder) { self.next = next }
        func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
            guard first == nil else { laterEvents += 1; return }
            first = Array(data.readableBytesView)
            stream.setReadPaused(true)
            stream.setDelegate(next)
            stream.setReadPaused(false)
        }
        func appStreamDidReceiveFinish(_ stream: AppStream) { laterEvents += 1 }
        func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { laterEvents += 1 }
        func appStreamWritabilityChanged(_ stream: AppStream) {}
    }

    /// A reply, a banner and FIN already wait in the inbox when the first delivery runs: the banner
    /// and FIN go to the delegate set during the reply's callback (they went to the old one, which
    /// dropped them: the application saw EOF without the banner).
    func testDelegateSetInsideACallbackGetsTheRestAndTheFinish() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let (opener, acceptor) = LoopbackAppStream.makePair(on: loop)
        let recorder = Recorder()
        let handOver = HandOver(next: recorder)
        let pair = LoopTransfer(value: (opener, acceptor, handOver, recorder))
        try loop.submit {
            pair.value.0.write(ByteBuffer(string: "reply"))
            pair.value.0.write(ByteBuffer(string: "banner"))
            pair.value.0.finish()
        }.wait()
        // The transfer ran before this task (queued first): all of it waits in the acceptor's inbox.
        try loop.submit { pair.value.1.setDelegate(pair.value.2) }.wait()
        // A few loop rounds for deliveries scheduled from inside the callbacks (bounded).
        for _ in 0..<10 { try loop.submit {}.wait() }
        let (first, laterEvents, received, finished) = try loop.submit {
            (pair.value.2.first, pair.value.2.laterEvents, pair.value.3.received, pair.value.3.finished)
        }.wait()
        XCTAssertEqual(first, Array("reply".utf8))
        XCTAssertEqual(laterEvents, 0, "the old delegate got events after the handover")
        XCTAssertEqual(received, Array("banner".utf8))
        XCTAssertTrue(finished)
    }
}
