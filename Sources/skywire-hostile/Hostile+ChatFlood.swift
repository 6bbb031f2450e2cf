import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireWire

/// `chat-flood`: completes an stcpr handshake as a throw-away key and floods the visor's skychat
/// app (port 1) with `--messages` valid messages over `--streams` streams (docs/skychat.md
/// "Limits"), as fast as the socket takes them, then (`--oversized`) on the first stream a frame
/// header announcing more than the protocol's largest payload. Never reads the acks. The visor
/// must store at most its rate limit's worth (`skychat` status: `received`, `rate_limited`),
/// refuse streams past its per-sender cap, reset the oversized stream, and keep serving others.
/// Holds the connection `--hold` seconds (bounded by `--seconds`). Prints one JSON line.
struct ChatFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-flood",
        abstract: "Many skychat messages from one key, as fast as possible (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "Messages to send, 1...20000.") var messages = 2000
    @Option(help: "Streams to spread them over, 1...8.") var streams = 3
    @Option(help: "Bytes of text per message, 1...4096.") var textBytes = 64
    @Option(help: "The skychat app's port.") var port: UInt16 = 1
    @Flag(help: "Finish with a frame header announcing an oversized payload (first stream).") var oversized = false
    @Option(help: "Seconds to keep the connection open after sending (the visor reads what is in flight).") var hold = 3.0
    @Option(help: "Seconds to run at most, 1...120.") var seconds = 30.0

    /// First source port (initiator streams count up from it).
    static let firstSourcePort = 41_000
    /// Messages sealed into one send.
    static let batch = 50
    static let initialWindow: UInt32 = 256 * 1024
    static let pollMicroseconds: useconds_t = 100_000

    func validate() throws {
        guard (1...20000).contains(messages), (1...8).contains(streams), (1...ChatProtocol.maxTextBytes).contains(textBytes) else {
            throw ValidationError("--messages 1...20000, --streams 1...8, --text-bytes 1...\(ChatProtocol.maxTextBytes)")
        }
        guard (1...120).contains(seconds), hold >= 0 else { throw ValidationError("--seconds: 1...120, --hold >= 0") }
    }

    func run() throws {
        var link = try target.connect(sendTimeoutMillis: 500)
        defer { close(link.fd) }
        let start = HostileStcpr.now()
        var closedBy: String?
        var pending = ByteBuffer()
        func flush(_ link: inout HostileStcpr) {
            while closedBy == nil, pending.readableBytes > 0 {
                guard HostileStcpr.now() - start < seconds else { closedBy = "timeout"; return }
                switch link.send(&pending) {
                case .sent: return
                case .stalled: if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
                case .closed(let e): closedBy = String(cString: strerror(e))
                }
            }
        }
        // Initiator ids are odd, increasing (PROTOCOL.md §5).
        let ids = (0..<streams).map { MuxStreamID(UInt32(2 * $0 + 1)) }
        try link.seal(ids.enumerated().map { index, id in
            .open(streamID: id, destinationPort: port, sourcePort: UInt16(Self.firstSourcePort + index), initialWindow: Self.initialWindow)
        }, into: &pending)
        flush(&link)
        let text = String(repeating: "x", count: textBytes)
        var sent = 0
        while closedBy == nil, sent < messages {
            var frames: [MuxFrame<ArraySlice<UInt8>>] = []
            for _ in 0..<min(Self.batch, messages - sent) {
                let bytes = try ChatFrame.message(ChatWireMessage(id: UInt64(sent + 1), timeMillis: 0, text: text)).encoded()
                frames.append(.data(streamID: ids[sent % ids.count], payload: bytes[...]))
                sent += 1
            }
            try link.seal(frames, into: &pending)
            flush(&link)
        }
        var oversizedSent = false
        if oversized, closedBy == nil {
            // On the first stream, after its messages: an admitted stream turning hostile.
            let length = UInt16(ChatProtocol.maxPayload + 1)
            let header: [UInt8] = [ChatProtocol.version, ChatFrameType.message.rawValue, UInt8(length >> 8), UInt8(length & 0xff)]
            try link.seal([.data(streamID: ids[0], payload: header[...])], into: &pending)
            flush(&link)
            oversizedSent = closedBy == nil
        }
        let holdUntil = min(HostileStcpr.now() + hold, start + seconds)
        while closedBy == nil, HostileStcpr.now() < holdUntil {
            usleep(Self.pollMicroseconds)
            if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
        }
        print(#"{"messages_sent":\#(sent),"streams":\#(streams),"oversized_sent":\#(oversizedSent),"closed":\#(closedBy != nil),"#
              + #""closed_by":"\#(closedBy ?? "")","seconds":\#(((HostileStcpr.now() - start) * 100).rounded() / 100)}"#)
    }
}
