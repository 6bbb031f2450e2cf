#if canImport(Glibc)
import Glibc
#endif
import SkywireSystem

/// Non-blocking AF_UNIX stream sockets for the epoll datapath (socket(2), connect(2)), for a
/// connection to a local service that must share a stream's `EpollEventLoop` (the pty app's
/// session host, docs/pty.md "Session host"). Descriptors are non-blocking and close-on-exec.
public enum RawUnixSocket {
    private static let streamNonBlocking = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        | Int32(SOCK_CLOEXEC.rawValue)

    /// The longest path a `sockaddr_un` holds (`sun_path` less its terminating NUL), unix(7).
    public static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// connect(2) to the unix stream socket at `path`. A local connect completes at once or fails
    /// (unix(7): EAGAIN when the listener's backlog is full, ECONNREFUSED when nobody listens), so
    /// the returned descriptor is connected.
    public static func connect(path: String) throws -> OwnedDescriptor {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathLength else {
            throw SystemError(call: "connect(\(path))", errno: ENAMETOOLONG)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let socket = OwnedDescriptor(taking: try syscall("socket(AF_UNIX)") { Glibc.socket(AF_UNIX, streamNonBlocking, 0) })
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                _ = try syscall("connect(\(path))") { Glibc.connect(socket.raw, sa, length) }
            }
        }
        return socket
    }
}
