import Foundation
import XCTest
@testable import SkywireCrypto
#if canImport(Glibc)
import Glibc
#endif

/// Interoperability with an independent Noise implementation: the Python `noiseprotocol` package
/// driving Tests/interop/noise_peer.py, speaking stcpr (PROTOCOL.md §2, §3, §5) over loopback TCP.
/// The socket code here is test-only; the real transport lives in SkywireTransport.
///
/// Python: $SKYWIRE_INTEROP_PYTHON, else the venv scripts/install-deps.sh creates, else python3.
/// Skipped (with a message) when that Python cannot `import noise`.
final class NoiseInteropTests: XCTestCase {
    static let venvPython = "/var/cache/skywire-swift/interop-venv/bin/python3"
    static let installHint = "/usr/bin/python3 -m venv /var/cache/skywire-swift/interop-venv && "
        + "/var/cache/skywire-swift/interop-venv/bin/pip install -r Tests/interop/requirements.txt"
    static let timeout: TimeInterval = 20
    static let pingType: UInt8 = 0x09
    static let pongType: UInt8 = 0x0A

    static var interopDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("interop")
    }

    func python() throws -> String {
        let env = ProcessInfo.processInfo.environment
        let candidates = [env["SKYWIRE_INTEROP_PYTHON"], Self.venvPython, "/usr/bin/env"].compactMap { $0 }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            let args = candidate == "/usr/bin/env" ? ["python3", "-c", "import noise"] : ["-c", "import noise"]
            if let result = try? run(candidate, args, timeout: Self.timeout), result.status == 0 {
                return candidate == "/usr/bin/env" ? "python3" : candidate
            }
        }
        throw XCTSkip("Python module `noise` (noiseprotocol) not installed; install it with: \(Self.installHint)")
    }

    // MARK: - Tests

    func testPythonPeerMatchesVectors() throws {
        let py = try python()
        let result = try run(pythonPath(py), pythonArgs(py) + [script("noise_vector_check.py"), "--all"],
                             timeout: Self.timeout)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("vectors match"), result.stdout)
    }

    /// Swift initiator dials the Python responder.
    func testSwiftDialsPython() throws {
        let py = try python()
        let pythonSeed = randomSeed()
        let pythonIdentity = try KeyPair.fromSeed(pythonSeed)
        let identity = KeyPair.generate()

        let peer = try spawn(py, ["noise_peer.py", "--listen", "127.0.0.1:0", "--seed-hex", Hex.encode(pythonSeed),
                                  "--timeout", String(Int(Self.timeout))])
        defer { peer.stop() }
        let listening = try peer.readLine(deadline: Date().addingTimeInterval(Self.timeout))
        let port = try XCTUnwrap(listening.split(separator: ":").last.flatMap { UInt16($0) }, listening)

        let socket = try TestSocket.connect(port: port)
        defer { socket.close() }
        let handshake = try NoiseHandshake.ikInitiator(identity: identity, remote: pythonIdentity.publicKey)
        let message1 = try handshake.writeMessage(payload: IdentityClaim.encode(identity.publicKey, timestamp: .now()))
        let mac1Key = HandshakeMAC.mac1Key(responderStatic: try pythonIdentity.publicKey.x25519())
        try socket.sendFrame(message1 + HandshakeMAC.mac(key: mac1Key, message1))
        let message2 = try socket.receiveFrame()
        XCTAssertEqual(message2.count, IdentityClaim.message2Length)
        XCTAssertEqual(try handshake.readMessage(message2), [])
        XCTAssertTrue(handshake.isComplete)
        let (send, receive) = try handshake.split()
        try socket.sendFrame(send.encryptWithAd([], []))   // the confirmation (PROTOCOL.md §3)

        for round in 0..<3 {
            let opaque = (0..<8).map { UInt8($0 + round * 8) }
            try socket.sendFrame(send.encryptWithAd([], [Self.pingType] + opaque))
            XCTAssertEqual(try receive.decryptWithAd([], socket.receiveFrame()), [Self.pongType] + opaque)
        }
        socket.close()

        let output = try peer.finish(deadline: Date().addingTimeInterval(Self.timeout))
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stdout.contains("peer \(identity.publicKey.hex)"), output.stdout)
        XCTAssertTrue(output.stdout.contains("interop ok \(identity.publicKey.hex)"), output.stdout)
    }

    /// Python initiator dials the Swift responder.
    func testPythonDialsSwift() throws {
        let py = try python()
        let pythonSeed = randomSeed()
        let pythonIdentity = try KeyPair.fromSeed(pythonSeed)
        let identity = KeyPair.generate()

        let listener = try TestSocket.listen()
        defer { listener.close() }
        let peer = try spawn(py, ["noise_peer.py", "--dial", "127.0.0.1:\(listener.port)",
                                  "--remote-pk", identity.publicKey.hex, "--seed-hex", Hex.encode(pythonSeed),
                                  "--timeout", String(Int(Self.timeout))])
        defer { peer.stop() }
        let socket = try listener.accept(timeout: Self.timeout)
        defer { socket.close() }

        let handshake = try NoiseHandshake.ikResponder(identity: identity)
        let record = try socket.receiveFrame()
        XCTAssertEqual(record.count, IdentityClaim.message1Length + HandshakeMAC.macLength)
        let message1 = Array(record.prefix(IdentityClaim.message1Length))
        let mac1Key = HandshakeMAC.mac1Key(responderStatic: try identity.publicKey.x25519())
        XCTAssertEqual(Array(record.suffix(HandshakeMAC.macLength)), HandshakeMAC.mac(key: mac1Key, message1),
                       "Python's keyed BLAKE2b mac1 matches libsodium's")
        let claimed = try IdentityClaim.verify(payload: handshake.readMessage(message1),
                                               remoteStatic: handshake.remoteStaticKey).key
        // The Python side derived its key from the seed without libsodium: both must agree.
        XCTAssertEqual(claimed, pythonIdentity.publicKey)
        try socket.sendFrame(handshake.writeMessage())
        let (send, receive) = try handshake.split()
        XCTAssertEqual(try receive.decryptWithAd([], socket.receiveFrame()), [], "the confirmation comes first")

        let ping = try receive.decryptWithAd([], socket.receiveFrame())
        XCTAssertEqual(ping.count, 9)
        XCTAssertEqual(ping.first, Self.pingType)
        try socket.sendFrame(send.encryptWithAd([], [Self.pongType] + ping.dropFirst()))

        let output = try peer.finish(deadline: Date().addingTimeInterval(Self.timeout))
        XCTAssertEqual(output.status, 0, output.stderr)
        XCTAssertTrue(output.stdout.contains("interop ok \(identity.publicKey.hex)"), output.stdout)
    }

    // MARK: - Process helpers

    struct Output { let status: Int32; let stdout: String; let stderr: String }

    func randomSeed() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    func script(_ name: String) -> String { Self.interopDirectory.appendingPathComponent(name).path }
    func pythonPath(_ py: String) -> String { py == "python3" ? "/usr/bin/env" : py }
    func pythonArgs(_ py: String) -> [String] { py == "python3" ? ["python3"] : [] }

    func run(_ executable: String, _ args: [String], timeout: TimeInterval) throws -> Output {
        let child = try ChildProcess(executable, args)
        return try child.finish(deadline: Date().addingTimeInterval(timeout))
    }

    func spawn(_ py: String, _ args: [String]) throws -> ChildProcess {
        var full = args
        full[0] = script(args[0])
        return try ChildProcess(pythonPath(py), pythonArgs(py) + full)
    }

    /// A child process we started; stopped by its own PID only.
    final class ChildProcess {
        let process = Process()
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        private var stdoutBuffer: [UInt8] = []

        init(_ executable: String, _ args: [String]) throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = args
            process.standardOutput = stdoutPipe
            process.standardError = stderrPipe
            try process.run()
        }

        /// One stdout line, waiting at most until `deadline`.
        func readLine(deadline: Date) throws -> String {
            let fd = stdoutPipe.fileHandleForReading.fileDescriptor
            while true {
                if let newline = stdoutBuffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: stdoutBuffer[..<newline], as: UTF8.self)
                    stdoutBuffer.removeSubrange(...newline)
                    return line
                }
                let remaining = deadline.timeIntervalSinceNow
                guard remaining > 0 else { throw InteropError("timed out waiting for output from the Python peer") }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, Int32(remaining * 1000)) > 0 else { continue }
                var chunk = [UInt8](repeating: 0, count: 512)
                let n = read(fd, &chunk, chunk.count)
                guard n > 0 else {
                    let err = String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    throw InteropError("Python peer exited early: \(err)")
                }
                stdoutBuffer += chunk[..<n]
            }
        }

        /// Waits for exit (bounded), then collects the output.
        func finish(deadline: Date) throws -> Output {
            while process.isRunning && deadline.timeIntervalSinceNow > 0 {
                usleep(20_000)
            }
            if process.isRunning {
                stop()
                throw InteropError("Python peer did not exit in time")
            }
            let out = stdoutBuffer + Array(stdoutPipe.fileHandleForReading.readDataToEndOfFile())
            let err = stderrPipe.fileHandleForReading.readDataToEndOfFile()
            return Output(status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                          stderr: String(decoding: err, as: UTF8.self))
        }

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
    }

    struct InteropError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: - Blocking loopback TCP with §3 framing (test-only)

    final class TestSocket {
        private(set) var fd: Int32
        let port: UInt16
        static let frameHeader = 2
        static let ioTimeoutSeconds = 20

        private init(fd: Int32, port: UInt16) {
            self.fd = fd
            self.port = port
        }

        deinit { close() }

        func close() {
            if fd >= 0 {
                Glibc.close(fd)
                fd = -1
            }
        }

        static func loopback(port: UInt16) -> sockaddr_in {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            return addr
        }

        static func newSocket() throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw InteropError("socket: errno \(errno)") }
            var tv = timeval(tv_sec: ioTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        static func connect(port: UInt16) throws -> TestSocket {
            let fd = try newSocket()
            var addr = loopback(port: port)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard rc == 0 else {
                Glibc.close(fd)
                throw InteropError("connect to 127.0.0.1:\(port): errno \(errno)")
            }
            return TestSocket(fd: fd, port: port)
        }

        static func listen() throws -> TestSocket {
            let fd = try newSocket()
            var addr = loopback(port: 0)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && Glibc.listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            guard ok else {
                Glibc.close(fd)
                throw InteropError("listen on 127.0.0.1: errno \(errno)")
            }
            return TestSocket(fd: fd, port: UInt16(bigEndian: addr.sin_port))
        }

        func accept(timeout: TimeInterval) throws -> TestSocket {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(timeout * 1000)) > 0 else { throw InteropError("no connection from the Python peer") }
            let client = Glibc.accept(fd, nil, nil)
            guard client >= 0 else { throw InteropError("accept: errno \(errno)") }
            var tv = timeval(tv_sec: Self.ioTimeoutSeconds, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return TestSocket(fd: client, port: port)
        }

        func sendFrame(_ message: [UInt8]) throws {
            guard (1...NoiseConstants.maxMessageLength).contains(message.count) else {
                throw InteropError("frame of \(message.count) bytes")
            }
            let frame = [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
            var sent = 0
            while sent < frame.count {
                let n = frame[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw InteropError("send: errno \(errno)") }
                sent += n
            }
        }

        func receiveFrame() throws -> [UInt8] {
            let header = try receiveExactly(Self.frameHeader)
            let length = Int(header[0]) << 8 | Int(header[1])
            guard length > 0 else { throw InteropError("zero-length frame") }
            return try receiveExactly(length)
        }

        private func receiveExactly(_ count: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { throw InteropError(n == 0 ? "peer closed the connection" : "recv: errno \(errno)") }
                got += n
            }
            return out
        }
    }
}
