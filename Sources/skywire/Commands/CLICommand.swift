import ArgumentParser
import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// `skywire cli`: talks to a running visor over its control socket.
struct CLICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cli",
        abstract: "Control a running visor through its control socket.",
        discussion: """
            The socket is found from --rpc PATH, else $SKYWIRE_RPC, else the cli_addr of \
            -c CONFIG, else \(ControlPaths.defaultSocket).
            """,
        subcommands: [VisorGroup.self, TransportGroup.self, AppsGroup.self, ProxyGroup.self, VPNGroup.self, SkynetGroup.self, ResolverGroup.self,
                      PtyGroup.self, SkychatGroup.self, UpdateGroup.self, URL.self, UI.self]
    )
}

/// Options every `skywire cli` leaf command accepts.
struct ControlOptions: ParsableArguments {
    @Option(name: .customLong("rpc"), help: "Path of the visor's control socket.")
    var rpcPath: String?

    @Option(name: .shortAndLong, help: "Visor config whose cli_addr names the control socket.")
    var config: String?

    @Option(name: .customLong("rpc-timeout"), help: "Seconds to wait for the visor's answer.")
    var rpcTimeout: Int = 60

    func client() throws -> ControlClient {
        let env = getenv("SKYWIRE_RPC").map { String(cString: $0) }
        let path = try ControlPaths.resolve(explicit: rpcPath, environment: env, configPath: config)
        return ControlClient(path: path, timeout: rpcTimeout)
    }
}

/// Output helpers shared by the CLI commands.
enum Output {
    /// Prints `value` as stable JSON: sorted keys, two-space indentation (SkywireConfig's writer).
    static func json(_ value: ControlValue) throws {
        print(value.prettyPrinted, terminator: "")
    }

    /// Prints rows as aligned columns under a header.
    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count)
            }.joined(separator: "  ")
        }
        print(line(header))
        for row in rows { print(line(row)) }
    }
}

/// Maps control errors to a message on stderr and a non-zero exit status.
func runControl(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ControlError {
        FileHandleStderr.write("skywire cli: \(e.message)\n")
        throw ExitCode(e.exitStatus)
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
