import ArgumentParser
import SkywireConfig
import SkywireVisor
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `skywire cli pty ...`: remote shells, commands and copies on another visor's `pty` app
/// (port 22), through this visor's control socket (`stream.open`; docs/pty.md).
struct PtyGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pty",
        abstract: "Remote shell, commands and file copies on another visor (its pty app, port 22).",
        discussion: """
            The remote visor's pty app must list this visor's key (--whitelist). `exec` and `start` \
            exit with the remote command's status (128+N when killed by signal N), 124 after \
            --timeout, 255 when the session could not run.
            """,
        subcommands: [Start.self, Exec.self, Copy.self, List.self]
    )

    /// Options of the commands that reach one visor.
    struct Target: ParsableArguments {
        @OptionGroup var control: ControlOptions
        @Option(name: .customLong("dial-timeout"), help: "Seconds (1-3600) allowed for bringing up a transport and opening the stream.")
        var dialTimeout: Int = 20

        func open(_ pk: String) throws -> PtyClientSession {
            let key = try PtyGroup.publicKey(pk)
            var client = try control.client()
            client.timeout = max(client.timeout, dialTimeout + 5)
            return try PtyClientSession(socket: client.openStream(pk: key, port: AppName.pty.defaultPort, timeout: dialTimeout))
        }
    }

    static func publicKey(_ text: String) throws -> String {
        let pk = text.lowercased()
        guard pk.utf8.count == 64, pk.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw ValidationError("\"\(text)\" is not a visor public key (64 hex characters)")
        }
        return pk
    }

    /// Runs a session; failures of the session itself end with 255 (the remote status is the command's).
    static func session(_ body: () throws -> Int32) throws {
        let status: Int32
        do {
            status = try body()
        } catch let e as ControlError {
            FileHandleStderr.write("skywire cli pty: \(e.message)\n")
            throw ExitCode(PtyClientSession.failureStatus)
        } catch let e as PtyClientError {
            FileHandleStderr.write("skywire cli pty: \(e.message)\n")
            throw ExitCode(PtyClientSession.failureStatus)
        }
        throw ExitCode(status)
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open an interactive login shell on the visor with public key PK.",
            discussion: "The local terminal is in raw mode while the shell runs (Ctrl-C goes to the remote shell) and is put back as it was on exit, on errors and on SIGTERM/SIGHUP (which are passed on).")
        @OptionGroup var target: Target
        @Argument(help: "The remote visor's public key.") var pk: String

        func run() throws {
            try PtyGroup.session {
                let session = try target.open(pk)
                let term = getenv("TERM").map { String(cString: $0) } ?? ""
                return try PtyClient.run(session, request: PtyOpenRequest(mode: .shell, term: term, size: PtyClient.localWindowSize),
                                         timeout: nil)
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command on the visor with public key PK, without a terminal.",
            discussion: "The arguments after -- are the command's argv exactly (looked up in PATH; no shell: use -- sh -c '...'). stdout and stderr stay apart; our stdin is the command's unless it is a terminal. Exits with the command's status.")
        @OptionGroup var target: Target
        @Option(help: "Seconds after which the command is abandoned (it gets SIGHUP, then SIGKILL) and we exit 124.") var timeout: Int?
        @Argument(help: "The remote visor's public key.") var pk: String
        @Argument(parsing: .postTerminator, help: "-- CMD ARGS...") var command: [String] = []

        func validate() throws {
            if let timeout, !(1...86_400).contains(timeout) { throw ValidationError("--timeout must be in 1...86400 s") }
            guard !command.isEmpty else { throw ValidationError("no command given (pty exec PK -- CMD ARGS...)") }
        }

        func run() throws {
            let argvToRun = command
            try PtyGroup.session {
                let session = try target.open(pk)
                return try PtyClient.run(session, request: PtyOpenRequest(mode: .exec, argv: argvToRun), timeout: timeout)
            }
        }
    }

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cp",
            abstract: "Copy a file to (LOCAL PK:REMOTE) or from (PK:REMOTE LOCAL) another visor.",
            discussion: "Permission bits are kept (not set-id bits), SHA-256 is checked, and the file appears at its destination only when complete. A relative REMOTE is relative to the pty user's home; REMOTE ending in / or LOCAL naming a directory keeps the file's name.")
        @OptionGroup var target: Target
        @Argument(help: "Source: LOCAL or PK:REMOTE.") var source: String
        @Argument(help: "Destination: PK:REMOTE or LOCAL.") var destination: String

        static func remote(_ text: String) -> (pk: String, path: String)? {
            guard let colon = text.firstIndex(of: ":"), text.distance(from: text.startIndex, to: colon) == 64 else { return nil }
            return (String(text[..<colon]), String(text[text.index(after: colon)...]))
        }

        func run() throws {
            let from = Self.remote(source), to = Self.remote(destination)
            guard (from == nil) != (to == nil) else { throw ValidationError("exactly one of the two paths must be PK:REMOTE") }
            do {
                if let to {
                    let bytes = try PtyClient.put(try target.open(to.pk), local: source, remote: to.path)
                    print("\(source) -> \(to.pk):\(to.path): \(bytes) bytes, sha256 verified")
                } else if let from {
                    let bytes = try PtyClient.get(try target.open(from.pk), remote: from.path, local: destination)
                    print("\(from.pk):\(from.path) -> \(destination): \(bytes) bytes, sha256 verified")
                }
            } catch let e as ControlError {
                FileHandleStderr.write("skywire cli pty: \(e.message)\n")
                throw ExitCode(e.exitStatus)
            } catch let e as PtyClientError {
                FileHandleStderr.write("skywire cli pty: \(e.message)\n")
                throw ExitCode.failure
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "Visors whose pty app admits this visor.",
            discussion: """
                Candidates: every visor this one has a transport up to, the keys given with --pk, \
                and with --discovery the visors this visor's discovery service lists (their vpn and \
                proxy entries). Each is asked for a stream to port 22 (a transport is brought up when \
                needed, within --timeout): admitted when it opens, refused when its whitelist leaves \
                us out, "no pty" when nothing listens there. At most --max visors are asked.
                """)
        @OptionGroup var control: ControlOptions
        @Option(name: .customLong("pk"), help: "Also ask this visor (64 hex; repeatable), e.g. the keys of a fleet manifest.")
        var keys: [String] = []
        @Flag(name: .customLong("discovery"), help: "Also ask the visors that transport.discovery lists (vpn and proxy entries).")
        var fromDiscovery = false
        @Option(name: .shortAndLong, help: "Seconds (1-3600) allowed per visor for the transport and the stream.")
        var timeout: Int = 5
        @Option(help: "Ask at most this many visors, 1...10000.")
        var max: Int = 64
        @Flag(help: "Print stable JSON.") var json = false

        func validate() throws {
            guard (1...3600).contains(timeout) else { throw ValidationError("--timeout \(timeout): must be 1...3600") }
            guard (1...10_000).contains(max) else { throw ValidationError("--max \(max): must be 1...10000") }
            for k in keys { _ = try PtyGroup.publicKey(k) }
        }

        func run() throws {
            try runControl {
                let client = try control.client()
                var candidates: [String] = []
                func add(_ pk: String) { if !candidates.contains(pk) { candidates.append(pk) } }
                for tp in try client.call("tp.ls").arrayValue ?? [] where tp["state"]?.stringValue == "up" {
                    if let pk = tp["remote_pk"]?.stringValue { add(pk) }
                }
                keys.map { $0.lowercased() }.forEach(add)
                if fromDiscovery {
                    for type in ["vpn", "proxy"] {
                        for entry in try client.call("discovery.services", ["type": .string(type)]).arrayValue ?? [] {
                            if let pk = entry["pk"]?.stringValue { add(pk) }
                        }
                    }
                }
                let asked = Array(candidates.prefix(max))
                if candidates.count > asked.count {
                    FileHandleStderr.write("pty list: \(candidates.count) visors found, asking the first \(asked.count) (--max)\n")
                }
                var rows: [ControlValue] = []
                for pk in asked {
                    let access: String
                    do {
                        try client.openStream(pk: pk, port: AppName.pty.defaultPort, timeout: timeout).close()
                        access = "admitted"
                    } catch let e as ControlError {
                        access = e.code == .forbidden ? "refused" : (e.code == .notFound ? "no pty" : "error: \(e.message)")
                    }
                    rows.append(.object(["pk": .string(pk), "pty": .string(access)]))
                }
                if json { try Output.json(.array(rows)); return }
                Output.table(["PK", "PTY"], rows.map { [$0["pk"]?.stringValue ?? "", $0["pty"]?.stringValue ?? ""] })
            }
        }
    }
}
