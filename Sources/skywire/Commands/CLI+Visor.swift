import ArgumentParser
import SkywireVisor

/// `skywire cli visor ...`
struct VisorGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visor",
        abstract: "Information about the running visor.",
        subcommands: [Info.self, Ping.self]
    )

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Public key, version, uptime, transports and apps.")
        @OptionGroup var control: ControlOptions
        @Flag(help: "Print stable JSON (docs/cli.md).") var json = false

        func run() throws {
            try runControl {
                let info = try control.client().call("visor.info")
                if json { try Output.json(info); return }
                print("pk:         \(info["pk"]?.stringValue ?? "?")")
                print("version:    \(info["version"]?.stringValue ?? "?")")
                print("uptime:     \(info["uptime_seconds"]?.intValue ?? 0) s")
                print("stcpr:      \(info["stcpr_addr"]?.stringValue ?? "off")")
                print("sudph:      \(info["sudph_addr"]?.stringValue ?? "off")")
                print("transports: \(info["transports"]?.arrayValue?.count ?? 0)")
                let apps = info["apps"]?.arrayValue ?? []
                print("apps:       " + apps.map { "\($0["name"]?.stringValue ?? "?")(\($0["status"]?.stringValue ?? "?"))" }.joined(separator: " "))
            }
        }
    }

    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Echo data through a transport to a remote visor's echo app (port 7).",
            discussion: "Sends --size bytes on a stream (or --count datagrams) and checks that the echo matches."
        )
        @OptionGroup var control: ControlOptions
        @Argument(help: "The remote visor's public key (64 hex).") var pk: String
        @Option(help: "Bytes to send on one stream.") var size: Int = 65536
        @Flag(help: "Send datagrams instead of a stream.") var datagram = false
        @Option(help: "Datagrams to send with --datagram.") var count: Int = 10
        @Option(name: .shortAndLong, help: "Seconds before giving up.") var timeout: Int = 30
        @Flag(help: "Print stable JSON.") var json = false

        func validate() throws {
            guard size > 0 else { throw ValidationError("--size must be positive") }
            guard count > 0, count <= 100_000 else { throw ValidationError("--count must be in 1...100000") }
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        func run() throws {
            try runControl {
                var client = try control.client()
                client.timeout = max(client.timeout, timeout + 5)
                let result = try client.call("visor.ping", [
                    "pk": .string(pk), "size": .int(Int64(size)), "datagram": .bool(datagram),
                    "count": .int(Int64(count)), "timeout": .int(Int64(timeout)),
                ])
                if json { try Output.json(result); return }
                if datagram {
                    print("datagrams: sent \(result["sent"]?.intValue ?? 0), echoed \(result["received"]?.intValue ?? 0), rtt \(result["rtt_ms"].flatMap(\.doubleValue).map { "\($0)" } ?? "?") ms")
                } else {
                    print("stream: \(result["bytes"]?.intValue ?? 0) bytes echoed intact in \(result["elapsed_ms"]?.intValue ?? 0) ms")
                }
            }
        }
    }
}
