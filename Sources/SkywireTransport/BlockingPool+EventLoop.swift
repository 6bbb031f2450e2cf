import NIOCore
import NIOPosix
import SkywireSystem

/// `BlockingPool` for event-loop callers: the future form, and the debug check's knowledge of
/// SwiftNIO's loop threads.
extension BlockingPool {
    /// Runs `body` on a pool thread; the future completes on `loop` (SwiftNIO's
    /// `NIOThreadPool.runIfActive` shape).
    public func runFuture<T: Sendable>(on loop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        let promise = loop.makePromise(of: T.self)
        submit(body) { promise.completeWith($0) }
        return promise.futureResult
    }

    /// Lets `assertMayBlock` recognise SwiftNIO's event-loop threads (the NIO channels: sudph
    /// receive, control socket, SOCKS); EpollEventLoop marks its own thread. Called by every
    /// `TransportManager`; repeated calls do nothing.
    public static func recogniseNIOEventLoops() {
        addEventLoopProbe(id: "NIOPosix.MultiThreadedEventLoopGroup") { MultiThreadedEventLoopGroup.currentEventLoop != nil }
    }
}
