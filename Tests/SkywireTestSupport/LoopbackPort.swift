import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A socket of `type` (SOCK_STREAM / SOCK_DGRAM, flags allowed) bound to 127.0.0.1 on a free port
/// (bind(2) to port 0, getsockname(2)); the caller owns `fd`.
public func boundLoopbackSocket(_ type: Int32) throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, type, 0)
    guard fd >= 0 else { throw XCTSkip("no socket of type \(type)") }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            guard bind(fd, p, len) == 0 else { return -1 }
            return getsockname(fd, p, &len)
        }
    }
    guard rc == 0 else {
        close(fd)
        throw XCTSkip("cannot bind a socket on 127.0.0.1")
    }
    return (fd, UInt16(bigEndian: sin.sin_port))
}

/// A port on 127.0.0.1 that nothing uses right now (a socket of `type` bound, read, closed).
public func unusedLoopbackPort(_ type: Int32) throws -> UInt16 {
    let (fd, port) = try boundLoopbackSocket(type)
    close(fd)
    return port
}
