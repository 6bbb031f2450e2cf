import SkywireDiscovery
import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP exchange with the discovery service (the CLI's list commands; in the visor
/// on `BlockingPool.shared`): getaddrinfo(3), connect(2) and read(2) bounded by SO_SNDTIMEO / SO_RCVTIMEO.
public enum DiscoveryHTTPClient {
    public static func exchange(_ url: DiscoveryURL, method: String, target: String,
                                headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                                timeoutSeconds: Int = 10) throws(DiscoveryError) -> (status: Int, body: [UInt8]) {
        BlockingPool.assertMayBlock("the discovery HTTP client (\(method) \(target))")
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(url.host, String(url.port), &hints, &res)
        guard rc == 0, let first = res else {
            throw DiscoveryError(502, "cannot resolve discovery host \(url.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            defer { close(fd) }
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 else {
                lastError = "connect: \(String(cString: strerror(errno)))"
                continue
            }
            let req = DiscoveryHTTP.request(method: method, target: target, host: url.host, headers: headers, body: body)
            var sent = 0
            while sent < req.count {
                let n = req.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw DiscoveryError(502, "discovery \(url.host):\(url.port): write: \(String(cString: strerror(errno)))") }
                sent += n
            }
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw DiscoveryError(504, "discovery \(url.host):\(url.port): no answer within \(timeoutSeconds) s") }
                if n == 0 { break }
                out += chunk[0..<n]
                guard out.count <= DiscoveryHTTP.maxResponseBytes else { throw DiscoveryError(502, "discovery response over \(DiscoveryHTTP.maxResponseBytes) bytes") }
            }
            return try DiscoveryHTTP.parseResponse(out)
        }
        throw DiscoveryError(502, "cannot reach discovery \(url.host):\(url.port): \(lastError)")
    }
}
