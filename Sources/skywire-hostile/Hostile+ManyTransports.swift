import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireWire

/// `many-transports`: the scale load generator (bench/scale.sh, Tests/integration/t-scale.sh).
/// Opens `--count` stcpr transports to one visor, each from its own fresh key (from `--sources`
/// in turn: the visor admits `StcprAdmission.Limits.perAddress` sockets per address), keeps every
/// one alive with a PING each `--keepalive` seconds (the visor closes a transport silent for
/// `MuxConnection.deadPeerTimeout`, 30 s), optionally opens `--streams` mux streams spread over
/// them (to `--port`, the echo app by default) and holds it all for `--hold` seconds. Whatever
/// the visor sends is read and dropped. Bounded by `--count`, `--seconds` (establishing) and
/// `--hold`. Prints one JSON line; `--ready-file` is written once everything is open.
struct ManyTransports: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "many-transports",
        abstract: "Many idle stcpr transports from distinct keys, kept alive, with optional open streams (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "Transports to establish, each from a fresh key.") var count = 1000
    @Option(help: "Mux streams to open in all, spread over the transports in turn (0: none).") var streams = 0
    @Option(help: "The destination port of the streams (an app that accepts: echo is 7).") var port: UInt16 = 7
    @Option(help: "Seconds allowed for establishing the transports and opening the streams.") var seconds = 120.0
    @Option(help: "Seconds to hold everything open once established.") var hold = 10.0
    @Option(help: "Seconds between the PINGs sent on every transport (under the visor's 30 s dead-peer timeout).")
    var keepalive = 5.0
    @Option(help: "Local addresses to connect from, in turn (comma-separated; default: the kernel's choice).")
    var sources: String = ""
    @Option(help: "A file written (with the JSON of what is open) once everything is established.")
    var readyFile: String?

    /// The visor's initial receive window offered for each stream (it never sends on them).
    static let streamWindow: UInt32 = 64 * 1024
    /// How long one send may block before the transport counts as stalled.
    static let sendTimeoutMillis = 1000

    /// One established transport and what the tool knows of it.
    struct Link {
        var stcpr: HostileStcpr
        var streams = 0
        var closed = false
    }

    func run() throws {
        let limit = HostileStcpr.raiseDescriptorLimit()
        let from = try sources.split(separator: ",").map { try SocketAddress(ipAddress: String($0), port: 0) }
        var links: [Link] = []
        links.reserveCapacity(count)
        defer { for link in links { close(link.stcpr.fd) } }
        let start = HostileStcpr.now()
        var failures = 0
        var lastError = ""
        var pings: UInt64 = 0
        var lastSweep = start
        // Keeps what is open alive while the rest is being established.
        func sweepIfDue() {
            guard HostileStcpr.now() - lastSweep >= keepalive else { return }
            lastSweep = HostileStcpr.now()
            pings += UInt64(Self.sweep(&links, opaque: pings))
        }
        while links.count < count, HostileStcpr.now() - start < seconds, failures < count {
            do {
                links.append(Link(stcpr: try target.connect(sendTimeoutMillis: Self.sendTimeoutMillis,
                                                            from: from.isEmpty ? nil : from[links.count % from.count])))
            } catch {
                failures += 1
                lastError = "\(error)"
                if failures % 100 == 0 { usleep(10_000) }
            }
            sweepIfDue()
        }
        let established = links.count
        let establishSeconds = HostileStcpr.now() - start
        var opened = 0
        if streams > 0 && !links.isEmpty {
            opened = Self.openStreams(streams, port: port, on: &links) { HostileStcpr.now() - start < seconds }
        }
        let openSeconds = HostileStcpr.now() - start - establishSeconds
        func summary(closedByVisor: Int) -> String {
            #"{"transports":\#(established),"streams":\#(opened),"failures":\#(failures),"#
                + #""closed_by_visor":\#(closedByVisor),"establish_seconds":\#(Self.rounded(establishSeconds)),"#
                + #""streams_seconds":\#(Self.rounded(openSeconds)),"pings_sent":\#(pings),"#
                + #""descriptor_limit":\#(limit),"last_error":"\#(lastError.filter { $0 != "\"" && $0 != "\\" })"}"#
        }
        if let readyFile {
            let text = summary(closedByVisor: links.filter(\.closed).count) + "\n"
            ReadyFile.write(text, to: readyFile)
        }
        let holdUntil = HostileStcpr.now() + hold
        while HostileStcpr.now() < holdUntil {
            usleep(100_000)
            sweepIfDue()
        }
        _ = Self.drain(&links)
        print(summary(closedByVisor: links.filter(\.closed).count))
    }

    /// Sends one PING on every open link (after reading what the visor sent); returns how many.
    static func sweep(_ links: inout [Link], opaque: UInt64) -> Int {
        _ = drain(&links)
        var sent = 0
        var out = ByteBuffer()
        for index in links.indices where !links[index].closed {
            out.clear()
            guard (try? links[index].stcpr.sealPings(1, from: opaque &+ UInt64(sent), into: &out)) != nil else { continue }
            switch links[index].stcpr.send(&out) {
            case .sent: sent += 1
            case .stalled: break
            case .closed: links[index].closed = true
            }
        }
        return sent
    }

    /// Reads and drops whatever the visor sent on each link; marks the links it closed. Returns
    /// the bytes read.
    static func drain(_ links: inout [Link]) -> Int {
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        var total = 0
        for index in links.indices where !links[index].closed {
            let fd = links[index].stcpr.fd
            while true {
                let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 { total += n; continue }
                if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { links[index].closed = true }
                break
            }
        }
        return total
    }

    /// Opens `total` streams to `port`, one per link in turn, each as an OPEN frame (initiator
    /// ids: odd, increasing; PROTOCOL.md §5), sent in one batch per link. Returns how many were sent.
    static func openStreams(_ total: Int, port: UInt16, on links: inout [Link], while inTime: () -> Bool) -> Int {
        var perLink = [Int](repeating: total / links.count, count: links.count)
        for index in 0..<(total % links.count) { perLink[index] += 1 }
        var opened = 0
        var out = ByteBuffer()
        for index in links.indices where perLink[index] > 0 && !links[index].closed {
            guard inTime() else { break }
            let first = links[index].streams
            let frames: [MuxFrame<ArraySlice<UInt8>>] = (first..<(first + perLink[index])).map { n in
                .open(streamID: MuxStreamID(UInt32(2 * n + 1)), destinationPort: port,
                      sourcePort: UInt16(truncatingIfNeeded: 40000 + n), initialWindow: streamWindow)
            }
            out.clear()
            guard (try? links[index].stcpr.seal(frames, into: &out)) != nil else { continue }
            switch links[index].stcpr.send(&out) {
            case .sent:
                links[index].streams += frames.count
                opened += frames.count
            case .stalled: break
            case .closed: links[index].closed = true
            }
        }
        return opened
    }

    static func rounded(_ seconds: Double) -> Double { (seconds * 100).rounded() / 100 }
}

/// Writes the ready file (best effort: the bench polls for it).
private enum ReadyFile {
    static func write(_ text: String, to path: String) {
        guard let file = fopen(path, "w") else { return }
        fputs(text, file)
        fclose(file)
    }
}
