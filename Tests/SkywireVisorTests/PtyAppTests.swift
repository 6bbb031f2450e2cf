import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSocks
import SkywireTransport
import SkywireWire
import XCTest
@testable import SkywireVisor

/// The client end of a pty session in a test: collects the host's frames until exit, error or FIN.
private final class FrameCollector: AppStreamDelegate {
    var decoder = PtyFrameDecoder()
    var frames: [PtyFrame] = []
    var decodeError: PtyProtocolError?
    let done: EventLoopPromise<Void>

    init(done: EventLoopPromise<Void>) { self.done = done }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        decoder.feed(data.readableBytesView)
        do {
            while let frame = try decoder.next() { frames.append(frame) }
        } catch {
            decodeError = error
        }
    }
    func appStreamDidReceiveFinish(_ stream: AppStream) { done.succeed(()) }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { done.succeed(()) }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}

final class PtyAppTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let clientKey = KeyPair.generate().publicKey.hex

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    private func app(_ args: [String], openTimeout: TimeAmount = .seconds(10)) throws -> PtyApp {
        let kp = KeyPair.generate()
        let settings = TransportSettings(identity: kp, listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0, peers: [:])
        let transports = TransportManager(settings: settings, group: group, logger: Logger(label: "test"))
        let context = AppContext(localKey: kp.publicKey, port: 22, transports: transports, logger: Logger(label: "test"),
                                 stateDirectory: "/nonexistent")
        return PtyApp(context: context, options: try PtyOptions.parse(args), openTimeout: openTimeout)
    }

    /// The current user, so the sessions need no id change.
    private var me: String { (try? SessionUserName.current()) ?? "root" }

    /// Opens a session from `clientKey`, sends `bytes`, and returns the host's frames once it ended.
    /// The streams run on `loop` (a datapath `EpollEventLoop`, as a transport's do, where the
    /// session host's socket joins them), else on the NIO group.
    private func session(_ app: PtyApp, sending bytes: [UInt8], from key: String? = nil, on loop: EventLoop? = nil,
                         whileRunning: (() throws -> Void)? = nil) throws -> (accepted: Bool, frames: [PtyFrame]) {
        let loop = loop ?? group.next()
        let promise = loop.makePromise(of: Void.self)
        let collector = FrameCollector(done: promise)
        let accepted = try loop.submit { () -> Bool in
            let (opener, acceptor) = LoopbackAppStream.makePair(on: loop, openerKeyHex: key ?? self.clientKey, acceptorPort: 22)
            opener.setDelegate(collector)
            guard app.accept(stream: acceptor) else { return false }
            opener.write(ByteBuffer(bytes: bytes))
            return true
        }.wait()
        guard accepted else { return (false, []) }
        try whileRunning?()
        try promise.futureResult.wait()
        return try loop.submit { (true, collector.frames) }.wait()
    }

    func testOptions() throws {
        XCTAssertEqual(try PtyOptions.parse([]).whitelist, .nobody)
        XCTAssertEqual(try PtyOptions.parse([]).user, "root")
        XCTAssertEqual(try PtyOptions.parse(["--whitelist", "any", "--user=pi"]).whitelist, .anyone)
        XCTAssertEqual(try PtyOptions.parse(["-w", clientKey, "--max-sessions", "2"]).maxSessions, 2)
        XCTAssertEqual(try PtyOptions.parse(["-w", clientKey]).arguments, ["--whitelist", clientKey])
        XCTAssertEqual(try PtyOptions.parse(["--session-host", "/run/skywire-pty.sock"]).sessionHost, "/run/skywire-pty.sock")
        XCTAssertEqual(try PtyOptions.parse(["-w", clientKey, "--session-host=/run/p.sock"]).arguments,
                       ["--whitelist", clientKey, "--session-host", "/run/p.sock"])
        XCTAssertNil(try PtyOptions.parse([]).sessionHost)
        for bad in [["--whitelist", "nope"], ["--frobnicate", "1"], ["--user"], ["--user", "a/b"], ["--max-sessions", "0"],
                    ["--session-host", "pty.sock"], ["--session-host", ""]] {
            XCTAssertThrowsError(try PtyOptions.parse(bad), "\(bad)") { XCTAssertEqual(($0 as? AppError)?.code, .invalidArguments) }
        }
        XCTAssertEqual(try AppOptions(app: "pty", arguments: []).whitelist, .nobody)
    }

    func testClosedByDefaultAndStrangersRefused() throws {
        let closed = try app(["--user", me])
        try awaitStart(closed)
        XCTAssertFalse(try session(closed, sending: PtyFrame.open(.init(mode: .exec, argv: ["true"])).encoded).accepted)
        let listed = try app(["--whitelist", clientKey, "--user", me])
        try awaitStart(listed)
        XCTAssertFalse(try session(listed, sending: [], from: KeyPair.generate().publicKey.hex).accepted)
        XCTAssertEqual(listed.status().fields["refused_sessions"], .int(1))
    }

    /// Hostile first frames: an oversized length, a frame other than open, garbage. Each session
    /// gets an `error` frame and ends; the next session is served.
    func testHostileInputRefusedAndOthersServed() throws {
        let app = try app(["--whitelist", clientKey, "--user", me])
        try awaitStart(app)
        let hostile: [[UInt8]] = [
            [0x02, 0x7F, 0xFF, 0xFF, 0xFF],                      // stdin announcing 2 GiB
            PtyFrame.stdin([1, 2, 3]).encoded,                  // data before open
            [0xEE, 0, 0, 0, 0],                                 // unknown type
            [0x01, 0, 0, 0, 2, 0x09, 0x01],                     // open with a bad version
        ]
        for bytes in hostile {
            let (accepted, frames) = try session(app, sending: bytes)
            XCTAssertTrue(accepted)
            guard case .error? = frames.last else { return XCTFail("\(bytes): \(frames)") }
        }
        let request = PtyFrame.open(.init(mode: .exec, argv: ["sh", "-c", "echo hi; echo oops >&2; exit 7"])).encoded
        let (_, frames) = try session(app, sending: request + PtyFrame.eof.encoded)
        assertHiOopsExit7(frames)
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))
    }

    /// A client that never sends `open` loses its session slot after the open timeout.
    func testSilentClientTimesOut() throws {
        let app = try app(["--whitelist", clientKey, "--user", me, "--max-sessions", "1"], openTimeout: .milliseconds(300))
        try awaitStart(app)
        let (accepted, frames) = try session(app, sending: [0x01, 0x00])  // half a header, then silence
        XCTAssertTrue(accepted)
        guard case .error(let message)? = frames.last else { return XCTFail("\(frames)") }
        XCTAssertTrue(message.contains("no open frame"), message)
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))
        let (_, next) = try session(app, sending: PtyFrame.open(.init(mode: .exec, argv: ["true"])).encoded + PtyFrame.eof.encoded)
        XCTAssertEqual(next.last, .exit(.exited(0)))
    }

    /// Stopping the app hangs up a running session: its command gets SIGHUP.
    func testStopHangsUpRunningSessions() throws {
        let app = try app(["--whitelist", clientKey, "--user", me])
        try awaitStart(app)
        let request = PtyFrame.open(.init(mode: .exec, argv: ["sleep", "30"])).encoded + PtyFrame.eof.encoded
        let started = ContinuousClock.now
        let (_, frames) = try session(app, sending: request) { self.stop(app, after: 0.3) }
        XCTAssertEqual(frames.last, .exit(.signalled(UInt8(SIGHUP))))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(20))
    }

    /// `--session-host`: the session runs in a `PtySessionHost` behind a unix socket (the
    /// board's `skywire pty-host`), with the same frames; without a host the client gets an
    /// `error`; stopping the app hangs the hosted command up.
    func testSessionHost() throws {
        let datapath = try EpollEventLoop(name: "pty-test")
        defer { datapath.shutdown() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skw-ptyhost-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("pty.sock").path
        let app = try app(["--whitelist", clientKey, "--user", me, "--session-host", path])
        try awaitStart(app)
        let request = PtyFrame.open(.init(mode: .exec, argv: ["sh", "-c", "echo hi; echo oops >&2; exit 7"])).encoded
        // No host yet: an error frame, and the slot is freed.
        let (accepted, refused) = try session(app, sending: request + PtyFrame.eof.encoded, on: datapath)
        XCTAssertTrue(accepted)
        guard case .error(let message)? = refused.last else { return XCTFail("\(refused)") }
        XCTAssertTrue(message.contains("session host"), message)
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))

        let server = try group.next().makeFutureWithTask {
            try await PtySessionHost.listen(path: path, maxSessions: 2, group: self.group, logger: Logger(label: "test"))
        }.wait()
        defer { try? server.close().wait() }
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let (_, frames) = try session(app, sending: request + PtyFrame.eof.encoded, on: datapath)
        assertHiOopsExit7(frames)
        // A hostile frame through the host: its error frame comes back.
        let (_, hostile) = try session(app, sending: [0xEE, 0, 0, 0, 0], on: datapath)
        guard case .error? = hostile.last else { return XCTFail("\(hostile)") }
        // The host ended each session although its client sent no FIN: no slot stays taken.
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))

        let started = ContinuousClock.now
        let sleeper = PtyFrame.open(.init(mode: .exec, argv: ["sleep", "30"])).encoded + PtyFrame.eof.encoded
        let (_, hungUp) = try session(app, sending: sleeper, on: datapath) { self.stop(app, after: 0.5) }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(20))
        XCTAssertFalse(hungUp.contains(.exit(.exited(0))), "\(hungUp)")
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))
    }

    /// A session host at its limit answers the next session with an `error` saying so.
    func testSessionHostBusy() throws {
        let datapath = try EpollEventLoop(name: "pty-test")
        defer { datapath.shutdown() }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("skw-ptybusy-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock").path
        defer { unlink(path) }
        let server = try group.next().makeFutureWithTask {
            try await PtySessionHost.listen(path: path, maxSessions: 1, group: self.group, logger: Logger(label: "test"))
        }.wait()
        defer { try? server.close().wait() }
        let app = try app(["--whitelist", clientKey, "--user", me, "--session-host", path])
        try awaitStart(app)
        let sleeper = PtyFrame.open(.init(mode: .exec, argv: ["sleep", "30"])).encoded + PtyFrame.eof.encoded
        var second: [PtyFrame] = []
        _ = try session(app, sending: sleeper, on: datapath) {
            Thread.sleep(forTimeInterval: 0.5)
            second = try self.session(app, sending: PtyFrame.open(.init(mode: .exec, argv: ["true"])).encoded, on: datapath).frames
            self.stop(app, after: 0)
        }
        guard case .error(let message)? = second.last else { return XCTFail("\(second)") }
        XCTAssertTrue(message.contains("busy"), message)
        XCTAssertEqual(app.status().fields["active_sessions"], .int(0))
    }

    /// The frames of `sh -c 'echo hi; echo oops >&2; exit 7'`: stdout and stderr apart, exit 7.
    private func assertHiOopsExit7(_ frames: [PtyFrame], line: UInt = #line) {
        let out = frames.compactMap { if case .stdout(let b) = $0 { b } else { nil } }.joined()
        let err = frames.compactMap { if case .stderr(let b) = $0 { b } else { nil } }.joined()
        XCTAssertEqual(String(decoding: Array(out), as: UTF8.self), "hi\n", line: line)
        XCTAssertEqual(String(decoding: Array(err), as: UTF8.self), "oops\n", line: line)
        XCTAssertEqual(frames.last, .exit(.exited(7)), line: line)
    }

    /// Lets a session's command start, then stops the app.
    private func stop(_ app: PtyApp, after seconds: Double) {
        Thread.sleep(forTimeInterval: seconds)
        let done = DispatchlessWait()
        Task {
            await app.stop()
            done.signal()
        }
        done.wait()
    }

    private func awaitStart(_ app: PtyApp) throws {
        let done = DispatchlessWait()
        Task {
            try? await app.start()
            done.signal()
        }
        done.wait()
    }
}

/// The user this test runs as (getpwuid of the real uid).
enum SessionUserName {
    static func current() throws -> String {
        guard let pw = getpwuid(getuid()), let name = pw.pointee.pw_name else { throw AppError("no passwd entry") }
        return String(cString: name)
    }
}

/// Blocks a test thread until a task signals (a condition lock; no Dispatch).
final class DispatchlessWait: @unchecked Sendable {
    // @unchecked Sendable: `lock` guards the flag.
    private let lock = ConditionLock(value: false)
    func signal() {
        lock.lock()
        lock.unlock(withValue: true)
    }
    func wait() {
        lock.lock(whenValue: true)
        lock.unlock()
    }
}
