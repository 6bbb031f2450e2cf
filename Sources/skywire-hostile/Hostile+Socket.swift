#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The plain sockets the attacks use (test tool: blocking or polled, no event loop).
enum HostileSocket {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `HOST:PORT` (an IP literal) as a socket address.
    static func address(_ text: String) throws -> SocketAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw Failure(description: "expected HOST:PORT, got \(text)")
        }
        let host = String(text[..<colon].filter { $0 != "[" && $0 != "]" })
        return try SocketAddress(ipAddress: host, port: port)
    }

    /// A non-blocking UDP socket for `target`'s family.
    static func udp(for target: SocketAddress) throws -> Int32 {
        let fd = socket(Int32(target.protocol.rawValue), Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket(udp): errno \(errno)") }
        return fd
    }

    /// Sends one datagram; false when the kernel refused it (e.g. a full buffer).
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8], to target: SocketAddress) -> Bool {
        target.withSockAddr { addr, len in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, addr, socklen_t(len)) == $0.count }
        }
    }

    /// Reads every datagram waiting on a non-blocking socket; returns their sizes.
    static func drain(_ fd: Int32) -> [Int] {
        var sizes: [Int] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n >= 0 else { return sizes }
            sizes.append(n)
        }
    }

    /// A blocking TCP connection to `target` with send/receive timeouts of `timeoutSeconds`.
    static func tcp(to target: SocketAddress, timeoutSeconds: Int) throws -> Int32 {
        let fd = socket(Int32(target.protocol.rawValue), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket(tcp): errno \(errno)") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = target.withSockAddr { addr, len in connect(fd, addr, socklen_t(len)) }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw Failure(description: "connect: errno \(e)")
        }
        return fd
    }

    /// Reads up to `count` bytes (blocking, with the socket's timeout); fewer on EOF or timeout.
    static func read(_ fd: Int32, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while out.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            guard n > 0 else { break }
            out += buffer[0..<n]
        }
        return out
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Monotonic seconds.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        nanosleep(&ts, nil)
    }
}
