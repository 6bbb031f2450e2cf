import ArgumentParser

/// `skywire-hostile`: hostile-peer load generators for the hardening tests and benches
/// (Tests/integration, bench/). It attacks only the address it is given, bounded in count and
/// time; every subcommand lives in its own file (`Hostile+<Attack>.swift`). Not part of the
/// board image and not built by `make release`.
@main
struct Hostile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skywire-hostile",
        abstract: "Hostile-peer load generators for skywire's hardening tests (test tool, not shipped).",
        subcommands: [
            // One line per attack, each in Hostile+<Attack>.swift.
            VPNSilent.self,
            Slowloris.self,
            GarbageInit.self,
            Replay.self,
            PingFlood.self,
            HalfOpen.self,
            StreamFlood.self,
            Connections.self,
            SkynetIdle.self,
            ChatFlood.self,
            ManyTransports.self,
            DmsgPipe.self,
            DmsgClients.self,
            DmsgNoRead.self,
            DmsgOpenFlood.self,
            DmsgImpersonate.self,
        ]
    )
}
