import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireCrypto
import SkywireDmsg

/// `dmsg-no-read`: authenticates to a relay as a fresh key, opens `--streams` streams to an
/// echoing client (`dmsg-pipe --mode echo`), reads the OPEN_OKs, then writes DATA on every
/// stream within the credit it got and never reads again (SO_RCVBUF `--rcvbuf`): the echoes
/// pile up at the relay. Bounded by `--seconds`. Prints one JSON line: streams opened, bytes
/// sent, and whether the relay stopped reading it (a stalled send) or closed it.
struct DmsgNoRead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmsg-no-read",
        abstract: "A dmsg client that opens streams to an echo peer, sends, and never reads (bounded).")

    @OptionGroup var target: DmsgRelayOptions
    @Option(help: "The echoing client's key (hex).") var to: String
    @Option(help: "Streams to open.") var streams = 64
    @Option(help: "Window announced per stream (the relay clamps it).") var window: UInt32 = 16 << 20
    @Option(help: "Seconds to keep sending.") var seconds = 10.0
    @Option(help: "SO_RCVBUF of the socket.") var rcvbuf: Int32 = 4096

    func run() throws {
        let destination = try PublicKey(hex: to)
        var client = try HostileStcpr(target: try HostileStcpr.address(target.addr), remote: try target.relayKey,
                                      receiveBuffer: rcvbuf, sendTimeoutMillis: 500)
        defer { close(client.fd) }
        var out = ByteBuffer()
        let ids = (0..<streams).map { DmsgStreamID(2 * $0 + 1) }
        try HostileDmsg.seal(ids.map { .open(stream: $0, peer: destination, window: window) }, with: &client, into: &out)
        guard case .sent = client.send(&out) else { throw ValidationError("the relay did not take the OPENs") }
        // The answers: credit per accepted stream (the relay clamps the echo's window).
        var credit: [DmsgStreamID: Int] = [:]
        var answered = 0
        while answered < streams {
            switch try client.readDmsgFrame() {
            case .openOK(let id, let w)?: credit[id] = Int(w); answered += 1
            case .openReject?: answered += 1
            default: break
            }
        }
        let start = HostileStcpr.now()
        var sent = 0
        var outcome = "gave up"
        let payload = ByteBuffer(repeating: 0x5A, count: DmsgFrameLayout.maxDataPayload)
        sending: while HostileStcpr.now() - start < seconds {
            var progressed = false
            for (id, left) in credit.sorted(by: { $0.key < $1.key }) where left > 0 {
                let n = min(left, payload.readableBytes)
                try HostileDmsg.seal([.data(stream: id, payload: payload.getSlice(at: 0, length: n) ?? payload)], with: &client, into: &out)
                credit[id] = left - n
                progressed = true
                switch client.send(&out) {
                case .sent: sent += n
                case .stalled: outcome = "stalled"; break sending
                case .closed: outcome = "closed"; break sending
                }
            }
            // Every credit spent: the echoes wait at the relay; keep the socket unread.
            if !progressed { outcome = "credit spent"; break }
        }
        // Hold the unread socket so the relay keeps what it queued for us (bounded by the credit we gave).
        let closed = HostileStcpr.hold([client.fd], seconds: max(0, seconds - (HostileStcpr.now() - start)))
        print(#"{"streams":\#(credit.count),"bytes_sent":\#(sent),"outcome":"\#(outcome)","closed_by_relay":\#(closed)}"#)
    }
}
