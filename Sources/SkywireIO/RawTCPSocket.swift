#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// Non-blocking TCP sockets for the epoll datapath (socket(2), bind(2), listen(2), accept4(2),
/// connect(2)), addressed with NIO's `SocketAddress`. Every descriptor is created non-blocking and
/// close-on-exec.
public enum RawTCPSocket {
    private static let streamNonBlocking = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        | Int32(SOCK_CLOEXEC.rawValue)

    /// A listening socket bound to `address` (SO_REUSEADDR set).
    public static func listen(on address: SocketAddress, backlog: Int32) throws -> OwnedDescriptor {
        let socket = OwnedDescriptor(taking: try syscall("socket") {
            Glibc.socket(Int32(address.protocol.rawValue), streamNonBlocking, 0)
        })
        try setOption(socket.raw, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, call: "setsockopt(SO_REUSEADDR)")
        try address.withSockAddr { sa, length in
            _ = try syscall("bind(\(address))") { Glibc.bind(socket.raw, sa, socklen_t(length)) }
        }
        try syscall("listen") { Glibc.listen(socket.raw, backlog) }
        return socket
    }

    /// Starts a non-blocking connect(2) to `address` (TCP_NODELAY set). `inProgress` is true for
    /// EINPROGRESS: wait until writable, then read `connectError`.
    public static func connect(to address: SocketAddress) throws -> (socket: OwnedDescriptor, inProgress: Bool) {
        let socket = OwnedDescriptor(taking: try syscall("socket") {
            Glibc.socket(Int32(address.protocol.rawValue), streamNonBlocking, 0)
        })
        setNoDelay(socket.raw)
        let rc = address.withSockAddr { sa, length in Glibc.connect(socket.raw, sa, socklen_t(length)) }
        if rc == 0 { return (socket, false) }
        let err = errno
        if err == EINPROGRESS || err == EINTR { return (socket, true) }  // EINTR: the connect goes on
        throw SystemError(call: "connect(\(address))", errno: err)
    }

    /// Whether a connect that reported EINPROGRESS has completed already (a second connect(2):
    /// EISCONN), as one to a local address usually has by the time the first returns, which saves
    /// waiting for writability. False while in progress; throws the connect's error if it failed.
    public static func connectFinished(_ fd: Int32, to address: SocketAddress) throws -> Bool {
        let rc = address.withSockAddr { sa, length in Glibc.connect(fd, sa, socklen_t(length)) }
        if rc == 0 { return true }
        switch errno {
        case EISCONN: return true
        case EALREADY, EINPROGRESS, EINTR: return false
        case let err: throw SystemError(call: "connect(\(address))", errno: err)
        }
    }

    /// The outcome of a connect that was in progress (SO_ERROR): nil when connected.
    public static func connectError(_ fd: Int32) -> SystemError? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) == 0 else {
            return SystemError(call: "getsockopt(SO_ERROR)", errno: errno)
        }
        return value == 0 ? nil : SystemError(call: "connect", errno: value)
    }

    /// TCP_NODELAY: mux frames and SOCKS replies leave at once.
    public static func setNoDelay(_ fd: Int32) {
        _ = try? setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, call: "setsockopt(TCP_NODELAY)")
    }

    /// getsockname(2).
    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        address(of: fd, getsockname)
    }

    /// getpeername(2).
    public static func peerAddress(_ fd: Int32) -> SocketAddress? {
        address(of: fd, getpeername)
    }

    private static func address(of fd: Int32,
                                _ query: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32)
        -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(fd, $0, &length) == 0 ? SocketAddress($0) : nil }
        }
    }

    private static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, call: String) throws {
        var value = value
        try syscall(call) { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }
}

extension SocketAddress {
    /// An IPv4 or IPv6 `sockaddr` as a `SocketAddress` (nil for other families); `host` only names it.
    public init?(_ address: UnsafePointer<sockaddr>, host: String = "") {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            self.init(address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }, host: host)
        case AF_INET6:
            self.init(address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }, host: host)
        default:
            return nil
        }
    }
}
