import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
import SkywireTransport

/// The daemon: transports, apps and the control socket, started and stopped together.
public final class Visor: Sendable {
    public let options: VisorOptions
    public let logger: Logger
    let group: MultiThreadedEventLoopGroup
    public let transports: TransportManager
    public let apps: AppRegistry
    let control: ControlServer
    let startedAt: ContinuousClock.Instant
    /// Registration with `transport.discovery`, when set to an http:// URL.
    let registrar: DiscoveryRegistrar?
    /// The web UI (docs/ui.md), nil when `ui.listen` is "".
    let ui: UIServer?
    /// Looks up relay servers in discovery until it lists one (`startRelays`).
    let relayLookup = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Follows uplink changes while running (Visor+Uplink).
    let uplinkWatcher = NIOLockedValueBox<UplinkWatcher?>(nil)
    /// The reaction to the latest uplink change; each waits for the one before (one at a time).
    let uplinkWork = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public init(options: VisorOptions, logger: Logger, factories: [String: AppFactory]) {
        self.options = options
        self.logger = logger
        // Small boards: one event loop per core, at most two.
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: min(2, System.coreCount))
        let transports = TransportManager(settings: options.transport, group: group, logger: logger)
        self.transports = transports
        let pk = options.transport.identity.publicKey
        let stateDirectory = options.stateDirectory
        self.apps = AppRegistry(specs: options.apps, factories: factories, logger: logger) { port in
            AppContext(localKey: pk, port: port, transports: transports,
                       logger: logger, stateDirectory: stateDirectory)
        }
        transports.router = apps
        if let url = try? DiscoveryURL(options.discovery) { transports.resolver = DiscoveryResolver(url: url, keyPair: options.transport.identity) }
        self.startedAt = .now
        self.registrar = Self.makeRegistrar(options: options, apps: apps, transports: transports, logger: logger)
        let box = VisorBox()
        self.control = ControlServer(path: options.controlSocket, group: group, logger: logger, streamOpener: { request in
            guard let visor = box.visor else { throw ControlError(.unavailable, "the visor is shutting down") }
            return try await visor.openStream(request.params)
        }) { request in
            // Nil only for a request that raced the visor's release at shutdown.
            guard let visor = box.visor else {
                return ControlResponse(id: request.id, error: ControlError(.unavailable, "the visor is shutting down"))
            }
            return await visor.handle(request)
        }
        self.ui = Self.makeUI(options: options, group: group, box: box, logger: logger)
        box.visor = self
    }

    /// Starts transports, the control socket and auto-start apps; undoes what it did if a step fails.
    public func start() async throws {
        logger.info("visor starting", metadata: ["pk": "\(options.transport.identity.publicKey.hex)",
                                                  "version": "\(SkywireVersion.string)"])
        do {
            try await transports.start()
            let lookup = try startRelays()
            relayLookup.withLockedValue { $0 = lookup }
            try await control.start()
        } catch {
            await shutdown()
            throw error
        }
        await startUI()
        await apps.startAutoStartApps()
        registrar?.start()
        await startFollowingUplink()
        logger.info("visor ready", metadata: ["pk": "\(options.transport.identity.publicKey.hex)"])
    }

    /// Stops the web UI, then apps, then transports, then the control socket.
    public func shutdown() async {
        await stopFollowingUplink()
        await ui?.stop()
        await registrar?.stop()
        relayLookup.withLockedValue { $0 }?.cancel()
        await apps.stopAll()
        await transports.shutdown()
        await control.stop()
        try? await group.shutdownGracefully()
        logger.info("visor stopped")
    }

    var uptimeSeconds: Int64 {
        (ContinuousClock.now - startedAt).components.seconds
    }
}

/// Lets the control handler reach the visor that owns it.
final class VisorBox: @unchecked Sendable {
    // @unchecked Sendable: `reference` is guarded by `lock` (written once in Visor.init, read
    // by every control request).
    private let lock = NIOLock()
    private weak var reference: Visor?

    var visor: Visor? {
        get { lock.withLock { reference } }
        set { lock.withLock { reference = newValue } }
    }
}
