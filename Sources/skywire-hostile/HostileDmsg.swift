import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Dispatch
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireTransport

/// Shared by the dmsg subcommands: the relay's address and key, and a loop that runs
/// `DmsgClientSession`s until a deadline.
struct DmsgRelayOptions: ParsableArguments {
    @Option(help: "The relay's address, IP:PORT.") var addr: String
    @Option(help: "The relay's public key (hex).") var relay: String

    var relayKey: PublicKey { get throws { try PublicKey(hex: relay) } }
    var hostPort: (String, Int) {
        get throws {
            let a = try HostileStcpr.address(addr)
            return (a.ipAddress ?? "127.0.0.1", a.port ?? 0)
        }
    }
}

enum HostileDmsg {
    static let logger: Logger = {
        var l = Logger(label: "skywire-hostile")
        l.logLevel = .warning
        return l
    }()

    /// Runs `body` on a fresh loop and waits until it calls `done` or `seconds` pass; returns
    /// whether `done` was called.
    static func run(seconds: Double, _ body: @escaping (EpollEventLoop, @escaping () -> Void) -> Void) throws -> Bool {
        let loop = try EpollEventLoop(name: "hostile-dmsg")
        let finished = DispatchSemaphore(value: 0)
        let work = LoopTransfer(value: body)
        loop.execute {
            var signalled = false
            work.value(loop) {
                guard !signalled else { return }
                signalled = true
                finished.signal()
            }
        }
        return finished.wait(timeout: .now() + seconds) == .success
    }

    /// A raw client (`HostileStcpr`, the visor's own handshake code) with `frames` sealed as records.
    static func seal(_ frames: [DmsgFrame], with client: inout HostileStcpr, into out: inout ByteBuffer) throws {
        for frame in frames { try client.sealRecord(frame.encoded, into: &out) }
    }
}

extension HostileStcpr {
    /// Reads one record and decrypts it into a relay frame (blocking).
    mutating func readDmsgFrame() throws -> DmsgFrame? {
        var header = [UInt8](repeating: 0, count: 2)
        try Self.readExactly(fd, &header)
        var body = [UInt8](repeating: 0, count: Int(header[0]) << 8 | Int(header[1]))
        try Self.readExactly(fd, &body)
        guard let plain = try openRecord(ByteBuffer(bytes: body)) else { return nil }
        return try DmsgFrame.decode(plain)
    }
}
