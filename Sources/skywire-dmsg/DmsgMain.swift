import ArgumentParser
import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireSystem
import SkywireTransport
#if canImport(Glibc)
import Glibc
#endif

/// `skywire-dmsg`: the dmsg relay server (docs/dmsg.md, PROTOCOL.md §7).
@main
struct DmsgCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skywire-dmsg",
        abstract: "dmsg relay server: visors keep a session here and reach each other through it.",
        discussion: """
        Clients authenticate with the stcpr handshake (PROTOCOL.md §2–§3) to this server's key, then open
        streams to other clients' keys; the relay forwards ciphertext only (docs/dmsg.md).
        Closed by default: only keys listed with --clients / --clients-file are served; every other
        client is refused right after its handshake. `--clients any` makes it a public relay.
        SIGHUP re-reads --clients-file; SIGTERM deletes the discovery entries and exits.
        """)

    @Option(help: "TCP listen address for client sessions, IP:PORT.")
    var listen: String = "0.0.0.0:\(DmsgDefaults.port)"

    @Option(name: .customLong("key-file"), help: "This server's key (JSON {\"public_key\", \"secret_key\"}); generated with mode 0600 if missing.")
    var keyFile: String = "/var/lib/skywire-dmsg/key.json"

    @Option(help: "HTTP address of /health (JSON counters), IP:PORT; \"off\" disables it.")
    var http: String = "127.0.0.1:\(DmsgDefaults.healthPort)"

    @Option(help: "Discovery service to register with, http://HOST[:PORT] (a transport entry with --public-addr and a `dmsg` service entry).")
    var discovery: String?

    @Option(name: .customLong("public-addr"), help: "HOST:PORT clients dial, as registered in discovery (default: --listen unless it is a wildcard).")
    var publicAddr: String?

    @Option(help: "Two-letter country of the service entry (ISO 3166-1 alpha-2 form).")
    var country: String = "ZZ"

    @Option(help: "Client keys served, comma-separated hex, or \"any\" (a public relay). Without it (and without --clients-file) every client is refused.")
    var clients: String?

    @Option(name: .customLong("clients-file"), help: "File of client keys served, one per line (# comments; \"any\" allowed); re-read on SIGHUP. Adds to --clients.")
    var clientsFile: String?

    @Option(name: .customLong("max-clients"), help: "Authenticated client sessions at most.")
    var maxClients: Int = DmsgRelayCore.Limits().maxClients

    @Option(name: .customLong("max-streams-per-client"), help: "Streams one client takes part in at most.")
    var maxStreamsPerClient: Int = DmsgRelayCore.Limits().maxStreamsPerClient

    @Option(name: .customLong("max-window"), help: "Bytes the relay may queue per stream direction (largest credit), 16384...16777216.")
    var maxWindow: Int = Int(DmsgRelayCore.Limits().maxWindow)

    @Option(name: .customLong("idle-timeout"), help: "Seconds a session may send nothing before it is closed (clients ping every 30 s), 35...86400.")
    var idleTimeout: Int = 120

    @Option(name: .customLong("max-connections-per-address"), help: "Open TCP connections per client IPv4 address or IPv6 /64.")
    var maxConnectionsPerAddress: Int = DmsgRelayServer.Limits().connectionsPerAddress

    @Option(name: .customLong("log-level"), help: "debug, info, warning or error.")
    var logLevel: String = "info"

    func validate() throws {
        for (name, value) in [("--listen", listen)] + (http == "off" ? [] : [("--http", http)]) {
            guard (try? Self.socketAddress(value)) != nil else { throw ValidationError("\(name) \"\(value)\": expected IP:PORT") }
        }
        if let publicAddr, case .failure(let e) = HostPort.parse(publicAddr) {
            throw ValidationError("--public-addr \"\(publicAddr)\": \(e.description)")
        }
        guard country.utf8.count == 2, country.utf8.allSatisfy({ (0x41...0x5A).contains($0) }) else {
            throw ValidationError("--country \"\(country)\": expected two uppercase letters")
        }
        for (name, value, range) in [("--max-clients", maxClients, 1...1_000_000), ("--max-streams-per-client", maxStreamsPerClient, 1...4096),
                                     ("--max-window", maxWindow, 16384...(16 << 20)), ("--idle-timeout", idleTimeout, 35...86400),
                                     ("--max-connections-per-address", maxConnectionsPerAddress, 1...1_000_000)]
        where !range.contains(value) {
            throw ValidationError("\(name) \(value): must be \(range.lowerBound)...\(range.upperBound)")
        }
        if let clients {
            do { _ = try DmsgClientPolicy.parse(list: clients) } catch { throw ValidationError("--clients: \(error)") }
        }
        guard ["debug", "info", "warning", "error"].contains(logLevel) else {
            throw ValidationError("--log-level \"\(logLevel)\": expected debug, info, warning or error")
        }
    }

    static func socketAddress(_ text: String) throws -> SocketAddress {
        guard case .success(let hp) = HostPort.parse(text) else { throw ValidationError("bad address") }
        return try SocketAddress(ipAddress: hp.host, port: Int(hp.port))
    }

    /// `--clients` joined with `--clients-file` (read now).
    func clientPolicy() throws -> DmsgClientPolicy {
        var policy = DmsgClientPolicy.nobody
        if let clients {
            do { policy = try DmsgClientPolicy.parse(list: clients) } catch { throw ClientListError("--clients: \(error)") }
        }
        if let clientsFile {
            let text: String
            do {
                guard let bytes = try FileIO.read(clientsFile) else { throw ClientListError("--clients-file \(clientsFile): no such file") }
                text = String(decoding: bytes, as: UTF8.self)
            } catch let error as ClientListError { throw error } catch {
                throw ClientListError("--clients-file \(clientsFile): \(error)")
            }
            do { policy = policy.union(try DmsgClientPolicy.parse(file: text)) } catch {
                throw ClientListError("--clients-file \(clientsFile): \(error)")
            }
        }
        return policy
    }

    struct ClientListError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    func run() async throws {
        var logger = Logger(label: "skywire-dmsg")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let keyPair: KeyPair
        do { keyPair = try DmsgKeyFile.loadOrCreate(keyFile) } catch {
            Stderr.write("skywire-dmsg: \(error)\n")
            throw ExitCode(1)
        }
        let signals = DmsgSignals([SIGHUP, SIGTERM, SIGINT])
        let policy: DmsgClientPolicy
        do { policy = try clientPolicy() } catch {
            Stderr.write("skywire-dmsg: \(error)\n")
            throw ExitCode(64)
        }
        if policy == .nobody {
            logger.warning("no client keys listed (--clients, --clients-file): every client will be refused; --clients any serves everyone")
        }
        var limits = DmsgRelayServer.Limits()
        limits.core = DmsgRelayCore.Limits(maxClients: maxClients, maxStreamsPerClient: maxStreamsPerClient,
                                           maxWindow: UInt32(maxWindow))
        limits.idleTimeout = .seconds(Int64(idleTimeout))
        limits.connectionsPerAddress = maxConnectionsPerAddress
        limits.connectionsTotal = max(limits.connectionsTotal, maxClients + limits.halfOpenTotal)
        let loop = try EpollEventLoop(name: "skw-dmsg")
        let server = try DmsgRelayServer(loop: loop, identity: keyPair, limits: limits, clients: policy, logger: logger)
        let bound: SocketAddress?
        do { bound = try await server.start(address: Self.socketAddress(listen)) } catch {
            Stderr.write("skywire-dmsg: cannot listen on \(listen): \(error)\n")
            throw ExitCode(1)
        }
        var health: DmsgHealthServer?
        if http != "off" {
            do { health = try await DmsgHealthServer.start(address: Self.socketAddress(http), server: server, publicKey: keyPair.publicKey) } catch {
                Stderr.write("skywire-dmsg: cannot serve /health on \(http): \(error)\n")
                throw ExitCode(1)
            }
        }
        let boundText = bound.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? listen
        let limitText = "limits: \(maxClients) clients, \(maxStreamsPerClient) streams and \(maxWindow) bytes per stream each, idle \(idleTimeout) s"
        logger.info("dmsg relay \(keyPair.publicKey.hex) listening on \(boundText); /health on \(health?.address ?? "off"); clients: \(policy.summary); \(limitText)")
        var registrar: DmsgRegistrar?
        if let discovery {
            let advertised = publicAddr ?? (listen.hasPrefix("0.0.0.0:") || listen.hasPrefix("[::]:") ? nil : boundText)
            guard let advertised else {
                Stderr.write("skywire-dmsg: --discovery needs --public-addr when --listen is a wildcard\n")
                throw ExitCode(64)
            }
            do {
                registrar = try DmsgRegistrar(url: discovery, keyPair: keyPair, address: advertised, country: country, server: server, logger: logger)
            } catch {
                Stderr.write("skywire-dmsg: --discovery \(discovery): \(error)\n")
                throw ExitCode(64)
            }
            registrar?.start()
        }
        _ = health
        // Runs until SIGTERM (systemd) or SIGINT: the discovery entries are deleted, sessions end
        // with the process (clients redial).
        for await sig in signals.stream {
            if sig == SIGHUP {
                do {
                    let new = try clientPolicy()
                    await server.setClients(new)
                    logger.info("SIGHUP: client list re-read: \(new.summary)")
                } catch {
                    logger.error("SIGHUP: client list kept: \(error)")
                }
                continue
            }
            logger.info("signal \(sig): stopping")
            if let registrar {
                if let problem = await registrar.stop() {
                    logger.warning("discovery: entries not deleted: \(problem)")
                } else {
                    logger.info("discovery: entries deleted")
                }
            }
            await server.stop()
            return
        }
    }
}

/// The relay's default ports (docs/dmsg.md).
enum DmsgDefaults {
    static let port = 8081
    static let healthPort = 8082
}

enum Stderr {
    /// Writes to fd 2 (write(2)), unbuffered.
    static func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}
