import ArgumentParser
import SkywireConfig
import SkywireSystem
import SkywireVisor
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `skywire cli update ...`: signed A/B updates of this board (docs/update.md). Runs on the board
/// as root; it does not go through the visor (whose sandbox cannot write the root slots).
struct UpdateGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Install a signed update bundle into the other root slot; show the update state.",
        discussion: """
            Boards with A/B root slots (docs/update.md). `apply` checks the bundle (signature by \
            the fleet key in /etc/rauc/keyring.pem, compatible board) and writes it into the slot \
            not booted, with progress; the next boot tries it once, and its health check keeps it \
            or the board returns to the current slot by itself. `apply --from PK` first fetches the \
            bundle from another visor's update-server app over the mesh (resumable).
            """,
        subcommands: [Apply.self, Status.self]
    )

    /// rauc, the update engine (Debian package rauc, installed on A/B images).
    static let rauc = "/usr/bin/rauc"
    static let imageRelease = "/etc/skywire/image-release"
    static let statusFile = "/var/lib/skywire/update-status.json"
    static let cmdline = "/proc/cmdline"

    /// The test hook (docs/update.md): a program run instead of rauc, so that tests on a
    /// development host install nothing. Never set on a board.
    static let raucEnvironment = "SKYWIRE_UPDATE_RAUC"

    /// rauc, or the test hook's program.
    static var raucPath: String {
        getenv(raucEnvironment).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? rauc
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install a bundle (FILE on this board, an http(s) URL, or --from PK over the mesh) into the inactive slot.",
            discussion: """
                With --from PK the bundle is fetched from that visor's update-server app (port 24, \
                which must list this visor's key) through this visor's control socket, into \
                --download-dir as NAME.part (0600); a rerun after an interruption resumes from that \
                file. Its SHA-256 is checked before rauc installs it (rauc still checks the signature \
                and the board). Reboot afterwards (`systemctl reboot`) to try it; \
                `skywire cli update status` shows the outcome.
                """)
        @OptionGroup var control: ControlOptions
        @Argument(help: ArgumentHelp("The bundle: a .raucb file, or an http:// or https:// URL (not with --from).", valueName: "file-or-url"))
        var bundle: String?
        @Option(help: "Fetch the bundle from the visor with this public key (its update-server app).") var from: String?
        @Option(name: .customLong("bundle"), help: "With --from: the bundle's name on that visor (default: the only one it serves).")
        var bundleName: String?
        @Option(name: .customLong("download-dir"), help: "With --from: where the bundle is fetched to.")
        var downloadDirectory: String = UpdateMeshFetch.defaultDirectory
        @Option(name: .customLong("dial-timeout"), help: "With --from: seconds (1-3600) allowed for bringing up a transport and opening the stream.")
        var dialTimeout: Int = 20
        @Flag(help: "With --from: progress as JSON lines on stderr.") var json = false

        func validate() throws {
            guard (bundle == nil) != (from == nil) else { throw ValidationError("give either a FILE or URL, or --from PK") }
            if from == nil, bundleName != nil { throw ValidationError("--bundle needs --from") }
            guard (1...3600).contains(dialTimeout) else { throw ValidationError("--dial-timeout must be in 1...3600 s") }
            guard downloadDirectory.hasPrefix("/") else { throw ValidationError("--download-dir needs an absolute path") }
        }

        func run() throws {
            let rauc = UpdateGroup.raucPath
            guard access(rauc, X_OK) == 0 else {
                FileHandleStderr.write("skywire cli update apply: \(rauc) missing: this image has no A/B update support (docs/update.md)\n")
                throw ExitCode(1)
            }
            let source: UpdateSource
            if let from {
                let fetch = UpdateMeshFetch(control: control, pk: try PtyGroup.publicKey(from), directory: downloadDirectory,
                                            dialTimeout: dialTimeout, json: json)
                do {
                    source = .file(try fetch.fetch(try fetch.chooseBundle(bundleName)))
                } catch {
                    let reason: String
                    switch error {
                    case let e as UpdateFetchError: reason = e.message
                    case let e as ControlError: reason = e.message
                    case let e as UpdateProtocolError: reason = "the update server sent a bad frame: \(e)"
                    default: reason = "\(error)"
                    }
                    FileHandleStderr.write("skywire cli update apply: \(reason)\n")
                    throw ExitCode(1)
                }
            } else {
                do { source = try UpdateSource.parse(bundle ?? "") } catch {
                    FileHandleStderr.write("skywire cli update apply: \(error.description)\n")
                    throw ExitCode(2)
                }
            }
            if case .file(let path) = source {
                var st = stat()
                guard stat(path, &st) == 0 else {
                    FileHandleStderr.write("skywire cli update apply: \(path): \(String(cString: strerror(errno)))\n")
                    throw ExitCode(1)
                }
                guard st.st_mode & S_IFMT == S_IFREG else {
                    FileHandleStderr.write("skywire cli update apply: \(path) is not a regular file\n")
                    throw ExitCode(1)
                }
            }
            do {
                try Subprocess.replaceProcess(rauc, ["install", "--progress", source.raucArgument])
            } catch {
                FileHandleStderr.write("skywire cli update apply: \(error)\n")
                throw ExitCode(1)
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The running version and slot, and the last update's outcome.")
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            func text(_ path: String) -> String { ((try? FileIO.read(path)) ?? nil).map { String(decoding: $0, as: UTF8.self) } ?? "" }
            var last: [String: String] = [:]
            if let bytes = (try? FileIO.read(UpdateGroup.statusFile)) ?? nil,
               let value = try? ControlValue(json: JSONParser.parse(bytes)), case .object(let o) = value {
                for (k, v) in o {
                    switch v {
                    case .string(let s): last[k] = s
                    case .int(let i): last[k] = String(i)
                    default: break
                    }
                }
            }
            let report = UpdateStatusReport.parse(imageRelease: text(UpdateGroup.imageRelease), cmdline: text(UpdateGroup.cmdline), lastUpdate: last)
            if json {
                func opt(_ s: String?) -> ControlValue { s.map { .string($0) } ?? .null }
                try Output.json(.object(["board": opt(report.board), "version": opt(report.version), "slot": opt(report.slot),
                                         "last_update": report.last.isEmpty ? .null : .object(report.last.mapValues { .string($0) })]))
            } else {
                for line in report.lines { print(line) }
            }
        }
    }
}
