#if canImport(Glibc)
import Glibc
#endif
import CSkywireShim
import NIOCore
import SkywireSystem

/// A listening TCP socket on an `EpollEventLoop` without a NIO channel (`RawTCPSocket.listen`:
/// SO_REUSEADDR; TCP_NODELAY, which accepted sockets inherit), and accept4(2) of non-blocking,
/// close-on-exec connections handed to `onAccept` (which owns them). Running out of descriptors or
/// memory pauses accepting for `acceptBackoff` (NIO's `AcceptBackoffHandler` does the same). Loop
/// thread only.
public final class RawTCPListener {
    /// Connections accepted per readiness report, so one busy listener cannot starve the loop.
    static let maxAcceptsPerWake = 64
    static let acceptBackoff: TimeAmount = .seconds(1)

    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    private let onAccept: (Int32) -> Void
    private var backoff: Scheduled<Void>?
    /// accept4(2) errors that concern only the connection being accepted (accept(2), ERRORS).
    private static let droppedConnectionErrors: Set<Int32> = [ECONNABORTED, EPROTO, EPERM]
    /// Readiness reports handled (tests check that exhaustion does not spin the loop).
    private(set) var acceptRounds = 0
    /// The bound address (the chosen port when asked for port 0).
    public let localAddress: SocketAddress?

    /// Binds and listens on `address`, watched on `loop`. Call on `loop`.
    public init(loop: EpollEventLoop, address: SocketAddress, backlog: Int32,
                onAccept: @escaping (Int32) -> Void) throws {
        precondition(loop.inEventLoop)
        self.loop = loop
        self.onAccept = onAccept
        descriptor = try RawTCPSocket.listen(on: address, backlog: backlog)
        // Accepted sockets inherit TCP_NODELAY from the listener (Linux copies the socket), so
        // no setsockopt per connection; RawTCPConnectorTests checks it.
        RawTCPSocket.setNoDelay(descriptor.raw)
        localAddress = RawTCPSocket.localAddress(descriptor.raw)
        // The watch holds the listener until `close`.
        try loop.watch(descriptor.raw, interest: .read) { [self] _ in acceptReady() }
    }

    /// Stops accepting and closes the socket. Call on the loop.
    public func close() {
        guard descriptor.isOpen else { return }
        backoff?.cancel()
        loop.unwatch(descriptor.raw)
        descriptor.close()
    }

    private func acceptReady() {
        acceptRounds &+= 1
        for _ in 0..<Self.maxAcceptsPerWake where descriptor.isOpen {
            do {
                guard case .processed(let fd) = try syscallNonBlocking("accept4", { skw_accept_nonblock(descriptor.raw) })
                else { return }
                onAccept(fd)
            } catch let error as SystemError where Self.droppedConnectionErrors.contains(error.errno) {
                continue  // that connection is gone; the next one may be fine
            } catch {
                pauseAccepting()
                return
            }
        }
    }

    /// EMFILE / ENFILE / ENOBUFS / ENOMEM: stop accepting for a while instead of spinning.
    private func pauseAccepting() {
        guard backoff == nil else { return }
        try? loop.setInterest(descriptor.raw, [])
        backoff = loop.assumeIsolated().scheduleTask(in: Self.acceptBackoff) { [self] in
            backoff = nil
            guard descriptor.isOpen else { return }
            try? loop.setInterest(descriptor.raw, .read)
        }
    }
}
