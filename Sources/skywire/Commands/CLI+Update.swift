import ArgumentParser
import SkywireConfig
import SkywireSystem
import SkywireVisor
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
            or the board returns to the current slot by itself.
            """,
        subcommands: [Apply.self, Status.self]
    )

    /// rauc, the update engine (Debian package rauc, installed on A/B images).
    static let rauc = "/usr/bin/rauc"
    static let imageRelease = "/etc/skywire/image-release"
    static let statusFile = "/var/lib/skywire/update-status.json"
    static let cmdline = "/proc/cmdline"

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install a bundle (FILE on this board, or an http(s) URL) into the inactive slot.",
            discussion: "Reboot afterwards (`systemctl reboot`) to try it; `skywire cli update status` shows the outcome.")
        @Argument(help: "The bundle: a .raucb file, or an http:// or https:// URL.") var bundle: String

        func run() throws {
            let source: UpdateSource
            do { source = try UpdateSource.parse(bundle) } catch {
                FileHandleStderr.write("skywire cli update apply: \(error.description)\n")
                throw ExitCode(2)
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
            guard access(UpdateGroup.rauc, X_OK) == 0 else {
                FileHandleStderr.write("skywire cli update apply: \(UpdateGroup.rauc) missing: this image has no A/B update support (docs/update.md)\n")
                throw ExitCode(1)
            }
            do {
                try Subprocess.replaceProcess(UpdateGroup.rauc, ["install", "--progress", source.raucArgument])
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
