import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Slowloris: many TCP connections that each send an HTTP request head a few bytes at a time
/// and never finish it. Reports how many the server closed and when (the discovery service's
/// request deadline, docs/discovery.md). socket(2), connect(2), send(2), recv(2) with MSG_DONTWAIT.
struct Slowloris: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slowloris",
        abstract: "Hold HTTP connections open with a never-ending request head; print when the server closed them.")

    @Option(help: "The HTTP server, IPv4:PORT.")
    var to: String

    @Option(help: "Connections, 1...2000.")
    var connections: Int = 50

    @Option(name: .customLong("interval-ms"), help: "Milliseconds between two header lines on each connection, 10...10000.")
    var intervalMs: Int = 500

    @Option(name: .customLong("max-seconds"), help: "Stop after this many seconds, 1...300.")
    var maxSeconds: Int = 30

    static let requestLine = "GET /v1/info HTTP/1.1\r\nHost: x\r\n"
    static let headerLine = "X-Slow: a\r\n"

    func validate() throws {
        guard (1...2000).contains(connections) else { throw ValidationError("--connections: 1...2000") }
        guard (10...10_000).contains(intervalMs) else { throw ValidationError("--interval-ms: 10...10000") }
        guard (1...300).contains(maxSeconds) else { throw ValidationError("--max-seconds: 1...300") }
    }

    func run() throws {
        let parts = to.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw ValidationError("--to \(to): expected IPv4:PORT") }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, String(parts[0]), &sin.sin_addr) == 1 else { throw ValidationError("--to \(to): not an IPv4 address") }
        let start = Self.now()
        var open: [Int32] = []
        var refused = 0
        for _ in 0..<connections {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { refused += 1; continue }
            let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0, Self.send(fd, Self.requestLine) else { close(fd); refused += 1; continue }
            open.append(fd)
        }
        let opened = open.count
        var lastClosed = 0.0
        while !open.isEmpty && Self.now() - start < Double(maxSeconds) {
            usleep(useconds_t(intervalMs * 1000))
            open = open.filter { fd in
                var probe = [UInt8](repeating: 0, count: 256)
                let n = probe.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                let closedByServer = n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || !Self.send(fd, Self.headerLine)
                if closedByServer {
                    close(fd)
                    lastClosed = Self.now() - start
                }
                return !closedByServer
            }
        }
        for fd in open { close(fd) }
        print("opened=\(opened) refused=\(refused) closed_by_server=\(opened - open.count) still_open=\(open.count) last_closed_s=\((lastClosed * 10).rounded() / 10)")
    }

    static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Seconds on CLOCK_MONOTONIC.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
