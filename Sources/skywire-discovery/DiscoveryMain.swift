import ArgumentParser
import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireDiscoveryServer
#if canImport(Glibc)
import Glibc
#endif

/// `skywire-discovery`: the address resolver, service discovery and UDP rendezvous (docs/discovery.md).
@main
struct DiscoveryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skywire-discovery",
        abstract: "Address resolver, service discovery and sudph rendezvous for skywire visors.",
        discussion: "HTTP JSON API and UDP rendezvous as documented in docs/discovery.md.",
        subcommands: [Serve.self, Sign.self, Bind.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the service (the default).")

    @Option(help: "HTTP listen address, IP:PORT.")
    var http: String = "0.0.0.0:9090"

    @Option(help: "UDP rendezvous listen address, IP:PORT.")
    var udp: String = "0.0.0.0:9091"

    @Option(name: .customLong("udp-announce"), help: "The rendezvous HOST:PORT visors are told in GET /v1/info (default: --udp).")
    var udpAnnounce: String?

    @Option(help: "Storage: sqlite:PATH or postgres://user:pass@host:port/db.")
    var db: String = "sqlite:/var/lib/skywire-discovery/db.sqlite"

    @Option(help: "Seconds an entry lives after its last write (visors refresh every ttl/3), 3...86400.")
    var ttl: Int = DiscoveryAPI.defaultTTLSeconds

    @Option(name: .customLong("log-level"), help: "debug, info, warning or error.")
    var logLevel: String = "info"

    @Option(name: .customLong("key-rate"), help: "Writes per second per signing key (token bucket refill), 0.01...10000.")
    var keyRate: Double = RateLimit.defaultPerKey.perSecond

    @Option(name: .customLong("key-burst"), help: "Writes in a burst per signing key, 1...100000.")
    var keyBurst: Int = RateLimit.defaultPerKey.burst

    @Option(name: .customLong("ip-rate"), help: "Writes per second per client IPv4 address or IPv6 /64, 0.01...10000.")
    var ipRate: Double = RateLimit.defaultPerIP.perSecond

    @Option(name: .customLong("ip-burst"), help: "Writes in a burst per client IPv4 address or IPv6 /64, 1...100000.")
    var ipBurst: Int = RateLimit.defaultPerIP.burst

    @Option(name: .customLong("read-rate"), help: "Reads (GET) and rendezvous datagrams per second per client IPv4 address or IPv6 /64, 0.01...10000.")
    var readRate: Double = RateLimit.defaultReadsPerIP.perSecond

    @Option(name: .customLong("read-burst"), help: "Reads and rendezvous datagrams in a burst per client IPv4 address or IPv6 /64, 1...100000.")
    var readBurst: Int = RateLimit.defaultReadsPerIP.burst

    @Option(name: .customLong("max-connections"), help: "Open HTTP connections at most, in total, 1...1000000.")
    var maxConnections: Int = DiscoveryConnectionLimits.standard.total

    @Option(name: .customLong("max-connections-per-address"), help: "Open HTTP connections at most per client IPv4 address or IPv6 /64, 1...1000000.")
    var maxConnectionsPerAddress: Int = DiscoveryConnectionLimits.standard.perAddress

    @Flag(name: .customLong("allow-private-addresses"),
          help: "Accept loopback, private (RFC 1918, CGNAT, ULA) and link-local transport addresses (private deployments only).")
    var allowPrivateAddresses = false

    func validate() throws {
        guard (3...86400).contains(ttl) else { throw ValidationError("--ttl \(ttl): must be 3...86400 seconds") }
        for (name, v) in [("--http", http), ("--udp", udp)] {
            guard (try? Self.socketAddress(v)) != nil else { throw ValidationError("\(name) \"\(v)\": expected IP:PORT, e.g. 0.0.0.0:9090") }
        }
        if let a = udpAnnounce, case .failure(let e) = HostPort.parse(a) {
            throw ValidationError("--udp-announce \"\(a)\": \(e.description)")
        }
        for (name, v) in [("--key-rate", keyRate), ("--ip-rate", ipRate), ("--read-rate", readRate)] where !(0.01...10000).contains(v) {
            throw ValidationError("\(name) \(v): must be 0.01...10000 per second")
        }
        for (name, v) in [("--key-burst", keyBurst), ("--ip-burst", ipBurst), ("--read-burst", readBurst)] where !(1...100_000).contains(v) {
            throw ValidationError("\(name) \(v): must be 1...100000")
        }
        for (name, v) in [("--max-connections", maxConnections), ("--max-connections-per-address", maxConnectionsPerAddress)]
        where !(1...1_000_000).contains(v) {
            throw ValidationError("\(name) \(v): must be 1...1000000")
        }
        guard Logger.Level(rawValue: logLevel) != nil, logLevel != "trace", logLevel != "notice", logLevel != "critical" else {
            throw ValidationError("--log-level \"\(logLevel)\": expected debug, info, warning or error")
        }
    }

    static func socketAddress(_ s: String) throws -> SocketAddress {
        guard case .success(let hp) = HostPort.parse(s) else { throw ValidationError("bad address") }
        return try SocketAddress(ipAddress: hp.host, port: Int(hp.port))
    }

    func run() async throws {
        var logger = Logger(label: "skywire-discovery")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let store: any DiscoveryStore
        do { store = try DiscoveryStoreURL.open(db) } catch {
            FileHandleStderr.write("skywire-discovery: \(error.description)\n")
            throw ExitCode(1)
        }
        let limits = DiscoveryRateLimits(perKey: RateLimit(perSecond: keyRate, burst: keyBurst), perIP: RateLimit(perSecond: ipRate, burst: ipBurst),
                                         readsPerIP: RateLimit(perSecond: readRate, burst: readBurst))
        let server: DiscoveryServer
        do {
            server = try await DiscoveryServer.start(store: store, http: Self.socketAddress(http), udp: Self.socketAddress(udp),
                                                     ttlSeconds: ttl, udpAnnounce: udpAnnounce,
                                                     limits: limits,
                                                     allowPrivateAddresses: allowPrivateAddresses,
                                                     connectionLimits: DiscoveryConnectionLimits(total: maxConnections, perAddress: maxConnectionsPerAddress),
                                                     logger: logger)
        } catch {
            FileHandleStderr.write("skywire-discovery: cannot listen: \(error)\n")
            throw ExitCode(1)
        }
        let policy = allowPrivateAddresses ? "private addresses accepted" : "public addresses only"
        logger.info("listening: http \(server.httpAddress), udp \(server.udpAddress), ttl \(ttl) s, db \(Self.redacted(db)), writes per key \(limits.perKey.limit), per address \(limits.perIP.limit), reads per address \(limits.readsPerIP.limit), \(policy)")
        try await server.wait()
    }

    /// The --db URL without its password, for logs.
    static func redacted(_ url: String) -> String {
        // scheme://user:password@host… → scheme://user:***@host…
        guard let at = url.firstIndex(of: "@") else { return url }
        let before = url[..<at]
        guard let slashes = before.firstIndex(of: "/").map({ before.index($0, offsetBy: 2, limitedBy: before.endIndex) ?? before.endIndex }),
              let colon = before[slashes...].firstIndex(of: ":") else { return url }
        return String(url[...colon]) + "***" + String(url[at...])
    }
}

/// Hidden helper for tests and operators: prints the signature headers of one write, one
/// `Name: value` per line (for `curl -H @file`).
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sign", abstract: "Print the signature headers of a discovery write.",
                                                    shouldDisplay: false)

    @Option(name: .shortAndLong, help: "Visor config holding the key pair.")
    var config: String

    @Option(help: "HTTP method: PUT, POST or DELETE.")
    var method: String

    @Option(help: "Request target: path with query, exactly as it will be sent.")
    var target: String

    @Option(name: .customLong("body-file"), help: "File whose bytes are the body (default: empty).")
    var bodyFile: String?

    @Option(name: .customLong("timestamp-ms"), help: "Timestamp to sign (default: now).")
    var timestampMs: Int64?

    @Option(help: "Nonce, 32 lowercase hex (default: random).")
    var nonce: String?

    func run() throws {
        let cfg: VisorConfig
        do { cfg = try VisorConfig.load(path: config) } catch { throw ValidationError("\(config): \(error)") }
        var body: [UInt8] = []
        if let bodyFile {
            guard let f = fopen(bodyFile, "rb") else { throw ValidationError("--body-file \(bodyFile): cannot open") }
            defer { fclose(f) }
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, f)
                if n <= 0 { break }
                body += chunk[0..<n]
            }
        }
        var nonceBytes = SecureRandom.bytes(16)
        if let nonce {
            guard nonce.utf8.count == 32, let b = HexCoding.decode(nonce) else { throw ValidationError("--nonce: 32 lowercase hex characters") }
            nonceBytes = b
        }
        let h = DiscoverySigning.sign(keyPair: cfg.keyPair, method: method, target: target, body: body,
                                      timestampMs: timestampMs ?? DiscoveryClock.nowMs(), nonce: nonceBytes)
        for f in h.fields { print("\(f.name): \(f.value)") }
    }
}

enum FileHandleStderr {
    /// Writes to fd 2 (write(2)), unbuffered.
    static func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}
