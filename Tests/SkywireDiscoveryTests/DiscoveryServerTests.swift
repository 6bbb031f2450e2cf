import Foundation
import Logging
import NIOCore
import SkywireDiscovery
@testable import SkywireDiscoveryServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The running service on loopback: the request deadline against a slow client, and the per-IP
/// limit with the address taken from the connection.
final class DiscoveryServerTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "skywire-disc-srv-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func start(deadline: TimeAmount = .seconds(10), limits: DiscoveryRateLimits = DiscoveryRateLimits(),
               connections: DiscoveryConnectionLimits = .standard) async throws -> DiscoveryServer {
        try await DiscoveryServer.start(store: DiscoveryStoreURL.open("sqlite:\(dir)/db.sqlite"),
                                        http: SocketAddress(ipAddress: "127.0.0.1", port: 0),
                                        udp: SocketAddress(ipAddress: "127.0.0.1", port: 0), ttlSeconds: 60, udpAnnounce: nil,
                                        limits: limits, requestDeadline: deadline, connectionLimits: connections,
                                        logger: Logger(label: "test"))
    }

    /// A blocking TCP socket connected to 127.0.0.1:`port`.
    func connectLoopback(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("no socket") }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(port).bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw XCTSkip("connect: \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Everything until EOF (SO_RCVTIMEO 5 s per read).
    func readAll(_ fd: Int32) -> String {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `GET /v1/info` on a new connection is answered 200.
    func assertInfoAnswered(_ port: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let fd = try connectLoopback(port)
        defer { close(fd) }
        XCTAssertTrue(send(fd, "GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), file: file, line: line)
        let answer = readAll(fd)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer, file: file, line: line)
    }

    /// A client that sends its head one byte every 100 ms (each byte resets an idle timer) is
    /// disconnected at the deadline; a normal client is served meanwhile.
    func testSlowClientIsCutAtTheRequestDeadline() async throws {
        let server = try await start(deadline: .seconds(1))
        let port = try XCTUnwrap(server.httpAddress.port)
        let fd = try connectLoopback(port)
        defer { close(fd) }
        let started = DispatchTime.now().uptimeNanoseconds
        var closedAfter: Double? = nil
        let trickle = Array("GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: " + String(repeating: "a", count: 200))
        for ch in trickle {
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            if !send(fd, String(ch)) { closedAfter = elapsed; break }
            var probe = [UInt8](repeating: 0, count: 512)
            let n = probe.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n >= 0 { closedAfter = elapsed; break }   // EOF (or an answer to half a request)
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { closedAfter = elapsed; break }
            // Normal clients are served while the slow one trickles.
            if ch == "X" {
                try assertInfoAnswered(port)
            }
            try await Task.sleep(nanoseconds: 100_000_000)
            if elapsed > 15 { break }
        }
        // Generous bounds: deadline 1 s, 20 s of trickle available.
        let after = try XCTUnwrap(closedAfter, "the slow client was never cut off")
        XCTAssertGreaterThan(after, 0.5)
        XCTAssertLessThan(after, 8)
        await server.stop()
    }

    /// An idle keep-alive connection is closed at the deadline after its last answer.
    func testIdleKeepAliveIsClosedAtTheDeadline() async throws {
        let server = try await start(deadline: .seconds(1))
        let fd = try connectLoopback(try XCTUnwrap(server.httpAddress.port))
        defer { close(fd) }
        XCTAssertTrue(send(fd, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n"))
        let started = DispatchTime.now().uptimeNanoseconds
        let text = readAll(fd)   // 200, then (after the deadline) EOF; readAll gives up after 5 s without a byte
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), text)
        XCTAssertLessThan(elapsed, 4.5, "the idle connection was not closed")
        await server.stop()
    }

    /// The per-IP limit uses the connection's address: the third write from 127.0.0.1 within
    /// the burst of 2 is answered 429 with Retry-After, and reads are still answered.
    func testPerAddressLimitOverHTTP() async throws {
        let server = try await start(limits: DiscoveryRateLimits(perIP: RateLimit(perSecond: 0.01, burst: 2)))
        let port = try XCTUnwrap(server.httpAddress.port)
        let pk = String(repeating: "ab", count: 32)
        var answers: [String] = []
        for _ in 0..<3 {
            let fd = try connectLoopback(port)
            XCTAssertTrue(send(fd, "DELETE /v1/transports/\(pk) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
            answers.append(readAll(fd))
            close(fd)
        }
        XCTAssertTrue(answers[0].hasPrefix("HTTP/1.1 401") || answers[0].hasPrefix("HTTP/1.1 400"), answers[0])
        XCTAssertTrue(answers[2].hasPrefix("HTTP/1.1 429"), answers[2])
        XCTAssertTrue(answers[2].lowercased().contains("retry-after: "), answers[2])
        XCTAssertTrue(answers[2].contains("too many writes from this address"), answers[2])
        try assertInfoAnswered(port)
        await server.stop()
    }

    /// A request head over NIO's parser limit (80 KiB) is refused and the connection closed;
    /// the service keeps answering.
    func testOversizedHeadRefused() async throws {
        let server = try await start()
        let port = try XCTUnwrap(server.httpAddress.port)
        let fd = try connectLoopback(port)
        _ = send(fd, "GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 100 * 1024) + "\r\n\r\n")
        let answer = readAll(fd)
        close(fd)
        XCTAssertFalse(answer.hasPrefix("HTTP/1.1 200"), answer)
        try assertInfoAnswered(port)
        await server.stop()
    }

    /// Connections over the per-address cap are closed at once; a slot freed is usable again.
    func testConnectionsPerAddressAreCapped() async throws {
        let server = try await start(connections: DiscoveryConnectionLimits(total: 100, perAddress: 2))
        let port = try XCTUnwrap(server.httpAddress.port)
        let held = [try connectLoopback(port), try connectLoopback(port)]
        let third = try connectLoopback(port)
        XCTAssertTrue(send(third, "GET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        XCTAssertEqual(readAll(third), "", "a third connection from the same address was served")
        close(third)
        close(held[0])
        try await Task.sleep(nanoseconds: 200_000_000)
        try assertInfoAnswered(port)
        close(held[1])
        await server.stop()
    }

    /// The limiter's table never holds more than its capacity whatever the number of keys, and a
    /// key limited just now stays limited while strangers churn the table.
    func testLimiterTableIsBounded() {
        let table = TokenBucketTable<String>(limit: RateLimit(perSecond: 1, burst: 1), capacity: 100)
        let now: Int64 = 1_000_000
        XCTAssertNil(table.take("victim", nowMs: now))
        XCTAssertNotNil(table.take("victim", nowMs: now))
        for i in 0..<99 { XCTAssertNil(table.take("k\(i)", nowMs: now)) }
        XCTAssertNotNil(table.take("victim", nowMs: now + 1), "a limited key was evicted")
        for i in 0..<10_000 { _ = table.take("x\(i)", nowMs: now + 2) }
        XCTAssertLessThanOrEqual(table.count, 100)
    }

    /// A full table drops refilled buckets first, then the least recently used (not a key that
    /// was just limited); once everything has refilled, one sweep empties it.
    func testLimiterEvictsRefilledThenOldest() {
        let table = TokenBucketTable<String>(limit: RateLimit(perSecond: 1, burst: 2), capacity: 10)
        for i in 0..<9 { XCTAssertNil(table.take("k\(i)", nowMs: 0)) }
        XCTAssertNil(table.take("limited", nowMs: 100))
        XCTAssertNil(table.take("limited", nowMs: 100))
        XCTAssertEqual(table.count, 10)
        XCTAssertNil(table.take("n1", nowMs: 500))   // full: nothing refilled, the oldest (a k) goes
        XCTAssertEqual(table.count, 10)
        XCTAssertNotNil(table.take("limited", nowMs: 600), "the limited key was evicted before older ones")
        XCTAssertNil(table.take("n2", nowMs: 5_000))  // everything has refilled: all dropped
        XCTAssertEqual(table.count, 1)
    }
}
