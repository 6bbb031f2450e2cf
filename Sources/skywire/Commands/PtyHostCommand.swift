import ArgumentParser
import Logging
import NIOPosix
import SkywireVisor

/// The daemons' log (`visor`, `pty-host`): stderr, i.e. the journal under systemd.
enum StderrLogging {
    /// Sets up swift-log once for the process and returns the `skywire` logger at `level`.
    static func bootstrap(level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        var logger = Logger(label: "skywire")
        logger.logLevel = level
        return logger
    }
}

/// `skywire pty-host` (hidden): the pty session host outside the visor's sandbox
/// (docs/pty.md "Session host"). Under systemd (`skywire-pty.socket`, `Accept=yes`) stdin is the
/// connection and one session is served; `--socket PATH` listens itself (tests).
struct PtyHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pty-host",
        abstract: "Serve pty sessions for a visor's pty app (--session-host) outside its sandbox.",
        shouldDisplay: false
    )

    @Option(name: .long, help: "Listen on this unix socket (mode 0600) instead of serving one session on stdin.")
    var socket: String?

    @Option(name: .long, help: "With --socket: sessions at once; more connections are closed.")
    var maxSessions: Int = PtySessionHost.defaultMaxSessions

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard (1...1024).contains(maxSessions) else { throw ValidationError("--max-sessions needs 1...1024") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
    }

    func run() async throws {
        // stdout may be the session's socket: the log goes to stderr (the journal on boards).
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let logger = StderrLogging.bootstrap(level: level)
        let group = MultiThreadedEventLoopGroup.singleton
        if let socket {
            try await PtySessionHost.listen(path: socket, maxSessions: maxSessions, group: group, logger: logger).closeFuture.get()
        } else {
            try await PtySessionHost.serve(connectedDescriptor: 0, group: group, logger: logger)
        }
    }
}
