import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// `ping-flood`: completes an stcpr handshake as a throw-away key, then sends mux PINGs and
/// never reads a byte, so every PONG the visor owes it queues at the visor. Bounded by
/// `--count` PINGs and `--seconds`. Prints one JSON line: PINGs sent, whether the visor stopped
/// reading (sends stalled) and whether it closed the connection.
struct PingFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping-flood",
        abstract: "stcpr handshake as a throw-away key, then PINGs without ever reading (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "PINGs to send at most.") var count = 1_000_000
    @Option(help: "Seconds to run at most.") var seconds = 30.0
    @Option(help: "PINGs per send(2).") var batch = 256

    func run() throws {
        var link = try target.connect(sendTimeoutMillis: 200)
        defer { close(link.fd) }
        let start = HostileStcpr.now()
        var sent = 0, stalls = 0
        var closedBy: String?
        var opaque: UInt64 = 0
        var pending = ByteBuffer()
        var inFlight = 0
        while sent < count, HostileStcpr.now() - start < seconds {
            if pending.readableBytes == 0 {
                pending.clear()
                inFlight = min(batch, count - sent)
                try link.sealPings(inFlight, from: opaque, into: &pending)
                opaque &+= UInt64(inFlight)
            }
            switch link.send(&pending) {
            case .sent: sent += inFlight
            case .stalled: stalls += 1
            case .closed(let e): closedBy = String(cString: strerror(e))
            }
            if closedBy != nil { break }
            if stalls > 0, HostileStcpr.peerClosed(link.fd) { closedBy = "EOF"; break }
        }
        if closedBy == nil, HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
        let elapsed = HostileStcpr.now() - start
        print(#"{"sent":\#(sent),"stalled_sends":\#(stalls),"closed":\#(closedBy != nil),"#
              + #""closed_by":"\#(closedBy ?? "")","seconds":\#((elapsed * 100).rounded() / 100)}"#)
    }
}
