import ArgumentParser
import SkywireVisor

/// `skywire cli vpn ...`: the VPN client (vpn-client) and, under `server`, the exit (vpn-server).
struct VPNGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vpn",
        abstract: "Route this host's (or, as a gateway, its LAN's) traffic through another visor, or serve as a VPN exit.",
        subcommands: [Start.self, Stop.self, Status.self, List.self, ServerGroup.self,
                      URL.self, UI.self]
    )

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send all traffic (IPv4, and IPv6 when the exit offers it) through the visor with public key PK (it runs vpn-server, port 44).",
            discussion: """
            With --lan IFACE this visor becomes a LAN-wide gateway (docs/gateway.md): it serves IFACE \
            with DHCP and DNS (dnsmasq, DNS forwarded through the tunnel to the exit's current DNS \
            servers, restarted if it dies, leases kept) and forwards the LAN into \
            the tunnel with masquerading. The LAN is cut off whenever the tunnel is down, also while \
            the visor is stopped or dead; only `vpn stop` removes that. Devices in --bypass go out of \
            the uplink directly.
            """)
        @OptionGroup var control: ControlOptions
        @Option(name: [.customShort("k"), .customLong("pk")], help: "The server visor's public key (64 hex); dialled at its transport.peers address, else at the addresses transport.discovery has for it.") var pk: String
        @Flag(name: .customLong("existing-tp"), help: "Use an existing transport only; do not dial one.") var existingTransport = false
        @Option(name: .shortAndLong, help: "Seconds (1-3600) allowed for bringing up a transport to the server: lookup, punch and dials together.") var timeout: Int = 20
        @Flag(help: "Drop all traffic that would leave outside the tunnel, also while reconnecting.") var killswitch = false
        @Flag(name: .customLong("allow-relay"), help: "Accept a path through a dmsg relay server when no direct transport (stcpr, sudph) comes up; refused otherwise.")
        var allowRelay = false
        @Option(help: "DNS server(s) to use while connected (IPv4, comma separated).") var dns: String?
        @Option(help: "Gateway role: serve this LAN interface (DHCP, DNS) and send its traffic through the exit (docs/gateway.md).")
        var lan: String?
        @Option(name: .customLong("lan-subnet"), help: "Gateway role: the gateway's LAN address, ADDR/LEN (default 192.168.50.1/24).")
        var lanSubnet: String?
        @Option(help: "Gateway role: devices that go out of the uplink directly, MAC or IP, comma separated.") var bypass: String?
        @Option(help: "Gateway role: the uplink whose default route bypassing devices use (default: the only one).")
        var uplink: String?
        @Option(name: .customLong("dhcp-range"), help: "Gateway role: addresses handed out, FIRST-LAST (default: the subnet but the gateway).")
        var dhcpRange: String?

        func run() throws {
            try runControl {
                var client = try control.client()
                client.timeout = max(client.timeout, timeout + 15)
                var params: [String: ControlValue] = [
                    "pk": .string(pk), "timeout": .int(Int64(timeout)),
                    "existing_tp": .bool(existingTransport), "killswitch": .bool(killswitch),
                ]
                if allowRelay { params["allow_relay"] = .bool(true) }
                if let dns { params["dns"] = .string(dns) }
                if let lan { params["lan"] = .string(lan) }
                if let lanSubnet { params["lan_subnet"] = .string(lanSubnet) }
                if let bypass { params["bypass"] = .string(bypass) }
                if let uplink { params["uplink"] = .string(uplink) }
                if let dhcpRange { params["dhcp_range"] = .string(dhcpRange) }
                let app = try client.call("vpn.start", params)
                let info = app["info"]
                print("vpn connected to \(pk) as \(info?["tunnel_ip"]?.stringValue ?? "?")")
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disconnect and restore routes, DNS and firewall (as a gateway: also remove the LAN kill switch).")
        @OptionGroup var control: ControlOptions

        func run() throws {
            try runControl { _ = try control.client().call("vpn.stop") }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Server, state, tunnel addresses and byte counts; as a gateway also LAN clients, bytes and drops.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let app = try control.client().call("vpn.status")
                if json { try Output.json(app); return }
                print("app:        \(app["status"]?.stringValue ?? "unknown")")
                if let info = app["info"] {
                    func s(_ k: String) -> String { info[k]?.stringValue ?? "-" }
                    print("server:     \(s("server_pk"))")
                    print("state:      \(s("state"))")
                    print("tunnel:     \(s("tunnel_ip")) (server \(s("server_tunnel_ip")), \(s("interface")))")
                    print("ipv6:       \(info["tunnel_ip6"]?.stringValue ?? "blocked: \(s("ipv6_blocked"))")")
                    print("transport:  \(s("transport")) to \(s("server_addr"))")
                    print("bytes:      \(info["bytes_up"]?.intValue ?? 0) up, \(info["bytes_down"]?.intValue ?? 0) down")
                    print("handshake:  \(info["last_handshake_unix"]?.intValue.map { "\($0) (unix)" } ?? "-")")
                    print("killswitch: \(info["killswitch"]?.boolValue == true ? "on" : "off")")
                    if let lan = info["lan"], lan["interface"] != nil { Self.printLAN(lan) }
                }
                if let detail = app["detail"]?.stringValue, !detail.isEmpty { print("detail:     \(detail)") }
            }
        }

        /// The gateway role's LAN side.
        static func printLAN(_ lan: ControlValue) {
            func s(_ k: String) -> String { lan[k]?.stringValue ?? "-" }
            func n(_ k: String) -> Int64 { lan[k]?.intValue ?? 0 }
            let clients = lan["clients"]?.arrayValue ?? []
            let bypass = (lan["bypass"]?.arrayValue ?? []).compactMap(\.stringValue)
            var dhcp = s("dhcp")
            if n("dhcp_restarts") > 0 { dhcp += " (\(n("dhcp_restarts")) restart(s), last exit: \(s("dhcp_last_exit")))" }
            print("lan:        \(s("interface")) \(s("address")), dhcp \(dhcp), dns via tunnel \((lan["dns"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","))")
            print("lan fence:  \(lan["killswitch"]?.boolValue == true ? "on" : "OFF"), \(n("dropped_packets")) packet(s) dropped")
            print("lan bytes:  \(n("bytes_up")) up, \(n("bytes_down")) down through the tunnel, \(n("bytes_bypass")) bypassing")
            print("bypass:     \(bypass.isEmpty ? "-" : bypass.joined(separator: ", "))")
            print("clients:    \(clients.count)")
            for c in clients {
                let name = c["hostname"]?.stringValue ?? "-"
                print("  \(c["ip"]?.stringValue ?? "?")  \(c["mac"]?.stringValue ?? "?")  \(name)\(c["bypass"]?.boolValue == true ? "  (bypass)" : "")")
            }
        }
    }

    struct ServerGroup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "server", abstract: "Run this visor as a VPN exit (vpn-server).",
            subcommands: [ServerStart.self, ServerStop.self, ServerStatus.self])
    }

    struct ServerStart: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start vpn-server.")
        @OptionGroup var control: ControlOptions
        @Option(help: ArgumentHelp(
            "Comma-separated client public keys allowed, or 'any' for every key (default: none, the exit refuses everyone).",
            valueName: "PK,...|any"))
        var whitelist: String?
        @Option(help: "Keep clients from private, link-local and exit-local addresses (true|false, default true).")
        var secure: Bool?
        @Option(name: [.customShort("i"), .customLong("netifc")], help: "Exit interface (default: that of the only default route).")
        var netifc: String?
        @Option(help: "DNS server(s) announced to clients (IPv4, comma separated).") var dns: String?
        @Option(help: "IPv6 DNS server(s) announced to clients (comma separated).") var dns6: String?
        @Option(help: ArgumentHelp("An IPv6 /64 routed to this exit for the clients, forwarded without NAT66 (default: a unique local /64 of this exit, NAT66).",
                                   valueName: "PREFIX/64"))
        var ipv6Prefix: String?

        func run() throws {
            try runControl {
                var params: [String: ControlValue] = [:]
                if let whitelist { params["whitelist"] = .string(whitelist) }
                if let secure { params["secure"] = .bool(secure) }
                if let netifc { params["netifc"] = .string(netifc) }
                if let dns { params["dns"] = .string(dns) }
                if let dns6 { params["dns6"] = .string(dns6) }
                if let ipv6Prefix { params["ipv6_prefix"] = .string(ipv6Prefix) }
                let app = try control.client().call("vpn.server.start", params)
                print("vpn-server \(app["status"]?.stringValue ?? "?"): \(app["detail"]?.stringValue ?? "")")
            }
        }
    }

    struct ServerStop: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop vpn-server and restore the system.")
        @OptionGroup var control: ControlOptions

        func run() throws {
            try runControl { _ = try control.client().call("vpn.server.stop") }
        }
    }

    struct ServerStatus: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Exit interface and connected clients.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON.") var json = false

        func run() throws {
            try runControl {
                let app = try control.client().call("vpn.server.status")
                if json { try Output.json(app); return }
                print("app:     \(app["status"]?.stringValue ?? "unknown")")
                if let info = app["info"] {
                    print("exit:    \(info["exit_interface"]?.stringValue ?? "-") (secure: \(info["secure"]?.boolValue == true))")
                    let clients = info["clients"]?.arrayValue ?? []
                    print("clients: \(clients.count)")
                    for c in clients {
                        print("  \(c["pk"]?.stringValue ?? "?")  \(c["tunnel_ip"]?.stringValue ?? "?")  in \(c["bytes_in"]?.intValue ?? 0)  out \(c["bytes_out"]?.intValue ?? 0)")
                    }
                }
                if let access = app["access"]?.stringValue { print("access:  \(access)") }
                if let detail = app["detail"]?.stringValue, !detail.isEmpty { print("detail:  \(detail)") }
            }
        }
    }
}
