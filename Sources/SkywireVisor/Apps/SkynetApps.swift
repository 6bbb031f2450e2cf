import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSocks
import SkywireTransport

/// `skynet` (port 57): SkyNet port forwarding (docs/skynet.md). Serves the forwards this visor
/// exposes (`skynet srv start`), runs the client forwards (`skynet start`) and the resolving
/// proxy (`resolver up`). Forwards are added and removed while it runs (control methods
/// `skynet.*`, `resolver.*`); its config `args` give the ones it starts with.
final class SkynetVisorApp: VisorApp {
    // Sendable: `server` and the forwarders are Sendable; `clients` and `resolver` are guarded by
    // their boxes' locks.
    /// The SkyNet port on the server visors this one connects to.
    static let serverPort = AppName.skynet.defaultPort

    private let context: AppContext
    private let initial: SkynetOptions
    let server: SkynetServer
    private let clients = NIOLockedValueBox<[SkynetClientForwarder]>([])
    private let resolver = NIOLockedValueBox<SkynetResolver?>(nil)

    init(context: AppContext, options: SkynetOptions) {
        self.context = context
        initial = options
        server = SkynetServer(logger: context.logger)
    }

    func start() async throws {
        do {
            for forward in initial.servers { try server.add(forward) }
            for forward in initial.clients { try await addClient(forward) }
            if let options = initial.resolver { try await resolverUp(options) }
        } catch {
            await stop()
            throw error as? AppError ?? AppError(.failed, "skynet: \(error)")
        }
    }

    func stop() async {
        server.remove { _ in true }
        for forwarder in clients.withLockedValue({ list in defer { list = [] }; return list }) { try? await forwarder.stop().get() }
        await resolverDown()
    }

    func accept(stream: AppStream) -> Bool {
        server.accept(stream)
        return true
    }

    var whitelist: AppWhitelist? { SkynetOptions(servers: server.forwardStatus.map { $0.0 }).whitelist }

    // MARK: Forwards

    func addServer(_ forward: SkynetServerForward) throws(AppError) {
        do { try server.add(forward) } catch { throw AppError(.conflict, error.message) }
    }

    func addClient(_ forward: SkynetClientForward) async throws(AppError) {
        let opener = Self.opener(context)
        let forwarder: SkynetClientForwarder
        do {
            let key = try PublicKey(hex: forward.serverKeyHex)
            forwarder = SkynetClientForwarder(options: forward, loop: try context.transports.datapathLoop(for: key),
                                              logger: context.logger, opener: opener)
        } catch {
            throw AppError(.invalidArguments, "skynet: \(error)")
        }
        let taken: AppError? = clients.withLockedValue { list in
            var options = SkynetOptions(clients: list.map(\.options))
            do throws(SkysocksArgumentError) { try options.add(client: forward) } catch { return AppError(.conflict, error.message) }
            list.append(forwarder)
            return nil
        }
        if let taken { throw taken }
        do {
            try await forwarder.start().get()
        } catch {
            clients.withLockedValue { list in list.removeAll { $0 === forwarder } }
            throw AppError(.failed, "skynet: cannot listen on \(forward.bindHost):\(forward.localPort): \(error)")
        }
    }

    /// Stops the client forward `name`; false when there is none.
    func removeClient(named name: String) async -> Bool {
        let removed = clients.withLockedValue { list -> SkynetClientForwarder? in
            guard let index = list.firstIndex(where: { $0.options.name == name }) else { return nil }
            return list.remove(at: index)
        }
        guard let removed else { return false }
        try? await removed.stop().get()
        return true
    }

    func resolverUp(_ options: SkynetResolverOptions) async throws(AppError) {
        let loop: EpollEventLoop
        do { loop = try context.transports.datapathLoop(for: context.localKey) } catch { throw AppError(.failed, "skynet: \(error)") }
        let proxy = SkynetResolver(options: options, loop: loop, localServer: server, logger: context.logger,
                                   opener: Self.opener(context))
        let running: Bool = resolver.withLockedValue { current in
            if current != nil { return true }
            current = proxy
            return false
        }
        if running { throw AppError(.conflict, "the resolver is already up") }
        do {
            try await proxy.start().get()
        } catch {
            resolver.withLockedValue { $0 = nil }
            throw AppError(.failed, "resolver: cannot listen on \(options.listen): \(error)")
        }
    }

    /// Stops the resolver; false when it was not up.
    @discardableResult
    func resolverDown() async -> Bool {
        guard let proxy = resolver.withLockedValue({ current in defer { current = nil }; return current }) else { return false }
        try? await proxy.stop().get()
        return true
    }

    /// Streams to the `skynet` app of another visor: the request travels as early data behind
    /// OPEN (PROTOCOL.md §5); a refusal arrives as a reset.
    private static func opener(_ context: AppContext) -> SkynetStreamOpener {
        let transports = context.transports, source = context.port
        return { hex in
            guard let key = try? PublicKey(hex: hex) else {
                return transports.group.next().makeFailedFuture(AppError(.invalidArguments, "\(hex) is not a public key"))
            }
            return transports.openStream(to: key, port: serverPort, sourcePort: source, waitForAccept: false)
        }
    }

    // MARK: Status

    var serverRows: [ControlValue] {
        server.forwardStatus.map { forward, status in
            var row = status.skynetFields
            row["name"] = .string(forward.name)
            row["port"] = .int(Int64(forward.port))
            row["target"] = .string("\(forward.target)")
            row["access"] = .string(forward.whitelist.access)
            row["whitelist"] = forward.whitelist == .anyone ? .string(AppWhitelist.anyToken)
                : .array(forward.whitelist.sortedKeys.map { .string($0.hex) })
            return .object(row)
        }
    }

    var clientRows: [ControlValue] {
        clients.withLockedValue { $0 }.map { forwarder in
            let o = forwarder.options
            var row = forwarder.status.skynetFields
            row["name"] = .string(o.name)
            row["pk"] = .string(o.serverKeyHex)
            row["remote_port"] = .int(Int64(o.remotePort))
            row["local_addr"] = .string(o.bindHost.contains(":") ? "[\(o.bindHost)]:\(o.localPort)" : "\(o.bindHost):\(o.localPort)")
            row["last_error"] = forwarder.lastError.map { .string($0) } ?? .null
            return .object(row)
        }
    }

    var resolverRow: ControlValue {
        guard let proxy = resolver.withLockedValue({ $0 }) else { return .null }
        let s = proxy.status
        var row = s.skynetFields
        row["listen_addr"] = .string("\(proxy.options.listen)")
        row["upstream"] = proxy.options.upstream.map { .string("\($0)") } ?? .null
        row["refused"] = .int(Int64(clamping: s.refusedDestinations))
        return .object(row)
    }

    func status() -> AppStatusReport {
        let servers = serverRows, clients = clientRows, resolver = resolverRow
        var parts = ["\(servers.count) exposed", "\(clients.count) forwarded"]
        if resolver != .null { parts.append("resolver up") }
        return AppStatusReport(detail: parts.joined(separator: ", "),
                               fields: ["servers": .array(servers), "clients": .array(clients), "resolver": resolver])
    }
}

extension SkysocksStatus {
    /// The counters of one SkyNet forward (docs/skynet.md, `--json`).
    var skynetFields: [String: ControlValue] {
        [
            "active": .int(Int64(activeSessions)), "total": .int(Int64(totalSessions)), "failed": .int(Int64(failedSessions)),
            "bytes_up": .int(Int64(clamping: bytesUp)), "bytes_down": .int(Int64(clamping: bytesDown)),
        ]
    }
}
