import Dispatch
import NIOConcurrencyHelpers
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
import SkywireTestSupport
import SkywireTransport
import XCTest
@testable import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// The visor's blocking HTTP to discovery runs on the blocking pool, not on the Swift
/// cooperative pool (issue 17): slow answers leave other async work running.
final class DiscoveryBlockingTests: XCTestCase {
    /// One more lookup than the cooperative pool has threads, each answered after 1 s: an async
    /// heartbeat (10 ms sleeps) keeps beating meanwhile (generous bound: no gap over 500 ms; with
    /// the HTTP on cooperative threads the gap was the full second). Every lookup still gets its
    /// answer (a 404: "not found").
    func testSlowDiscoveryAnswersDoNotStallTheCooperativePool() async throws {
        let lookups = ProcessInfo.processInfo.activeProcessorCount + 1
        let server = try SlowHTTPServer(connections: lookups, delayMicros: 1_000_000)
        let resolver = DiscoveryResolver(url: try DiscoveryURL("http://127.0.0.1:\(server.port)"), keyPair: KeyPair.generate())
        let key = KeyPair.generate().publicKey

        let heartbeat = Task { () -> UInt64 in
            var last = DispatchTime.now().uptimeNanoseconds
            let end = last + 1_800_000_000
            var worst: UInt64 = 0
            while last < end {
                try? await Task.sleep(nanoseconds: 10_000_000)
                let now = DispatchTime.now().uptimeNanoseconds
                worst = max(worst, now - last)
                last = now
            }
            return worst
        }
        try await Task.sleep(nanoseconds: 100_000_000)   // the heartbeat is beating
        let notFound = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<lookups {
                group.addTask {
                    do { _ = try await resolver.resolve(key); return false } catch let e as TransportError { return e.kind == .notFound } catch { return false }
                }
            }
            var n = 0
            for await ok in group where ok { n += 1 }
            return n
        }
        let worst = await heartbeat.value
        server.join()
        XCTAssertEqual(notFound, lookups, "every lookup got the service's 404")
        XCTAssertLessThan(worst, 500_000_000, "an async heartbeat stalled \(worst / 1_000_000) ms while discovery answered slowly")
    }
}

/// An HTTP server on 127.0.0.1 that accepts `connections` connections and answers each with a
/// 404 `delayMicros` after reading its request, one thread per connection; then stops.
private final class SlowHTTPServer: @unchecked Sendable {
    // @unchecked Sendable: `fd` and `port` are set in init; `threads` is guarded by `lock`.
    let port: UInt16
    private let fd: Int32
    private let lock = NIOLock()
    private var threads: [SystemThread] = []
    private var acceptor: SystemThread?

    init(connections: Int, delayMicros: useconds_t) throws {
        (fd, port) = try boundLoopbackSocket(Int32(SOCK_STREAM.rawValue))
        guard listen(fd, Int32(connections)) == 0 else { throw XCTSkip("listen failed") }
        let listener = fd
        acceptor = try SystemThread(name: "slow-http") { [self] in
            for _ in 0..<connections {
                let conn = accept(listener, nil, nil)
                guard conn >= 0 else { return }
                let t = try? SystemThread(name: "slow-http-conn") {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    _ = buffer.withUnsafeMutableBytes { read(conn, $0.baseAddress, $0.count) }
                    usleep(delayMicros)
                    let answer = Array("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".utf8)
                    _ = answer.withUnsafeBytes { write(conn, $0.baseAddress, $0.count) }
                    close(conn)
                }
                if let t { lock.withLock { threads.append(t) } }
            }
        }
    }

    /// Waits for every answer to be sent and closes the listener.
    func join() {
        acceptor?.join()
        for t in lock.withLock({ threads }) { t.join() }
        close(fd)
    }
}
