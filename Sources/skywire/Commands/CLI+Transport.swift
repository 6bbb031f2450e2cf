import ArgumentParser
import SkywireVisor

/// `skywire cli tp ...`: transports to other visors.
struct TransportGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tp",
        abstract: "Add, list and remove transports.",
        subcommands: [Add.self, List.self, Remove.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Dial a visor by public key and keep the transport up.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "The remote visor's public key (64 hex).") var pk: String
        @Option(name: [.customShort("t"), .long], help: "Transport type: stcpr, sudph or dmsg (default: stcpr with --addr; without it, punched sudph, then stcpr, then dmsg through the relay servers).") var type: String?
        @Option(help: "HOST:PORT to dial (not with -t dmsg); default: transport.peers, else the addresses transport.discovery has for PK.") var addr: String?
        @Flag(help: "Print stable JSON.") var json = false

        func validate() throws {
            if let type, !["stcpr", "sudph", "dmsg"].contains(type) {
                throw ValidationError("--type must be stcpr, sudph or dmsg, not \"\(type)\"")
            }
            if type == "dmsg" && addr != nil {
                throw ValidationError("--addr does not go with -t dmsg (it goes through the relay servers)")
            }
            guard pk.utf8.count == 64, pk.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw ValidationError("\"\(pk)\" is not a public key (64 lowercase hex characters)")
            }
        }

        func run() throws {
            try runControl {
                var params: [String: ControlValue] = ["pk": .string(pk)]
                if let type { params["type"] = .string(type) }
                if let addr { params["addr"] = .string(addr) }
                let tp = try control.client().call("tp.add", params)
                if json { try Output.json(tp); return }
                print("\(tp["id"]?.stringValue ?? "?")  \(tp["type"]?.stringValue ?? "?")  \(tp["remote_pk"]?.stringValue ?? "?")  \(tp["state"]?.stringValue ?? "?")")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List transports.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let tps = try control.client().call("tp.ls")
                if json { try Output.json(tps); return }
                let rows = (tps.arrayValue ?? []).map { tp -> [String] in
                    [tp["id"]?.stringValue ?? "", tp["type"]?.stringValue ?? "", tp["remote_pk"]?.stringValue ?? "",
                     tp["relay_pk"]?.stringValue.map { "relay \($0)" } ?? tp["remote_addr"]?.stringValue ?? "", tp["state"]?.stringValue ?? "",
                     "\(tp["bytes_sent"]?.intValue ?? 0)", "\(tp["bytes_received"]?.intValue ?? 0)",
                     tp["rtt_ms"]?.doubleValue.map { "\(($0 * 100).rounded() / 100) ms" } ?? "-"]
                }
                Output.table(["ID", "TYPE", "REMOTE", "ADDR", "STATE", "SENT", "RECV", "RTT"], rows)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a transport by id or remote public key.")
        @OptionGroup var control: ControlOptions
        @Argument(help: "Transport id or remote public key.") var target: String

        func run() throws {
            try runControl {
                _ = try control.client().call("tp.rm", ["target": .string(target)])
            }
        }
    }
}
