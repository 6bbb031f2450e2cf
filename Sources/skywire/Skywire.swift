import ArgumentParser
import SkywireVisor

/// The `skywire` binary: daemon, control CLI and config writer in one.
@main
struct Skywire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skywire",
        abstract: "A Skywire-style visor: key-addressed encrypted transports, VPN and SOCKS5 apps.",
        version: SkywireVersion.string,
        subcommands: [VisorCommand.self, CLICommand.self, ConfigCommand.self]
    )
}
