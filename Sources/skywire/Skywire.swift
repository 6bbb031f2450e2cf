import ArgumentParser
import SkywireVisor

/// The `skywire` binary: daemon, control CLI and config writer in one.
@main
struct Skywire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skywire",
        abstract: "A Skywire-style visor: key-addressed encrypted transports, VPN and SOCKS5 apps.",
        version: SkywireVersion.string,
        subcommands: [VisorCommand.self, CLICommand.self, ConfigCommand.self, PtyHostCommand.self]
    )

    static func main() async {
        await main(ControlArguments.hoist(Array(CommandLine.arguments.dropFirst())))
    }
}

/// `skywire cli --rpc PATH tp ls` and `skywire cli tp ls --rpc PATH` mean the same: the
/// control options given right after `cli` are moved behind the leaf command, where
/// swift-argument-parser parses them.
enum ControlArguments {
    static let withValue: Set<String> = ["--rpc", "-c", "--config", "--rpc-timeout"]

    static func hoist(_ args: [String]) -> [String] {
        guard args.first == "cli" else { return args }
        var moved: [String] = []
        var rest: [String] = ["cli"]
        var i = 1
        while i < args.count {
            let a = args[i]
            if withValue.contains(a), i + 1 < args.count {
                moved += [a, args[i + 1]]
                i += 2
            } else if let eq = a.firstIndex(of: "="), withValue.contains(String(a[..<eq])) {
                moved.append(a)
                i += 1
            } else {
                break
            }
        }
        rest += args[i...]
        if let dashdash = rest.firstIndex(of: "--") {
            rest.insert(contentsOf: moved, at: dashdash)
        } else {
            rest += moved
        }
        return rest
    }
}
