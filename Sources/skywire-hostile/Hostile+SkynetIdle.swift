import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireWire

/// `skynet-idle`: completes an stcpr handshake as a throw-away key, opens `--streams` streams to
/// the visor's skynet app (port 57) and sends on each only the first byte of a SkyNet request
/// (VER, docs/skynet.md "Wire"), never the port: every stream waits for a request that does not
/// come. The visor must reset a key no forward admits at once, and any other within the request
/// timeout (10 s). Holds the connection `--hold` seconds (bounded by `--seconds`), sending a PING
/// every `pingInterval` (the visor refreshes the stream count `tp ls` shows when a frame
/// arrives); prints one JSON line. The test reads how many streams the visor still holds from
/// `tp ls --json`.
struct SkynetIdle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skynet-idle",
        abstract: "Many skynet streams with an unfinished request, held open (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "Streams to open, 1...1000.") var streams = 200
    @Option(help: "The skynet app's port.") var port: UInt16 = 57
    @Option(help: "Seconds to keep the connection open after opening the streams.") var hold = 8.0
    @Option(help: "Seconds to run at most, 1...120.") var seconds = 30.0

    /// The request's first byte: a valid VER, so the visor waits for the port.
    static let partialRequest: ArraySlice<UInt8> = [0x01]
    /// First source port (initiator streams count up from it).
    static let firstSourcePort = 40_000
    static let pingInterval = 0.5
    static let pollMicroseconds: useconds_t = 100_000

    func validate() throws {
        guard (1...1000).contains(streams) else { throw ValidationError("--streams: 1...1000") }
        guard (1...120).contains(seconds), hold >= 0 else { throw ValidationError("--seconds: 1...120, --hold >= 0") }
    }

    func run() throws {
        var link = try target.connect(sendTimeoutMillis: 500)
        defer { close(link.fd) }
        let start = HostileStcpr.now()
        var opened = 0
        var closedBy: String?
        for index in 0..<streams {
            guard HostileStcpr.now() - start < seconds else { break }
            // Initiator ids are odd, increasing (PROTOCOL.md §5).
            let id = MuxStreamID(UInt32(2 * index + 1))
            var pending = ByteBuffer()
            try link.seal([.open(streamID: id, destinationPort: port, sourcePort: UInt16(truncatingIfNeeded: Self.firstSourcePort + index),
                                 initialWindow: 256 * 1024),
                           .data(streamID: id, payload: Self.partialRequest)], into: &pending)
            // A stalled send keeps the rest of the record in `pending`: retried until sent or out of time.
            sending: while closedBy == nil {
                guard HostileStcpr.now() - start < seconds else { closedBy = "timeout"; break }
                switch link.send(&pending) {
                case .sent:
                    opened += 1
                    break sending
                case .stalled: if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
                case .closed(let e): closedBy = String(cString: strerror(e))
                }
            }
            if closedBy != nil { break }
        }
        let holdUntil = min(HostileStcpr.now() + hold, start + seconds)
        var lastPing = HostileStcpr.now(), pings: UInt64 = 0
        while closedBy == nil, HostileStcpr.now() < holdUntil {
            usleep(Self.pollMicroseconds)
            if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
            if HostileStcpr.now() - lastPing >= Self.pingInterval {
                lastPing = HostileStcpr.now()
                var ping = ByteBuffer()
                try link.sealPings(1, from: pings, into: &ping)
                pings += 1
                // A record is sent whole (a stalled rest is retried), or the connection is over.
                while closedBy == nil, ping.readableBytes > 0, HostileStcpr.now() - start < seconds {
                    if case .closed(let e) = link.send(&ping) { closedBy = String(cString: strerror(e)) }
                }
            }
        }
        print(#"{"streams":\#(opened),"closed":\#(closedBy != nil),"closed_by":"\#(closedBy ?? "")","#
              + #""seconds":\#(((HostileStcpr.now() - start) * 100).rounded() / 100)}"#)
    }
}
