import ArgumentParser
import SkywireVisor

/// `skywire cli skynet ...`: SkyNet port forwarding (docs/skynet.md).
struct SkynetGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skynet",
        abstract: "Forward local TCP ports to ports other visors expose, and expose this visor's.",
        subcommands: [Start.self, Stop.self, Status.self, ServerGroup.self]
    )

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forward a local port to a port the visor PK exposes.",
            discussion: "Listens on 127.0.0.1:LOCAL unless --bind says otherwise; each connection becomes its own stream to the visor's skynet app (port 57).")
        @OptionGroup var control: ControlOptions
        @Option(name: [.customShort("k"), .customLong("pk")], help: "The server visor's public key (64 hex).") var pk: String
        @Option(help: "The port the server visor exposes (skynet srv start --port).") var remote: Int
        @Option(help: "The local port to listen on.") var local: Int
        @Option(help: "The local IP address to listen on (default 127.0.0.1).") var bind: String?
        @Option(help: "The forward's name (default fwd-LOCAL).") var name: String?
        @Option(name: .shortAndLong, help: "Seconds (1-3600) allowed for bringing up a transport to the server visor.") var timeout: Int = 20
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                var client = try control.client()
                client.timeout = max(client.timeout, timeout + 5)
                var params: [String: ControlValue] = ["pk": .string(pk), "remote": .int(Int64(remote)), "local": .int(Int64(local)),
                                                      "timeout": .int(Int64(timeout))]
                if let bind { params["bind"] = .string(bind) }
                if let name { params["name"] = .string(name) }
                let row = try client.call("skynet.start", params)
                if json { try Output.json(row); return }
                print("forwarding \(row["local_addr"]?.stringValue ?? "?") to \(pk) port \(remote) (\(row["name"]?.stringValue ?? "?"))")
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a local forward and close its connections.")
        @OptionGroup var control: ControlOptions
        @Option(help: "The forward's name (skynet status).") var name: String

        func run() throws {
            try runControl { _ = try control.client().call("skynet.stop", ["name": .string(name)]) }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Local forwards, their connections and last errors.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let rows = try control.client().call("skynet.status")
                if json { try Output.json(rows); return }
                Output.table(["NAME", "LOCAL", "PK", "REMOTE", "ACTIVE", "TOTAL", "FAILED", "LAST ERROR"], (rows.arrayValue ?? []).map { r in
                    [r["name"]?.stringValue ?? "", r["local_addr"]?.stringValue ?? "", r["pk"]?.stringValue ?? "",
                     "\(r["remote_port"]?.intValue ?? 0)", "\(r["active"]?.intValue ?? 0)", "\(r["total"]?.intValue ?? 0)",
                     "\(r["failed"]?.intValue ?? 0)", r["last_error"]?.stringValue ?? "-"]
                })
            }
        }
    }

    /// `skywire cli skynet srv ...`: the ports this visor exposes.
    struct ServerGroup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "srv", abstract: "Expose local (or LAN) TCP ports to listed visor keys.",
            subcommands: [ServerStart.self, ServerStop.self, ServerStatus.self])
    }

    struct ServerStart: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start", abstract: "Expose a TCP port to the keys --wl lists.",
            discussion: "Closed by default: without --wl no key is admitted; --wl any admits every key. Connections go to 127.0.0.1:PORT unless --target says otherwise.")
        @OptionGroup var control: ControlOptions
        @Option(help: "The port clients ask for.") var port: Int
        @Option(help: "The forward's name (default srv-PORT).") var name: String?
        @Option(help: "HOST:PORT to connect to (default 127.0.0.1:PORT); a host on the board's LAN works too.") var target: String?
        @Option(help: "Comma-separated visor keys admitted, or \"any\" for every key (default: nobody).") var wl: String?
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                var params: [String: ControlValue] = ["port": .int(Int64(port))]
                if let name { params["name"] = .string(name) }
                if let target { params["target"] = .string(target) }
                if let wl { params["wl"] = .string(wl) }
                let row = try control.client().call("skynet.srv.start", params)
                if json { try Output.json(row); return }
                print("exposing port \(port) as \(row["name"]?.stringValue ?? "?") -> \(row["target"]?.stringValue ?? "?") (\(row["access"]?.stringValue ?? "?"))")
                if row["access"]?.stringValue == "closed" { FileHandleStderr.write("skywire cli: no --wl given: every key is refused\n") }
            }
        }
    }

    struct ServerStop: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop exposing a port and close its connections.")
        @OptionGroup var control: ControlOptions
        @Option(help: "The forward's name.") var name: String?
        @Option(help: "The exposed port.") var port: Int?

        func validate() throws {
            guard (name == nil) != (port == nil) else { throw ValidationError("give either --name or --port") }
        }

        func run() throws {
            try runControl {
                var params: [String: ControlValue] = [:]
                if let name { params["name"] = .string(name) }
                if let port { params["port"] = .int(Int64(port)) }
                _ = try control.client().call("skynet.srv.stop", params)
            }
        }
    }

    struct ServerStatus: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Exposed ports, whom they admit, their connections.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let rows = try control.client().call("skynet.srv.status")
                if json { try Output.json(rows); return }
                Output.table(["NAME", "PORT", "TARGET", "ACCESS", "ACTIVE", "TOTAL", "FAILED"], (rows.arrayValue ?? []).map { r in
                    [r["name"]?.stringValue ?? "", "\(r["port"]?.intValue ?? 0)", r["target"]?.stringValue ?? "",
                     r["access"]?.stringValue ?? "", "\(r["active"]?.intValue ?? 0)", "\(r["total"]?.intValue ?? 0)",
                     "\(r["failed"]?.intValue ?? 0)"]
                })
            }
        }
    }
}

/// `skywire cli resolver ...`: the resolving SOCKS5 proxy for `<pk>.skynet` names (docs/skynet.md).
struct ResolverGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolver",
        abstract: "The SOCKS5 proxy that resolves <pk>.skynet:PORT to visors' SkyNet ports.",
        subcommands: [Up.self, Down.self, Status.self]
    )

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the resolver (default 127.0.0.1:4446).",
            discussion: "<pk>.skynet:PORT reaches that visor's exposed PORT, skywire.skynet:PORT this visor's; other names go to --upstream, or are refused (reply 4; IP addresses reply 8). .dmsg names are not served yet.")
        @OptionGroup var control: ControlOptions
        @Option(help: "HOST:PORT to listen on (an IP address; default 127.0.0.1:4446).") var addr: String?
        @Option(help: "HOST:PORT of a SOCKS5 server for every other destination.") var upstream: String?

        func run() throws {
            try runControl {
                var params: [String: ControlValue] = [:]
                if let addr { params["addr"] = .string(addr) }
                if let upstream { params["upstream"] = .string(upstream) }
                let row = try control.client().call("resolver.up", params)
                print("resolver listening on \(row["listen_addr"]?.stringValue ?? "?")")
            }
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the resolver.")
        @OptionGroup var control: ControlOptions

        func run() throws {
            try runControl { _ = try control.client().call("resolver.down") }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Whether the resolver is up, and its counts.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let row = try control.client().call("resolver.status")
                if json { try Output.json(row); return }
                guard row != .null else { print("state:    down"); return }
                print("state:    up")
                print("listen:   \(row["listen_addr"]?.stringValue ?? "?")")
                print("upstream: \(row["upstream"]?.stringValue ?? "none")")
                print("sessions: \(row["active"]?.intValue ?? 0) active, \(row["total"]?.intValue ?? 0) total, \(row["refused"]?.intValue ?? 0) refused")
            }
        }
    }
}
