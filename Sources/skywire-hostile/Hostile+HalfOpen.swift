import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// `half-open`: opens `--count` TCP connections to an stcpr listener that never complete a
/// handshake (nothing sent, a partial length prefix, or a wrong one), holds them for
/// `--hold` seconds, then closes them all. Prints one JSON line: connections opened, how many
/// the visor had closed by the end of the hold, and the descriptor limit it ran with.
struct HalfOpen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "half-open",
        abstract: "Many TCP connections to an stcpr listener that never complete a handshake (bounded).")

    enum Mode: String, ExpressibleByArgument, CaseIterable { case silent, partial, wrong }

    @Option(help: "The visor's stcpr address, IP:PORT.") var addr: String
    @Option(help: "Connections to open.") var count = 20_000
    @Option(help: "Seconds to hold them open.") var hold = 10.0
    @Option(help: "Seconds allowed for opening them.") var seconds = 60.0
    @Option(help: "silent (send nothing), partial (one byte of the prefix), wrong (a 64 KiB length prefix).")
    var mode: Mode = .silent
    @Option(help: "Local addresses to connect from, in turn (comma-separated; default: the kernel's choice).")
    var sources: String = ""

    func run() throws {
        let limit = HostileStcpr.raiseDescriptorLimit()
        let target = try HostileStcpr.address(addr)
        let from = try sources.split(separator: ",").map { try SocketAddress(ipAddress: String($0), port: 0) }
        var fds: [Int32] = []
        fds.reserveCapacity(count)
        defer { for fd in fds { close(fd) } }
        let start = HostileStcpr.now()
        var failures = 0
        var lastError = ""
        while fds.count < count, HostileStcpr.now() - start < seconds, failures < count {
            do {
                let fd = try HostileStcpr.connect(target, from: from.isEmpty ? nil : from[fds.count % from.count])
                fds.append(fd)
                switch mode {
                case .silent: break
                case .partial: _ = HostileStcpr.sendPrefix(fd, [0x00])
                case .wrong: _ = HostileStcpr.sendPrefix(fd, [0xFF, 0xFF, 0x00])
                }
            } catch {
                failures += 1
                lastError = "\(error)"
                if failures % 100 == 0 { usleep(10_000) }
            }
        }
        let opened = fds.count
        let closedByVisor = HostileStcpr.hold(fds, seconds: hold)
        print(#"{"opened":\#(opened),"closed_by_visor":\#(closedByVisor),"failures":\#(failures),"#
              + #""descriptor_limit":\#(limit),"last_error":"\#(lastError)"}"#)
    }
}

extension HostileStcpr {
    /// Keeps `fds` open for `seconds`, then says how many of them the visor has closed.
    static func hold(_ fds: [Int32], seconds: Double) -> Int {
        let start = now()
        while now() - start < seconds { usleep(100_000) }
        return fds.reduce(0) { $0 + (peerClosed($1) ? 1 : 0) }
    }

    /// Best-effort send of a few bytes on a fresh socket.
    static func sendPrefix(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }
}
