#if canImport(Glibc)
import Glibc
#endif
import CSkywireShim
import NIOCore
import SkywireSystem
import SkywireTransport

/// A listening TCP socket on an `EpollEventLoop` without a NIO channel: SO_REUSEADDR, TCP_NODELAY
/// (inherited by accepted sockets on Linux, as NIO relies on too), and accept4(2) of non-blocking,
/// close-on-exec connections handed to `onAccept` (which owns them). Running out of descriptors or
/// memory pauses accepting for `acceptBackoff` (NIO's `AcceptBackoffHandler` does the same).
/// Loop thread only.
final class RawSocksListener {
    /// Connections accepted per readiness report, so one busy listener cannot starve the loop.
    static let maxAcceptsPerWake = 64
    static let acceptBackoff: TimeAmount = .seconds(1)

    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    private let onAccept: (Int32) -> Void
    private var backoff: Scheduled<Void>?
    /// The bound address (the chosen port when asked for port 0).
    let localAddress: SocketAddress?

    init(loop: EpollEventLoop, address: SocketAddress, backlog: Int32, onAccept: @escaping (Int32) -> Void) throws {
        self.loop = loop
        self.onAccept = onAccept
        let family = address.protocol == .inet6 ? AF_INET6 : AF_INET
        descriptor = OwnedDescriptor(taking: try syscall("socket") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        let fd = descriptor.raw
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        try syscall("setsockopt(SO_REUSEADDR)") { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) }
        try syscall("setsockopt(TCP_NODELAY)") { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, size) }
        do {
            try syscall("bind") { address.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) } }
        } catch let error as SystemError {
            throw IOError(errnoCode: error.errno, reason: "bind(\(address))")
        }
        try syscall("listen") { listen(fd, backlog) }
        localAddress = SocketAddress.of(fd, peer: false)
        try loop.watch(fd, interest: .read) { [unowned self] _ in acceptReady() }
    }

    func close() {
        guard descriptor.isOpen else { return }
        backoff?.cancel()
        loop.unwatch(descriptor.raw)
        descriptor.close()
    }

    private func acceptReady() {
        for _ in 0..<Self.maxAcceptsPerWake {
            guard descriptor.isOpen else { return }
            let fd = skw_accept_nonblock(descriptor.raw)
            if fd >= 0 {
                onAccept(fd)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO, EPERM:
                continue  // that connection is gone; the next one may be fine
            default:
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
