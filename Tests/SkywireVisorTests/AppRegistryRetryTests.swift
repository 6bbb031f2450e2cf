import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireTransport
import XCTest
@testable import SkywireVisor

/// An app whose first `failures` starts throw (e.g. its exit is not reachable yet).
private final class FlakyApp: VisorApp {
    let starts: NIOLockedValueBox<Int>
    let failures: Int
    init(starts: NIOLockedValueBox<Int>, failures: Int) {
        self.starts = starts
        self.failures = failures
    }
    func start() async throws {
        let n = starts.withLockedValue { $0 += 1; return $0 }
        if n <= failures { throw AppError("attempt \(n): server unreachable") }
    }
    func stop() async {}
    func status() -> AppStatusReport { AppStatusReport() }
    func accept(stream: AppStream) -> Bool { false }
    func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16) {}
}

final class AppRegistryRetryTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    private func registry(failures: Int, starts: NIOLockedValueBox<Int>, args: [String] = []) -> AppRegistry {
        let kp = KeyPair.generate()
        let settings = TransportSettings(identity: kp, listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let transports = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        let factory = AppFactory(parse: { args in
            if args == ["--bad"] { throw AppError("unknown argument --bad") }
            return .echo
        }) { _, _ in FlakyApp(starts: starts, failures: failures) }
        return AppRegistry(specs: [AppSpec(name: "flaky", args: args, autoStart: true, port: 99)],
                           factories: ["flaky": factory], logger: Logger(label: "test"),
                           retryInitial: .milliseconds(20), retryMax: .milliseconds(80)) { port in
            AppContext(localKey: kp.publicKey, port: port, transports: transports,
                       logger: Logger(label: "test"), stateDirectory: "/nonexistent")
        }
    }

    private func status(_ r: AppRegistry) -> (String?, Int64?) {
        let row = r.snapshot().first
        return (row?["status"]?.stringValue, row?["retry_in_seconds"]?.intValue)
    }

    func testFailedAutoStartIsRetriedUntilItRuns() async throws {
        let starts = NIOLockedValueBox(0)
        let r = registry(failures: 3, starts: starts)
        await r.startAutoStartApps()
        XCTAssertEqual(status(r).0, "failed")
        XCTAssertNotNil(status(r).1, "apps ls shows the pending retry")
        for _ in 0..<200 where status(r).0 != "running" { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(status(r).0, "running")
        XCTAssertEqual(starts.withLockedValue { $0 }, 4)
        XCTAssertNil(status(r).1)
        await r.stopAll()
    }

    func testStoppingByHandEndsTheRetries() async throws {
        let starts = NIOLockedValueBox(0)
        let r = registry(failures: 1000, starts: starts)
        await r.startAutoStartApps()
        try await r.stop("flaky")
        XCTAssertEqual(status(r).0, "stopped")
        let before = starts.withLockedValue { $0 }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(starts.withLockedValue { $0 }, before, "no start after the manual stop")
    }

    func testBadArgumentsAreNotRetried() async throws {
        let starts = NIOLockedValueBox(0)
        let r = registry(failures: 0, starts: starts, args: ["--bad"])
        await r.startAutoStartApps()
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(status(r).0, "failed")
        XCTAssertNil(status(r).1)
        XCTAssertEqual(r.snapshot().first?["detail"]?.stringValue, "unknown argument --bad")
    }
}
