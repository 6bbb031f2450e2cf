import ArgumentParser
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireTransport

/// `dmsg-clients`: `--count` authenticated clients, each a fresh key, connect to a relay at
/// most `--rate` per second and stay idle for `--hold` seconds (they answer the relay's PINGs
/// and send their own), then close. Prints one JSON line: established, closed by the relay
/// (e.g. beyond its client cap) and failed. For the per-client memory figure and the client cap.
struct DmsgClients: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmsg-clients",
        abstract: "Many idle authenticated clients on a dmsg relay (bounded).")

    @OptionGroup var target: DmsgRelayOptions
    @Option(help: "Clients to connect.") var count = 1000
    @Option(help: "Connections started per second at most.") var rate = 500.0
    @Option(help: "Seconds to hold them once all have started.") var hold = 10.0

    func run() throws {
        _ = HostileStcpr.raiseDescriptorLimit()
        let relayKey = try target.relayKey
        let (host, port) = try target.hostPort
        let total = count
        let interval = TimeAmount.nanoseconds(Int64(1e9 / max(1, rate)))
        // Confined to the tool's one loop (and read after it finished).
        nonisolated(unsafe) var established = 0, closedByRelay = 0, failed = 0, finishing = false
        nonisolated(unsafe) var sessions: [DmsgClientSession] = []
        let keys = (0..<total).map { _ in KeyPair.generate() }
        let holdTime = TimeAmount.nanoseconds(Int64(hold * 1e9))
        _ = try HostileDmsg.run(seconds: Double(total) / max(1, rate) + hold + 30) { loop, done in
            var started = 0
            func startNext() {
                guard started < total else {
                    loop.assumeIsolated().scheduleTask(in: holdTime) {
                        finishing = true
                        for s in sessions { s.close(reason: "done") }
                        done()
                    }
                    return
                }
                let index = started
                started += 1
                var wasUp = false
                let hooks = DmsgClientSession.Hooks(
                    incoming: { _ in false },
                    established: { wasUp = true; established += 1 },
                    closed: { _ in
                        if !wasUp { failed += 1 } else if !finishing { closedByRelay += 1 }
                    })
                if let s = try? DmsgClientSession(loop: loop, identity: keys[index], relay: relayKey, host: host, port: port,
                                                  logger: HostileDmsg.logger, hooks: hooks) {
                    sessions.append(s)
                } else {
                    failed += 1
                }
                loop.assumeIsolated().scheduleTask(in: interval) { startNext() }
            }
            startNext()
        }
        print(#"{"count":\#(total),"established":\#(established),"closed_by_relay":\#(closedByRelay),"failed":\#(failed)}"#)
    }
}
