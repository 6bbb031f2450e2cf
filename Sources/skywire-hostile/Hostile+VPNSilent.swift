import ArgumentParser
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireConfig
import SkywireCrypto
import SkywireTransport
#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// `vpn-silent`: dials a visor over stcpr, opens `--streams` control streams to its vpn-server
/// port and never says CLIENT_HELLO; after `--wait` seconds prints one JSON line: how many
/// streams were opened, how many the server closed (reset or FIN) and when (docs/vpn.md §2:
/// the server resets them after 10 s). Bounded: at most `maxStreams` streams, one dial.
struct VPNSilent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vpn-silent",
        abstract: "Open VPN control streams that never send CLIENT_HELLO; report when the server closes them.")

    static let maxStreams = 256
    static let maxWaitSeconds = 120
    static let vpnServerPort: UInt16 = 44
    static let firstSourcePort: UInt16 = 1000

    @Option(help: "The exit's public key.") var pk: String
    @Option(help: "The exit's stcpr address HOST:PORT.") var stcpr: String
    @Option(help: "Our secret key (128 hex, with --our-pk); default: a fresh key.") var sk: String?
    @Option(name: .customLong("our-pk"), help: "Our public key, with --sk.") var ourPK: String?
    @Option(help: "Streams to open (1...\(maxStreams)).") var streams = 4
    @Option(help: "Seconds to wait for the server to close them (1...\(maxWaitSeconds)).") var wait = 20

    func validate() throws {
        guard (1...Self.maxStreams).contains(streams) else { throw ValidationError("--streams must be 1...\(Self.maxStreams)") }
        guard (1...Self.maxWaitSeconds).contains(wait) else { throw ValidationError("--wait must be 1...\(Self.maxWaitSeconds)") }
        guard (sk == nil) == (ourPK == nil) else { throw ValidationError("--sk and --our-pk go together") }
    }

    func run() throws {
        let exit = try PublicKey(hex: pk)
        let address = try HostPort.parse(stcpr).get()
        let identity = try sk.map { try KeyPair(secretKeyHex: $0, publicKey: try PublicKey(hex: ourPK ?? "")) } ?? KeyPair.generate()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let settings = TransportSettings(identity: identity, listenHost: "127.0.0.1", stcprPort: 0, sudphPort: 0,
                                         peers: [exit: PeerAddresses(stcpr: address)])
        let manager = TransportManager(settings: settings, group: group, logger: Logger(label: "vpn-silent"))
        let closes = SilentCloses()
        let started = NIODeadline.now()
        var opened = 0
        for i in 0..<streams {
            try manager.openStream(to: exit, port: Self.vpnServerPort, sourcePort: Self.firstSourcePort + UInt16(i),
                                   timeout: .seconds(10)).flatMap { stream -> EventLoopFuture<Void> in
                let box = LoopTransfer(value: stream)
                return stream.eventLoop.submit { box.value.setDelegate(SilentDelegate(closes: closes, started: started)) }
            }.wait()
            opened += 1
        }
        sleep(UInt32(wait))
        let after = closes.milliseconds
        print("{\"opened\": \(opened), \"closed\": \(after.count), \"closed_after_ms\": [\(after.map(String.init).joined(separator: ", "))]}")
    }
}

/// When each stream was closed by the server (ms after the first open).
final class SilentCloses: Sendable {
    private let box = NIOLockedValueBox<[Int64]>([])
    func add(_ ms: Int64) { box.withLockedValue { $0.append(ms) } }
    var milliseconds: [Int64] { box.withLockedValue { $0 } }
}

/// Says nothing; notes the first close (FIN or reset) of its stream.
final class SilentDelegate: AppStreamDelegate {
    let closes: SilentCloses
    let started: NIODeadline
    var closed = false

    init(closes: SilentCloses, started: NIODeadline) {
        self.closes = closes
        self.started = started
    }

    private func close() {
        guard !closed else { return }
        closed = true
        closes.add((NIODeadline.now() - started).nanoseconds / 1_000_000)
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {}
    func appStreamDidReceiveFinish(_ stream: AppStream) { close() }
    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { close() }
    func appStreamWritabilityChanged(_ stream: AppStream) {}
}
