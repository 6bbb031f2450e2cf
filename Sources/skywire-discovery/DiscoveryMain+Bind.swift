import ArgumentParser
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireDiscoveryServer
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// Hidden helper: sends one signed BIND from a chosen local UDP address and prints the observed
/// address of the BIND_OK answer (what the service sees after any NAT). socket(2), bind(2),
/// sendto(2), recvfrom(2) with SO_RCVTIMEO; IPv4 only.
struct Bind: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bind", abstract: "Send a BIND and print the observed address.",
                                                    shouldDisplay: false)

    @Option(name: .shortAndLong, help: "Visor config holding the key pair.")
    var config: String

    @Option(help: "The service's UDP rendezvous, IPv4:PORT.")
    var to: String

    @Option(help: "Local IPv4:PORT to send from (default 0.0.0.0:0).")
    var from: String = "0.0.0.0:0"

    @Option(help: "Tries, one second apart.")
    var tries: Int = 3

    static func ipv4SocketAddress(_ text: String, what: String) throws -> sockaddr_in {
        guard case .success(let hp) = HostPort.parse(text) else { throw ValidationError("--\(what) \"\(text)\": expected IPv4:PORT") }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = hp.port.bigEndian
        guard inet_pton(AF_INET, hp.host, &sa.sin_addr) == 1 else { throw ValidationError("--\(what) \"\(text)\": not an IPv4 address") }
        return sa
    }

    func run() throws {
        guard (1...20).contains(tries) else { throw ValidationError("--tries: 1...20") }
        let cfg: VisorConfig
        do { cfg = try VisorConfig.load(path: config) } catch { throw ValidationError("\(config): \(error)") }
        var local = try Self.ipv4SocketAddress(from, what: "from")
        var remote = try Self.ipv4SocketAddress(to, what: "to")
        if from == "0.0.0.0:0" { local.sin_port = 0 }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw ValidationError("bind \(from): \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        for _ in 0..<tries {
            let ts = UInt64(DiscoveryClock.nowMs())
            let pk = cfg.keyPair.publicKey.bytes
            let token = SecureRandom.bytes(SudphRendezvous.tokenSize)
            let sig = cfg.keyPair.sign(SudphRendezvous.bindSignedBytes(publicKey: pk, timestampMs: ts, token: token))
            let dg = SudphRendezvous.bind(publicKey: pk, timestampMs: ts, token: token, signature: sig).encoded()
            _ = dg.withUnsafeBytes { buf in
                withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                } }
            }
            let deadline = DiscoveryClock.nowMs() + 1000
            while DiscoveryClock.nowMs() < deadline {
                var buf = [UInt8](repeating: 0, count: 512)
                var src = sockaddr_in()
                var len = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = buf.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &src) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) } }
                }
                if n < 0 { break }   // timeout: send again
                // Only the service's address may answer (docs/discovery.md: trust the rendezvous only).
                guard src.sin_addr.s_addr == remote.sin_addr.s_addr, src.sin_port == remote.sin_port else { continue }
                if case .bindOK(let echoed, let observed)? = try? SudphRendezvous.parse(Array(buf[0..<n])),
                   SudphRendezvous.tokensEqual(echoed, token) {
                    print(observed.description)
                    return
                }
            }
        }
        throw ValidationError("no BIND_OK from \(to) after \(tries) tries")
    }
}
