import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for the control socket, used by `skywire cli`.
public struct ControlClient {
    public let path: String
    /// Seconds to wait for an answer; long operations (transport dials, pings) pass more.
    public var timeout: Int

    public init(path: String, timeout: Int = 30) {
        self.path = path
        self.timeout = timeout
    }

    /// True when something accepts connections at `path`.
    public static func isServing(path: String) -> Bool {
        guard let fd = try? connect(path: path) else { return false }
        fd.close()
        return true
    }

    /// Sends one request and waits for its response; throws `ControlError` for errors the
    /// visor reported and for a socket that cannot be reached.
    public func call(_ method: String, _ params: [String: ControlValue] = [:]) throws -> ControlValue {
        let fd: OwnedDescriptor
        do {
            fd = try Self.connect(path: path)
        } catch let e as SystemError {
            let hint = e.errno == ENOENT || e.errno == ECONNREFUSED
                ? "is the visor running? (skywire visor -c CONFIG)"
                : (e.errno == EACCES ? "the control socket is root only" : "")
            throw ControlError(.unavailable, "cannot reach the visor at \(path): \(e)\(hint.isEmpty ? "" : "; " + hint)")
        }
        defer { fd.close() }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        _ = setsockopt(fd.raw, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let line = try ControlCodec.encodeLine(ControlRequest(method: method, params: params))
        try line.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = try syscall("write") { write(fd.raw, raw.baseAddress! + off, raw.count - off) }
                off += n
            }
        }
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var complete = false
        while !complete {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { buf in
                    try syscall("read") { read(fd.raw, buf.baseAddress!, buf.count) }
                }
            } catch let e as SystemError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
                throw ControlError(.timeout, "the visor did not answer \(method) within \(timeout) s")
            }
            if n == 0 { throw ControlError(.unavailable, "the visor closed the control connection") }
            // Only the new bytes are searched for the end of the line (a long `tp ls` comes in
            // many chunks).
            complete = chunk[0..<n].contains(UInt8(ascii: "\n"))
            response.append(contentsOf: chunk[0..<n])
            if response.count > ControlCodec.maxResponseBytes {
                throw ControlError(.failed, "response too long (over \(ControlCodec.maxResponseBytes) bytes)")
            }
        }
        let body = Array(response.prefix(while: { $0 != UInt8(ascii: "\n") }))
        let decoded = try ControlCodec.decode(ControlResponse.self, from: body)
        if let err = decoded.error {
            throw ControlError(ControlError.Code(rawValue: err.code) ?? .failed, err.message)
        }
        return decoded.result ?? .null
    }

    static func connect(path: String) throws -> OwnedDescriptor {
        BlockingPool.assertMayBlock("connect(\(path))")
        let raw = try syscall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let fd = OwnedDescriptor(taking: raw)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            throw ControlError(.badRequest, "control socket path is longer than \(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in
            dst.copyBytes(from: bytes)
            dst[bytes.count] = 0
        }
        try withUnsafePointer(to: &addr) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try syscall("connect(\(path))") { Glibc.connect(fd.raw, sa, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        return fd
    }
}
