import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// `connections`: completes `--count` stcpr handshakes, each as a fresh throw-away key (from
/// `--sources` in turn), holds the connections `--hold` seconds without sending anything more,
/// then closes them all at once: a mass close of established links, for what the visor keeps
/// afterwards. Prints one JSON line.
struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Many established stcpr connections from throw-away keys, closed at once (bounded).")

    @OptionGroup var target: StcprTargetOptions
    @Option(help: "Connections to establish.") var count = 2000
    @Option(help: "Seconds to hold them.") var hold = 5.0
    @Option(help: "Seconds allowed for establishing them.") var seconds = 60.0
    @Option(help: "Local addresses to connect from, in turn (comma-separated; default: the kernel's choice).")
    var sources: String = ""

    func run() throws {
        let limit = HostileStcpr.raiseDescriptorLimit()
        let from = try sources.split(separator: ",").map { try SocketAddress(ipAddress: String($0), port: 0) }
        var links: [HostileStcpr] = []
        defer { for link in links { close(link.fd) } }
        let start = HostileStcpr.now()
        var failures = 0
        var lastError = ""
        while links.count < count, HostileStcpr.now() - start < seconds, failures < count {
            do {
                links.append(try target.connect(sendTimeoutMillis: 1000,
                                                from: from.isEmpty ? nil : from[links.count % from.count]))
            } catch {
                failures += 1
                lastError = "\(error)"
            }
        }
        let established = links.count
        let closedByVisor = HostileStcpr.hold(links.map(\.fd), seconds: hold)
        print(#"{"established":\#(established),"closed_by_visor":\#(closedByVisor),"failures":\#(failures),"#
              + #""descriptor_limit":\#(limit),"last_error":"\#(lastError)"}"#)
    }
}
