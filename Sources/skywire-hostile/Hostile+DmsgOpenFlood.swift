import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireCrypto
import SkywireDmsg

/// `dmsg-open-flood`: authenticates to a relay as a fresh key and sends up to `--count` OPENs
/// (increasing odd ids) to keys that have no session, as fast as the relay takes them, without
/// reading its OPEN_REJECTs (SO_RCVBUF `--rcvbuf`). Bounded by `--seconds`. Prints one JSON
/// line: OPENs sent and whether the relay stopped reading it or closed it.
struct DmsgOpenFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmsg-open-flood",
        abstract: "A dmsg client that floods OPENs to absent keys and never reads the answers (bounded).")

    @OptionGroup var target: DmsgRelayOptions
    @Option(help: "OPENs to send at most.") var count = 1_000_000
    @Option(help: "Seconds to keep sending.") var seconds = 10.0
    @Option(help: "SO_RCVBUF of the socket.") var rcvbuf: Int32 = 4096
    /// OPENs sealed per send.
    static let batch = 256
    /// Absent keys used in turn (deriving a fresh key per OPEN would bound the flood by key generation).
    static let absentKeys = 64

    func run() throws {
        var client = try HostileStcpr(target: try HostileStcpr.address(target.addr), remote: try target.relayKey,
                                      receiveBuffer: rcvbuf, sendTimeoutMillis: 500)
        defer { close(client.fd) }
        let keys = (0..<Self.absentKeys).map { _ in KeyPair.generate().publicKey }
        let start = HostileStcpr.now()
        var sent = 0
        var next: DmsgStreamID = 1
        var outcome = "count reached"
        var out = ByteBuffer()
        flood: while sent < count {
            guard HostileStcpr.now() - start < seconds else { outcome = "time up"; break }
            let n = min(Self.batch, count - sent)
            let frames = (0..<n).map { i -> DmsgFrame in
                defer { next &+= 2 }
                return .open(stream: next, peer: keys[(sent + i) % keys.count], window: 65536)
            }
            try HostileDmsg.seal(frames, with: &client, into: &out)
            switch client.send(&out) {
            case .sent: sent += n
            case .stalled: outcome = "stalled"; break flood
            case .closed: outcome = "closed"; break flood
            }
        }
        let closed = HostileStcpr.hold([client.fd], seconds: max(0, seconds - (HostileStcpr.now() - start)))
        print(#"{"opens_sent":\#(sent),"outcome":"\#(outcome)","closed_by_relay":\#(closed)}"#)
    }
}
