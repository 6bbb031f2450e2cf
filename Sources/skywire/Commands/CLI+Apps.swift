import ArgumentParser
import SkywireVisor

/// `skywire cli apps ...`: the apps in the config's launcher.
struct AppsGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apps",
        abstract: "List, start and stop apps.",
        subcommands: [List.self, Start.self, Stop.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List apps and their state.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let apps = try control.client().call("apps.ls")
                if json { try Output.json(apps); return }
                let rows = (apps.arrayValue ?? []).map { a -> [String] in
                    [a["name"]?.stringValue ?? "", "\(a["port"]?.intValue ?? 0)",
                     (a["auto_start"]?.boolValue ?? false) ? "yes" : "no", a["status"]?.stringValue ?? "",
                     a["detail"]?.stringValue ?? ""]
                }
                Output.table(["NAME", "PORT", "AUTO", "STATUS", "DETAIL"], rows)
            }
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start an app with its configured args.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "App name, e.g. skysocks.") var name: String

        func run() throws {
            try runControl { _ = try control.client().call("apps.start", ["name": .string(name)]) }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a running app.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "App name.") var name: String

        func run() throws {
            try runControl { _ = try control.client().call("apps.stop", ["name": .string(name)]) }
        }
    }
}
