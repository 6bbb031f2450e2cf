import ArgumentParser
// Placeholder root command until the lead wires the full tree.
@main struct Skywire: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "skywire", subcommands: [ConfigCommand.self])
}
