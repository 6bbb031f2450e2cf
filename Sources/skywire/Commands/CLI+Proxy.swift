import ArgumentParser
import SkywireVisor

/// `skywire cli proxy ...`: the SOCKS5 proxy client app (skysocks-client).
struct ProxyGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Start, stop and inspect the local SOCKS5 proxy to another visor.",
        subcommands: [Start.self, Stop.self, Status.self, List.self]
    )

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Proxy local SOCKS5 connections through the visor with public key PK.",
            discussion: "Listens on 127.0.0.1:1080 unless --addr says otherwise. The server visor runs skysocks (port 3).")
        @OptionGroup var control: ControlOptions
        @Option(name: [.customShort("k"), .customLong("pk")], help: "The server visor's public key (64 hex); dialled at its transport.peers address, else at the addresses transport.discovery has for it.") var pk: String
        @Option(help: "HOST:PORT to listen on (default 127.0.0.1:1080).") var addr: String?
        @Option(name: .shortAndLong, help: "Seconds (1-3600) allowed for bringing up a transport to the server: lookup, punch and dials together.") var timeout: Int = 20

        func run() throws {
            try runControl {
                var client = try control.client()
                client.timeout = max(client.timeout, timeout + 5)
                var params: [String: ControlValue] = ["pk": .string(pk), "timeout": .int(Int64(timeout))]
                if let addr { params["addr"] = .string(addr) }
                let app = try client.call("proxy.start", params)
                let listen = app["info"]?["listen_addr"]?.stringValue ?? addr ?? "127.0.0.1:1080"
                print("socks5 proxy listening on \(listen) via \(pk)")
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the local SOCKS5 proxy.")
        @OptionGroup var control: ControlOptions

        func run() throws {
            try runControl { _ = try control.client().call("proxy.stop") }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "State, server and byte counts of the proxy.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let app = try control.client().call("proxy.status")
                if json { try Output.json(app); return }
                print("state:    \(app["status"]?.stringValue ?? "unknown")")
                if let info = app["info"] {
                    print("server:   \(info["server_pk"]?.stringValue ?? "?")")
                    print("listen:   \(info["listen_addr"]?.stringValue ?? "?")")
                    print("sessions: \(info["active_sessions"]?.intValue ?? 0) active, \(info["total_sessions"]?.intValue ?? 0) total")
                    print("bytes:    \(info["bytes_up"]?.intValue ?? 0) up, \(info["bytes_down"]?.intValue ?? 0) down")
                }
                if let detail = app["detail"]?.stringValue, !detail.isEmpty { print("detail:   \(detail)") }
            }
        }
    }
}
