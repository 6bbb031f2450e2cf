#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import XCTest
@testable import SkywireCrypto
@testable import SkywireTransport

/// Two `EpollEventLoop`s joined by a `RawStcprLink` over a socketpair, each with a `MuxConnection`;
/// streams from A to B's port 7 are piped to a local socket on each side by `RawSocketPipe`.
final class RawSocketPipeTests: XCTestCase {
    private var loopA: EpollEventLoop!
    private var loopB: EpollEventLoop!
    private var connA: MuxConnection!
    private let logger = Logger(label: "raw-pipe-test")
    /// Application ends of B's pipes, in accept order, and how each pipe ended.
    private let accepted = NIOLockedValueBox<[Int32]>([])
    private let closeReasons = NIOLockedValueBox<[String?]>([])

    private struct Conn: @unchecked Sendable {
        // @unchecked Sendable: confined to loop A; the test hands it back to that loop only.
        let connection: MuxConnection
    }

    /// A socketpair: the application's end (blocking) and the pipe's end (non-blocking).
    private static func appAndPipeEnds() -> (app: Int32, pipe: Int32) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    override func setUpWithError() throws {
        loopA = try EpollEventLoop(name: "pipe-a")
        loopB = try EpollEventLoop(name: "pipe-b")
        var link: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &link), 0)
        let keyA = KeyPair.generate(), keyB = KeyPair.generate()
        let router = TestRouter()
        let (loopB, accepted, reasons) = (self.loopB!, accepted, closeReasons)
        router.onStream = { stream, port in
            guard port == 7 else { return .noSuchPort }
            let (app, pipeEnd) = Self.appAndPipeEnds()
            guard let pipe = try? RawSocketPipe(loop: loopB, fd: pipeEnd, stream: stream) else { return .refused }
            pipe.onClose = { reason in reasons.withLockedValue { $0.append(reason) } }
            accepted.withLockedValue { $0.append(app) }
            return nil
        }
        let (logger, loopA) = (self.logger, self.loopA!)
        try loopB.submit {
            _ = try RawStcprLink(loop: loopB, fd: link[1], identity: keyB, expectedRemote: nil, handshakeTimeout: .seconds(5),
                                 logger: logger, hooks: .init(established: { remote, l in
                                     MuxConnection(eventLoop: loopB, isInitiator: false, remote: remote, link: l,
                                                   router: router, logger: logger)
                                 }, closed: { _ in }))
        }.wait()
        let up = loopA.makePromise(of: Conn.self)
        try loopA.submit {
            _ = try RawStcprLink(loop: loopA, fd: link[0], identity: keyA, expectedRemote: keyB.publicKey,
                                 handshakeTimeout: .seconds(5), logger: logger, hooks: .init(established: { remote, l in
                                     let c = MuxConnection(eventLoop: loopA, isInitiator: true, remote: remote, link: l,
                                                           router: TestRouter(), logger: logger)
                                     up.succeed(Conn(connection: c))
                                     return c
                                 }, closed: { _ in }))
        }.wait()
        connA = try up.futureResult.wait().connection
    }

    override func tearDown() {
        // Closing A's transport closes its link descriptor; B's link sees EOF and closes its own.
        let conn = Conn(connection: connA)
        try? loopA.submit { conn.connection.close(reason: "test over") }.wait()
        loopA.shutdown(); loopB.shutdown()
        for fd in accepted.withLockedValue({ $0 }) { close(fd) }
    }

    /// Opens a stream from A to B's port 7 and pipes it to a new socket; returns the app's end.
    private func openPipedStream() throws -> (app: Int32, closed: EventLoopFuture<String?>) {
        let (app, pipeEnd) = Self.appAndPipeEnds()
        let closed = loopA.makePromise(of: String?.self)
        let (loopA, conn) = (self.loopA!, Conn(connection: connA))
        try loopA.flatSubmit {
            conn.connection.openStream(destinationPort: 7, sourcePort: 1, timeout: .seconds(5)).flatMapThrowing { stream in
                let pipe = try RawSocketPipe(loop: loopA, fd: pipeEnd, stream: stream)
                pipe.onClose = { closed.succeed($0) }
            }
        }.wait()
        return (app, closed.futureResult)
    }

    private func readAll(_ fd: Int32) -> (bytes: [UInt8], error: Int32) {
        var out: [UInt8] = [], buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n > 0 { out += buf[..<n]; continue }
            return (out, n == 0 ? 0 : errno)
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, 65536)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    func testTwoMegabytesBothWaysWithHalfCloseAtEachEnd() throws {
        let (app, closed) = try openPipedStream()
        defer { close(app) }
        let payload = (0..<(2 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 13 ^ ($0 >> 8)) }
        // The far application echoes until EOF, then half-closes.
        let echoDone = DispatchSemaphore(value: 0)
        let accepted = self.accepted
        DispatchQueue.global().async {
            defer { echoDone.signal() }
            var far: Int32 = -1
            for _ in 0..<500 where far < 0 { far = accepted.withLockedValue { $0.first ?? -1 }; if far < 0 { usleep(2000) } }
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(far, &buf, buf.count)
                guard n > 0 else { break }
                Self.writeAll(far, Array(buf[..<n]))
            }
            shutdown(far, Int32(SHUT_WR))
        }
        let writer = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            Self.writeAll(app, payload)
            shutdown(app, Int32(SHUT_WR))  // EOF → FIN → the far end reads EOF
            writer.signal()
        }
        let (echoed, error) = readAll(app)  // the far end's FIN → shutdown → EOF here
        XCTAssertEqual(error, 0)
        XCTAssertEqual(echoed.count, payload.count)
        XCTAssertTrue(echoed == payload)
        XCTAssertEqual(writer.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(echoDone.wait(timeout: .now() + 10), .success)
        XCTAssertNil(try closed.wait(), "both directions completed: no abort reason")
    }

    func testStreamResetAbortsTheLocalSocket() throws {
        let (app, closed) = try openPipedStream()
        defer { close(app) }
        var hello: [UInt8] = [1, 2, 3]
        XCTAssertEqual(write(app, &hello, 3), 3)
        // Once B has its pipe, the link under A's mux is lost: A's stream resets (transport lost)
        // and A's pipe aborts its socket.
        var far: Int32 = -1
        for _ in 0..<500 where far < 0 { far = accepted.withLockedValue { $0.first ?? -1 }; if far < 0 { usleep(2000) } }
        XCTAssertGreaterThanOrEqual(far, 0)
        let conn = Conn(connection: connA)
        try loopA.submit { conn.connection.linkClosed(reason: "test cut the link") }.wait()
        XCTAssertEqual(try closed.wait(), "stream reset: transport lost")
        let (_, _) = readAll(app)  // ends (EOF or error), does not hang
    }
}
