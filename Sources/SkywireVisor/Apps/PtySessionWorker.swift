import Logging
import NIOCore
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// One pty session's blocking side, on a thread of its own (docs/pty.md): spawns the shell or
/// command (`SessionProcess`) or does the file copy, and moves bytes between it and the
/// `PtySessionLink` with poll(2). Logs the session (client key, command, user, exit status).
final class PtySessionWorker: @unchecked Sendable {
    // @unchecked Sendable: handed to its thread in `start` and used only there afterwards.
    let request: PtyOpenRequest
    let userName: String
    let peer: String
    let link: PtySessionLink
    let logger: Logger

    /// After the client went away: SIGHUP at once, SIGKILL this much later.
    static let killGrace: Duration = .seconds(2)
    /// After the command exited: how long output still held open (by a background child) is read.
    static let drainGrace: Duration = .seconds(1)
    /// poll(2) timeout while a deadline above is pending, in milliseconds.
    static let tickMilliseconds: Int32 = 100
    /// The PATH a session starts with.
    static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    /// The shell that runs `exec` commands (`exec "$0" "$@"`: argv exactly, looked up in PATH).
    static let execShell = "/bin/sh"
    static let execScript = "exec \"$0\" \"$@\""
    /// TERM for a shell whose client sent none.
    static let defaultTerm = "xterm"

    init(request: PtyOpenRequest, userName: String, peer: String, link: PtySessionLink, logger: Logger) {
        self.request = request
        self.userName = userName
        self.peer = peer
        self.link = link
        self.logger = logger
    }

    func start() throws {
        _ = try SystemThread(name: "pty session") { [self] in
            pthread_detach(pthread_self())
            run()
        }
    }

    private func run() {
        defer { link.finished() }
        do {
            let user = try SessionUser.lookup(userName)
            switch request.mode {
            case .shell, .exec: try runProcess(as: user)
            case .copyPut: try receiveFile(as: user)
            case .copyGet: try sendFile(as: user)
            }
        } catch {
            logger.warning("pty: session failed", metadata: ["pk": "\(peer)", "mode": "\(request.mode)", "error": "\(error)"])
            link.send(PtyFrame.error("\(error)").encoded)
        }
    }

    /// The program, argv and a description for the log.
    private func command(for user: SessionUser) throws -> (path: String, argv: [String]) {
        switch request.mode {
        case .shell where request.argv.isEmpty:
            // A login shell: argv[0] starts with "-" (login(1)'s convention).
            let name = user.shell.split(separator: "/").last.map(String.init) ?? "sh"
            return (user.shell, ["-" + name])
        default:
            guard !request.argv.isEmpty, !request.argv[0].isEmpty else { throw PtyProtocolError("exec: no command given") }
            return (Self.execShell, ["sh", "-c", Self.execScript] + request.argv)
        }
    }

    private func environment(for user: SessionUser) -> [String] {
        let term = request.term.isEmpty || request.term.contains("=") ? (request.mode == .shell ? Self.defaultTerm : "dumb") : request.term
        return ["HOME=\(user.home)", "USER=\(user.name)", "LOGNAME=\(user.name)", "SHELL=\(user.shell)",
                "PATH=\(Self.path)", "TERM=\(term)"]
    }

    // MARK: shell and exec

    private struct Output {
        let descriptor: OwnedDescriptor
        let type: PtyFrameType
        var open = true
    }

    private func runProcess(as user: SessionUser) throws {
        let (path, argv) = try command(for: user)
        let terminal = request.mode == .shell
            ? SessionProcess.WindowSize(rows: request.size.rows, columns: request.size.columns) : nil
        let process = try SessionProcess.spawn(path: path, argv: argv, environment: environment(for: user), user: user,
                                               terminal: terminal)
        let shown = request.mode == .shell && request.argv.isEmpty ? "login shell \(user.shell)" : request.argv.joined(separator: " ")
        logger.info("pty: session started", metadata: ["pk": "\(peer)", "mode": "\(request.mode)", "user": "\(user.name)",
                                                         "command": "\(shown)", "pid": "\(process.pid)"])
        var outputs: [Output] = []
        let input: OwnedDescriptor?
        if let master = process.terminal {
            outputs = [Output(descriptor: master, type: .stdout)]
            input = master
        } else {
            outputs = [process.stdoutPipe, process.stderrPipe].compactMap { $0 }.enumerated().map {
                Output(descriptor: $0.element, type: $0.offset == 0 ? .stdout : .stderr)
            }
            input = process.stdinPipe
        }
        var pending: [UInt8] = []
        var inputEnded = false
        var hangupAt: ContinuousClock.Instant?
        var exitedAt: ContinuousClock.Instant?
        var failure: PtyProtocolError?
        var chunk = [UInt8](repeating: 0, count: PtyProtocol.dataChunk)
        while true {
            let (frames, gone) = link.take()
            for frame in frames where failure == nil {
                switch frame {
                case .stdin(let bytes):
                    if inputEnded || input?.isOpen != true { link.consumedInput(bytes.count) } else { pending += bytes }
                case .eof: inputEnded = true
                case .resize(let size): process.resize(.init(rows: size.rows, columns: size.columns))
                case .signal(let signal): process.signalGroup(Int32(signal.rawValue))
                default: failure = PtyProtocolError("\(frame.type) is not a frame a client sends after open")
                }
            }
            if (gone || failure != nil), hangupAt == nil {
                process.signalGroup(SIGHUP)
                hangupAt = .now
            }
            if let at = hangupAt, ContinuousClock.now - at > Self.killGrace { process.signalGroup(SIGKILL) }
            if let input, input.isOpen, !pending.isEmpty {
                let written = Self.writeSome(input.raw, pending)
                if written < 0 {
                    link.consumedInput(pending.count)
                    pending = []
                    if process.terminal == nil { input.close() }
                } else if written > 0 {
                    link.consumedInput(written)
                    pending.removeFirst(written)
                }
            }
            // The command's stdin closes once the client's ended and everything was written to it
            // (a terminal's input stays open: the client ends a shell by its exit).
            if inputEnded, pending.isEmpty, process.terminal == nil, let input, input.isOpen { input.close() }
            if !gone {
                for i in outputs.indices where outputs[i].open && link.canSend {
                    outputs[i].open = readAvailable(outputs[i], into: &chunk)
                }
            }
            if process.reap() != nil, exitedAt == nil { exitedAt = .now }
            if let at = exitedAt {
                let drained = !outputs.contains { $0.open }
                if drained || gone || ContinuousClock.now - at > Self.drainGrace { break }
            }
            var fds = [pollfd(fd: link.wake.raw, events: Int16(POLLIN), revents: 0)]
            if exitedAt == nil { fds.append(pollfd(fd: process.exitDescriptor.raw, events: Int16(POLLIN), revents: 0)) }
            if link.canSend {
                for output in outputs where output.open { fds.append(pollfd(fd: output.descriptor.raw, events: Int16(POLLIN), revents: 0)) }
            }
            if let input, input.isOpen, !pending.isEmpty { fds.append(pollfd(fd: input.raw, events: Int16(POLLOUT), revents: 0)) }
            let timeout = exitedAt != nil || hangupAt != nil ? Self.tickMilliseconds : -1
            _ = poll(&fds, nfds_t(fds.count), timeout)
            Self.drainWake(link.wake.raw)
        }
        let exit = process.exit
        if let failure {
            link.send(PtyFrame.error(failure.message).encoded)
        } else if let exit {
            link.send(PtyFrame.exit(exit.frameStatus).encoded)
        }
        logger.info("pty: session ended", metadata: ["pk": "\(peer)", "mode": "\(request.mode)", "command": "\(shown)",
                                                       "exit": "\(exit.map { "\($0)" } ?? "running (client gone)")"])
        if exit == nil { process.signalGroup(SIGKILL) }
        // A child still running (killed above) is reaped here, bounded by the kill just sent.
        if process.reap() == nil { Self.reapBlocking(process) }
    }

    /// Reads what `output` has (a few chunks at most per turn) and sends it; false at its end
    /// (EOF, or EIO: a pty whose terminal side closed).
    private func readAvailable(_ output: Output, into chunk: inout [UInt8]) -> Bool {
        let maxChunksPerTurn = 8
        for _ in 0..<maxChunksPerTurn where link.canSend {
            let n = chunk.withUnsafeMutableBytes { read(output.descriptor.raw, $0.baseAddress, $0.count) }
            if n > 0 {
                var frame: [UInt8] = []
                frame.reserveCapacity(PtyProtocol.headerLength + n)
                chunk.withUnsafeBytes { PtyFrame.encodeData(output.type, UnsafeRawBufferPointer(rebasing: $0[0..<n]), into: &frame) }
                link.send(frame)
                continue
            }
            if n < 0, errno == EAGAIN || errno == EINTR { return true }
            return false
        }
        return true
    }

    /// write(2) without blocking: bytes written, 0 when it would block, -1 when the reader is gone.
    static func writeSome(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EINTR ? 0 : -1
    }

    static func drainWake(_ fd: Int32) {
        var value: UInt64 = 0
        _ = read(fd, &value, MemoryLayout<UInt64>.size)
    }

    /// Waits for a child already sent SIGKILL.
    private static func reapBlocking(_ process: SessionProcess) {
        let attempts = 50
        for _ in 0..<attempts {
            var fd = pollfd(fd: process.exitDescriptor.raw, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, tickMilliseconds)
            if process.reap() != nil { return }
        }
    }
}

extension SessionExit {
    /// The `exit` frame's form (status and signal numbers fit a byte on Linux).
    var frameStatus: PtyExitStatus {
        switch self {
        case .exited(let code): .exited(UInt8(truncatingIfNeeded: code))
        case .signalled(let signal): .signalled(UInt8(truncatingIfNeeded: signal))
        }
    }
}
