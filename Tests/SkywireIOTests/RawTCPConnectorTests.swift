#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOCore
import SkywireSystem
import XCTest
@testable import SkywireIO

final class RawTCPConnectorTests: XCTestCase {
    private var loop: EpollEventLoop!

    override func setUpWithError() throws { loop = try EpollEventLoop(name: "connector-test") }
    override func tearDown() { loop.shutdown(); loop = nil }

    private func connect(host: String, port: Int, timeout: TimeAmount = .seconds(5)) -> EventLoopFuture<OwnedDescriptor> {
        let loop = self.loop!
        let promise = loop.makePromise(of: OwnedDescriptor.self)
        loop.execute {
            RawTCPConnector.connect(on: loop, host: host, port: port, timeout: timeout) { promise.completeWith($0) }
        }
        return promise.futureResult
    }

    private func connect(to addresses: [SocketAddress]) -> EventLoopFuture<OwnedDescriptor> {
        let loop = self.loop!
        let promise = loop.makePromise(of: OwnedDescriptor.self)
        loop.execute {
            RawTCPConnector.connect(on: loop, to: addresses, deadline: .now() + .seconds(5)) { promise.completeWith($0) }
        }
        return promise.futureResult
    }

    /// A port on 127.0.0.1 with nothing listening (bound, then closed).
    private func closedPort() throws -> Int {
        let probe = try RawTCPSocket.listen(on: try SocketAddress(ipAddress: "127.0.0.1", port: 0), backlog: 1)
        let port = RawTCPSocket.localAddress(probe.raw)!.port!
        probe.close()
        return port
    }

    /// A `RawTCPListener` on 127.0.0.1 (any port) whose first accepted connection fulfils the promise.
    private func listen() throws -> (LoopTransfer<RawTCPListener>, EventLoopPromise<OwnedDescriptor>) {
        let loop = self.loop!
        let accepted = loop.makePromise(of: OwnedDescriptor.self)
        let listener = try loop.submit {
            LoopTransfer(value: try RawTCPListener(loop: loop, address: try SocketAddress(ipAddress: "127.0.0.1", port: 0),
                                               backlog: 8) { fd in accepted.succeed(OwnedDescriptor(taking: fd)) })
        }.wait()
        return (listener, accepted)
    }

    func testConnectsAndTheListenerAcceptsTheSameConnection() throws {
        let (listener, acceptedPromise) = try listen()
        defer { loop.execute { listener.value.close() } }
        let port = try XCTUnwrap(listener.value.localAddress?.port)
        let client = try connect(host: "127.0.0.1", port: port).wait()
        let server = try acceptedPromise.futureResult.wait()
        XCTAssertEqual(RawTCPSocket.peerAddress(server.raw)?.port, RawTCPSocket.localAddress(client.raw)?.port)
        // Bytes cross, and the descriptors are non-blocking (an empty read would block: EAGAIN).
        XCTAssertEqual(write(client.raw, "ping", 4), 4)
        var buffer = [UInt8](repeating: 0, count: 8)
        var got = -1
        for _ in 0..<100 {
            got = read(server.raw, &buffer, buffer.count)
            if got > 0 { break }
            usleep(10_000)
        }
        XCTAssertEqual(Array(buffer.prefix(max(got, 0))), Array("ping".utf8))
        XCTAssertEqual(read(client.raw, &buffer, buffer.count), -1)
        XCTAssertEqual(errno, EAGAIN)
        for socket in [client, server] {
            var noDelay: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            XCTAssertEqual(getsockopt(socket.raw, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, &length), 0)
            XCTAssertEqual(noDelay, 1)
        }
    }

    func testRefusedConnectFailsWithECONNREFUSED() throws {
        let port = try closedPort()
        XCTAssertThrowsError(try connect(host: "127.0.0.1", port: port).wait()) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ECONNREFUSED, "\(error)")
        }
    }

    func testLaterAddressIsTriedWhenTheFirstIsRefused() throws {
        let listener = try RawTCPSocket.listen(on: try SocketAddress(ipAddress: "127.0.0.1", port: 0), backlog: 8)
        let good = try XCTUnwrap(RawTCPSocket.localAddress(listener.raw))
        let bad = try SocketAddress(ipAddress: "127.0.0.1", port: try closedPort())
        let client = try connect(to: [bad, good]).wait()
        XCTAssertEqual(RawTCPSocket.peerAddress(client.raw)?.port, good.port)
    }

    func testEmptyAddressListAndUnresolvableNameFail() throws {
        XCTAssertThrowsError(try connect(to: []).wait()) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EHOSTUNREACH, "\(error)")
        }
        // RFC 6761 §6.4: .invalid never resolves.
        XCTAssertThrowsError(try connect(host: "no-such-host.invalid", port: 80).wait()) { error in
            XCTAssertTrue(error is ResolutionError, "\(error)")
            XCTAssertTrue("\(error)".contains("no-such-host.invalid"), "\(error)")
        }
    }

    /// A resolver that hangs (DNS down) does not hold the loop: other work on it runs at once,
    /// and the lookup's result arrives on the loop when it ends. A literal needs no lookup.
    func testHangingResolverDoesNotBlockTheLoop() throws {
        let loop = self.loop!
        let hang: Double = 2
        let done = loop.makePromise(of: Double.self)
        let started = DispatchTime.now().uptimeNanoseconds
        loop.execute {
            SocketAddress.resolveOffLoop(host: "peer.example", port: 7000, on: loop, resolve: { host, _ in
                usleep(useconds_t(hang * 1_000_000))
                throw ResolutionError(host: host, message: "timed out (test double)")
            }) { result in
                XCTAssertTrue(loop.inEventLoop)
                guard case .failure(let error) = result else { return XCTFail("resolved") }
                XCTAssertTrue("\(error)".contains("peer.example"), "\(error)")
                done.succeed(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
            }
        }
        // The loop answers while the lookup hangs (generous bound: half the hang).
        let t0 = DispatchTime.now().uptimeNanoseconds
        try loop.submit { () }.wait()
        XCTAssertLessThan(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, hang / 2, "the loop waited for the resolver")
        XCTAssertGreaterThanOrEqual(try done.futureResult.wait(), hang * 0.9)
        let literal = loop.makePromise(of: [SocketAddress].self)
        loop.execute {
            SocketAddress.resolveOffLoop(host: "192.0.2.7", port: 7000, on: loop, resolve: { _, _ in XCTFail("looked up a literal"); return [] }) {
                literal.completeWith($0)
            }
        }
        XCTAssertEqual(try literal.futureResult.wait(), [try SocketAddress(ipAddress: "192.0.2.7", port: 7000)])
    }

    func testListenerReportsAddressInUse() throws {
        let first = try RawTCPSocket.listen(on: try SocketAddress(ipAddress: "127.0.0.1", port: 0), backlog: 8)
        let address = try XCTUnwrap(RawTCPSocket.localAddress(first.raw))
        XCTAssertThrowsError(try RawTCPSocket.listen(on: address, backlog: 8)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, EADDRINUSE, "\(error)")
            XCTAssertTrue("\(error)".contains("bind"), "\(error)")
        }
    }

    /// Out of descriptors, accept4 fails with EMFILE while the connection stays queued and the
    /// listener readable: accepting pauses (no spinning on the level-triggered report) and
    /// resumes once descriptors are free again.
    func testDescriptorExhaustionPausesAcceptingInsteadOfSpinning() throws {
        let (listener, acceptedPromise) = try listen()
        defer { loop.execute { listener.value.close() } }
        let address = try XCTUnwrap(listener.value.localAddress)
        // The client's socket exists before the limit drops; connect(2) needs no new descriptor.
        let client = OwnedDescriptor(taking: socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0))
        var limit = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        let saved = limit
        // The lowest free descriptor number: with the soft limit there, no descriptor is free.
        let probe = dup(0)
        XCTAssertGreaterThan(probe, 0)
        close(probe)
        limit.rlim_cur = rlim_t(probe)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        var restored = false
        defer { if !restored { var s = saved; _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &s) } }
        let rc = address.withSockAddr { Glibc.connect(client.raw, $0, socklen_t($1)) }
        XCTAssertEqual(rc, 0, "the kernel completes the handshake into the backlog")
        usleep(300_000)
        let roundsWhileExhausted = try loop.submit { listener.value.acceptRounds }.wait()
        XCTAssertGreaterThanOrEqual(roundsWhileExhausted, 1, "the listener saw the connection")
        XCTAssertLessThanOrEqual(roundsWhileExhausted, 2, "accepting paused instead of spinning")
        var s = saved
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &s), 0)
        restored = true
        // Accepting resumes after the backoff (1 s) and takes the queued connection.
        let server = try acceptedPromise.futureResult.wait()
        XCTAssertEqual(RawTCPSocket.peerAddress(server.raw)?.port, RawTCPSocket.localAddress(client.raw)?.port)
    }
}
