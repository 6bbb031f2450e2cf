import ArgumentParser
import SkywireCrypto
import SkywireSystem
import SkywireVisor
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// The client end of one pty session (docs/pty.md) over a control connection the visor bridged
/// to the remote visor's port 22 (`stream.open`). One poll(2) loop: socket writes never block
/// (queued, bounded), so the remote command's output is read while its input is sent.
final class PtyClientSession {
    /// Frames queued for the socket above which local input (stdin, a file) is not read.
    static let maxQueued = 256 * 1024
    /// Exit status for a session that failed (refused, lost, remote error), as ssh(1).
    static let failureStatus: Int32 = 255

    private let socket: OwnedDescriptor
    private var decoder = PtyFrameDecoder()
    private var queued: [UInt8] = []
    private var queuedStart = 0
    private var chunk = [UInt8](repeating: 0, count: PtyProtocol.dataChunk)
    private(set) var socketClosed = false
    /// The visor closed the connection for our writes (EPIPE): what we still send is dropped,
    /// and reading goes on, since the frames before its close (an `error`) explain why.
    private(set) var sendClosed = false

    init(socket: OwnedDescriptor) throws {
        self.socket = socket
        try socket.setNonBlocking()
    }

    var queuedBytes: Int { queued.count - queuedStart }
    var canQueue: Bool { queuedBytes < Self.maxQueued }

    func send(_ frame: PtyFrame) {
        guard !sendClosed else { return }
        queued += frame.encoded
    }

    func sendData(_ type: PtyFrameType, _ bytes: UnsafeRawBufferPointer) {
        guard !sendClosed else { return }
        PtyFrame.encodeData(type, bytes, into: &queued)
    }

    /// Writes what the socket takes now.
    func flush() throws {
        while queuedBytes > 0 {
            // MSG_NOSIGNAL: a visor that went away is an error here, not a SIGPIPE.
            let n = queued.withUnsafeBytes { Glibc.send(socket.raw, $0.baseAddress! + queuedStart, queuedBytes, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { break }
                if errno == EPIPE || errno == ECONNRESET {
                    sendClosed = true
                    queued.removeAll()
                    queuedStart = 0
                    return
                }
                throw PtyClientError("the connection to the visor failed: \(String(cString: strerror(errno)))")
            }
            queuedStart += n
        }
        if queuedStart == queued.count {
            queued.removeAll(keepingCapacity: true)
            queuedStart = 0
        } else if queuedStart > Self.maxQueued {
            queued.removeFirst(queuedStart)
            queuedStart = 0
        }
    }

    /// The frames that arrived (reads what is there now); `socketClosed` at the end.
    func receive() throws -> [PtyFrame] {
        var frames: [PtyFrame] = []
        let n = chunk.withUnsafeMutableBytes { read(socket.raw, $0.baseAddress, $0.count) }
        if n == 0 { socketClosed = true }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return [] }
            socketClosed = true
            return []
        }
        if n > 0 { decoder.feed(chunk[0..<n]) }
        do {
            while let frame = try decoder.next() { frames.append(frame) }
        } catch {
            throw PtyClientError("the remote visor sent a bad frame: \(error)")
        }
        return frames
    }

    /// poll(2) on the socket (reads; writes while frames are queued) and `others`; returns their revents.
    func wait(for others: [(Int32, Int16)], timeoutMilliseconds: Int32) -> (socket: Int16, others: [Int16]) {
        var fds = [pollfd(fd: socket.raw, events: Int16(POLLIN) | (queuedBytes > 0 ? Int16(POLLOUT) : 0), revents: 0)]
        for (fd, events) in others { fds.append(pollfd(fd: fd, events: events, revents: 0)) }
        _ = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        return (fds[0].revents, fds.dropFirst().map(\.revents))
    }

    /// Writes all of `bytes` to a local descriptor (stdout/stderr: blocking is back-pressure).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                off += try syscall("write") { write(fd, raw.baseAddress! + off, raw.count - off) }
            }
        }
    }

    /// Reads up to a chunk from a local descriptor and queues it as `type`; false at its end.
    func forward(from fd: Int32, as type: PtyFrameType, hasher: SHA256Stream? = nil) throws -> Bool {
        let n = try chunk.withUnsafeMutableBytes { buffer in
            try syscall("read") { read(fd, buffer.baseAddress, buffer.count) }
        }
        guard n > 0 else { return false }
        chunk.withUnsafeBytes { all in
            let bytes = UnsafeRawBufferPointer(rebasing: all[0..<n])
            hasher?.update(bytes)
            sendData(type, bytes)
        }
        return true
    }
}

/// A failed session, with the message the CLI prints.
struct PtyClientError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension PtySignal {
    /// The local signal forwarded as this one.
    init?(local signal: Int32) {
        switch signal {
        case SIGINT: self = .interrupt
        case SIGTERM: self = .terminate
        case SIGHUP: self = .hangup
        case SIGQUIT: self = .quit
        default: return nil
        }
    }
}

/// The sessions `skywire cli pty` runs.
enum PtyClient {
    static let millisecondsPerSecond: Int64 = 1000
    /// The window size sent when the local side is not a terminal.
    static let defaultSize = PtyWindowSize(rows: 24, columns: 80)

    /// `pty exec` and `pty start`: returns the remote exit status (124 after `timeout` seconds).
    static func run(_ session: PtyClientSession, request: PtyOpenRequest, timeout: Int?) throws -> Int32 {
        let interactive = request.mode == .shell
        let terminal = TerminalMode(fd: STDIN_FILENO)
        var forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
        if interactive { forwarded.append(SIGWINCH) }
        let signals = try SignalDescriptor(forwarded)
        defer {
            terminal.restore()
            signals.close()
        }
        if interactive { try terminal.enterRaw() }
        session.send(.open(request))
        // A command's stdin is ours when it is not a terminal; otherwise it gets none (as ssh -n).
        var stdinOpen = interactive || !TerminalMode.isTerminal(STDIN_FILENO)
        if !stdinOpen { session.send(.eof) }
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }
        while true {
            try session.flush()
            var timeoutMs: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    terminal.restore()
                    FileHandleStderr.write("skywire cli pty: timed out after \(timeout ?? 0) s\n")
                    return PtyProtocol.timeoutStatus
                }
                let (seconds, attoseconds) = left.components
                timeoutMs = Int32(clamping: seconds * millisecondsPerSecond + attoseconds / 1_000_000_000_000_000 + 1)
            }
            var others: [(Int32, Int16)] = [(signals.raw, Int16(POLLIN))]
            if stdinOpen, session.canQueue { others.append((STDIN_FILENO, Int16(POLLIN))) }
            let ready = session.wait(for: others, timeoutMilliseconds: timeoutMs)
            while let signal = signals.next() {
                if signal == SIGWINCH, let size = TerminalMode.windowSize(STDIN_FILENO) {
                    session.send(.resize(PtyWindowSize(rows: size.rows, columns: size.columns)))
                } else if let remote = PtySignal(local: signal) {
                    session.send(.signal(remote))
                    // An interactive shell may ignore it (bash ignores SIGTERM): the client itself
                    // ends, its terminal put back (the host hangs the shell up when we close).
                    if interactive, signal == SIGTERM || signal == SIGHUP {
                        try? session.flush()
                        return PtyProtocol.signalStatusBase + signal
                    }
                }
            }
            if others.count > 1, ready.others[1] != 0 {
                if try !session.forward(from: STDIN_FILENO, as: .stdin) {
                    stdinOpen = false
                    session.send(.eof)
                }
            }
            if ready.socket != 0 {
                for frame in try session.receive() {
                    switch frame {
                    case .stdout(let bytes): try PtyClientSession.writeAll(STDOUT_FILENO, bytes)
                    case .stderr(let bytes): try PtyClientSession.writeAll(STDERR_FILENO, bytes)
                    case .exit(let status): return status.shellStatus
                    case .error(let message): throw PtyClientError("remote: \(message)")
                    case .eof: break
                    default: throw PtyClientError("the remote visor sent an unexpected \(frame.type) frame")
                    }
                }
                if session.socketClosed { throw PtyClientError("the session ended without an exit status") }
            }
        }
    }

    /// The window size of the local terminal, or 24x80.
    static var localWindowSize: PtyWindowSize {
        TerminalMode.windowSize(STDIN_FILENO).map { PtyWindowSize(rows: $0.rows, columns: $0.columns) } ?? defaultSize
    }

    /// Waits for frames until `handle` returns a result; the socket's end before that is an error.
    static func pump<T>(_ session: PtyClientSession, _ handle: (PtyFrame) throws -> T?) throws -> T {
        while true {
            try session.flush()
            let ready = session.wait(for: [], timeoutMilliseconds: -1)
            guard ready.socket != 0 else { continue }
            for frame in try session.receive() {
                if case .error(let message) = frame { throw PtyClientError("remote: \(message)") }
                if let result = try handle(frame) { return result }
            }
            if session.socketClosed { throw PtyClientError("the session ended before the copy completed") }
        }
    }
}
