import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireWire

/// `stream-flood`: completes an stcpr handshake as a throw-away key, opens `--streams` streams
/// to `--port` (the echo app) and fills each one's receive window with DATA frames of
/// `--frame-bytes` bytes (1 by default: the costliest per byte to queue), never reading. With
/// nobody reading the echoes, the visor's app pauses and the bytes wait at the visor. Bounded by
/// the windows and `--seconds`. Prints one JSON line.
struct StreamFlood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream-flood",
        abstract: "Many streams filled with tiny DATA frames, without ever reading (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "Streams to open.") var streams = 1024
    @Option(help: "The destination port (an app that accepts: echo is 7).") var port: UInt16 = 7
    @Option(help: "DATA payload bytes per frame.") var frameBytes = 1
    @Option(help: "DATA bytes per stream (at most the visor's 256 KiB window).") var bytesPerStream = 256 * 1024
    @Option(help: "Seconds to run at most.") var seconds = 60.0
    @Option(help: "Seconds to keep the connection open (unread) after sending, within --seconds.") var hold = 0.0

    func run() throws {
        var link = try target.connect(sendTimeoutMillis: 500)
        defer { close(link.fd) }
        let start = HostileStcpr.now()
        let payload = ArraySlice([UInt8](repeating: 0x61, count: max(1, frameBytes)))
        let framesPerBatch = max(1, 8192 / max(1, frameBytes))
        var opened = 0, dataBytes = 0, stalls = 0
        var closedBy: String?
        // Initiator ids are odd, increasing (PROTOCOL.md §5).
        outer: for index in 0..<streams {
            guard HostileStcpr.now() - start < seconds else { break }
            let id = MuxStreamID(UInt32(2 * index + 1))
            var frames: [MuxFrame<ArraySlice<UInt8>>] = [.open(streamID: id, destinationPort: port,
                                                             sourcePort: UInt16(truncatingIfNeeded: 40000 + index),
                                                             initialWindow: 256 * 1024)]
            var left = bytesPerStream
            while left > 0 {
                guard HostileStcpr.now() - start < seconds else { break outer }
                while left > 0 && frames.count < framesPerBatch {
                    let n = min(left, payload.count)
                    frames.append(.data(streamID: id, payload: payload.prefix(n)))
                    left -= n
                }
                var pending = ByteBuffer()
                try link.seal(frames, into: &pending)
                sending: while true {
                    guard HostileStcpr.now() - start < seconds else { break outer }
                    switch link.send(&pending) {
                    case .sent: break sending
                    case .stalled:
                        stalls += 1
                        if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF"; break outer }
                    case .closed(let e): closedBy = String(cString: strerror(e)); break outer
                    }
                }
                dataBytes += frames.reduce(0) { if case .data(_, let p) = $1 { $0 + p.count } else { $0 } }
                frames.removeAll(keepingCapacity: true)
            }
            opened += 1
        }
        let holdUntil = min(HostileStcpr.now() + hold, start + seconds)
        while closedBy == nil, HostileStcpr.now() < holdUntil {
            usleep(100_000)
            if HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
        }
        if closedBy == nil, HostileStcpr.peerClosed(link.fd) { closedBy = "EOF" }
        print(#"{"streams":\#(opened),"data_bytes":\#(dataBytes),"stalled_sends":\#(stalls),"closed":\#(closedBy != nil),"#
              + #""closed_by":"\#(closedBy ?? "")","seconds":\#(((HostileStcpr.now() - start) * 100).rounded() / 100)}"#)
    }
}
