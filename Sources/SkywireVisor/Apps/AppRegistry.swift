import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireTransport

/// How the registry builds one app, registered under its config name: `parse` is the edge
/// where the config's (or `apps.start`'s) `args` become typed options, once; `make` builds the
/// app from typed options (`vpn.start` and the other control methods pass those directly).
public struct AppFactory: Sendable {
    public let parse: @Sendable (_ args: [String]) throws -> AppOptions
    public let make: @Sendable (_ context: AppContext, _ options: AppOptions) throws -> VisorApp

    public init(parse: @escaping @Sendable ([String]) throws -> AppOptions,
                make: @escaping @Sendable (AppContext, AppOptions) throws -> VisorApp) {
        self.parse = parse
        self.make = make
    }
}

/// The visor's apps: which are configured, which run, and which port routes where.
public final class AppRegistry: AppRouter, @unchecked Sendable {
    // @unchecked Sendable: `entries` is guarded by `lock`; apps themselves are Sendable.
    public enum Status: String, Sendable { case stopped, starting, running, failed }

    struct Entry {
        var spec: AppSpec
        var status: Status = .stopped
        var app: VisorApp?
        var lastError: String?
        var runningArgs: [String]?
        /// An auto-started app whose start failed is retried until it runs or is stopped by hand.
        var retryTask: Task<Void, Never>?
        var retryAt: ContinuousClock.Instant?

        /// No more auto-start retries (cancels a pending one).
        mutating func endRetries() {
            retryTask?.cancel()
            retryTask = nil
            retryAt = nil
        }
    }

    public typealias DatagramHandler = @Sendable (ByteBuffer, PublicKey, UInt16) -> Void

    private let lock = NIOLock()
    private var entries: [String: Entry] = [:]
    /// Client-side ports (49152...65535) that receive datagram answers, e.g. for `visor ping`.
    private var ephemeral: [UInt16: DatagramHandler] = [:]
    private var nextEphemeral: UInt16 = ephemeralRange.lowerBound
    static let ephemeralRange: ClosedRange<UInt16> = 49152...65535
    private var order: [String] = []
    private let factories: [String: AppFactory]
    private let makeContext: @Sendable (UInt16) -> AppContext
    private let logger: Logger
    /// Auto-start retry backoff: doubling from `retryInitial` to `retryMax`.
    private let retryInitial: Duration
    private let retryMax: Duration

    public init(specs: [AppSpec], factories: [String: AppFactory], logger: Logger,
                retryInitial: Duration = .seconds(1), retryMax: Duration = .seconds(30),
                makeContext: @escaping @Sendable (UInt16) -> AppContext) {
        self.retryInitial = retryInitial
        self.retryMax = retryMax
        self.factories = factories
        self.makeContext = makeContext
        self.logger = logger
        for spec in specs {
            entries[spec.name] = Entry(spec: spec)
            order.append(spec.name)
        }
    }

    public var specs: [AppSpec] { lock.withLock { order.compactMap { entries[$0]?.spec } } }

    /// Starts one app by name, with `args` replacing the configured ones for this run when
    /// given (parsed here, the edge); a start error is returned to the caller as an `AppError`
    /// (its code says why) and kept for `apps ls`.
    public func start(_ name: String, args: [String]? = nil) async throws(AppError) {
        try await start(name, launch: args.map { .arguments($0) } ?? .configured, retrying: false)
    }

    /// Starts one app by name with typed options (`vpn.start` and the other control methods);
    /// `apps ls` shows `shownArguments` as the app's `args`.
    public func start(_ name: String, options: AppOptions, shownArguments: [String]) async throws(AppError) {
        try await start(name, launch: .options(options, shownArguments), retrying: false)
    }

    /// What a start runs with.
    private enum Launch {
        /// The config entry's `args`.
        case configured
        /// `args` replacing the configured ones for this run.
        case arguments([String])
        /// Typed options, with the argument form `apps ls` shows.
        case options(AppOptions, [String])
    }

    /// `retrying`: called by the auto-start retry task (which must not cancel itself).
    private func start(_ name: String, launch: Launch, retrying: Bool) async throws(AppError) {
        let claimed: Result<(AppSpec, AppFactory), AppError> = lock.withLock {
            guard var entry = entries[name] else {
                return .failure(AppError(.notFound, "no app named \"\(name)\" in the config (known: \(order.joined(separator: ", ")))"))
            }
            guard entry.status != .running, entry.status != .starting else {
                return .failure(AppError(.conflict, "\(name) is already \(entry.status.rawValue)"))
            }
            guard let factory = factories[name] else {
                return .failure(AppError(.notFound, "\(name) is not built into this visor"))
            }
            if !retrying { entry.endRetries() }
            entry.status = .starting
            entries[name] = entry
            return .success((entry.spec, factory))
        }
        let (spec, factory) = try claimed.get()
        let context = makeContext(spec.port)
        let arguments: [String], app: VisorApp
        do {
            let options: AppOptions
            switch launch {
            case .configured: (options, arguments) = (try Self.parse(spec.args, with: factory), spec.args)
            case .arguments(let args): (options, arguments) = (try Self.parse(args, with: factory), args)
            case .options(let o, let shown): (options, arguments) = (o, shown)
            }
            app = try factory.make(context, options)
        } catch let error as AppError {
            // Bad arguments: retrying cannot help.
            update(name) {
                $0.status = .failed
                $0.lastError = "\(error)"
            }
            logger.error("app failed to start", metadata: ["app": "\(name)", "error": "\(error)"])
            throw error.code == .failed ? AppError(.invalidArguments, error.message) : error
        } catch {
            update(name) {
                $0.status = .failed
                $0.lastError = "\(error)"
            }
            throw AppError(.invalidArguments, "\(error)")
        }
        do {
            try await app.start()
            update(name) {
                $0.app = app
                $0.status = .running
                $0.lastError = nil
                $0.runningArgs = arguments
            }
            logger.info("app started", metadata: ["app": "\(name)", "port": "\(spec.port)"])
            Self.logAccess(of: app, name: name, logger: logger)
        } catch {
            update(name) {
                $0.status = .failed
                $0.lastError = "\(error)"
            }
            logger.error("app failed to start", metadata: ["app": "\(name)", "error": "\(error)"])
            throw error as? AppError ?? AppError(.failed, "\(error)")
        }
    }

    /// The edge: `args` to typed options; any refusal is `invalidArguments`.
    private static func parse(_ args: [String], with factory: AppFactory) throws(AppError) -> AppOptions {
        do {
            return try factory.parse(args)
        } catch let e as AppError {
            throw e.code == .failed ? AppError(.invalidArguments, e.message) : e
        } catch {
            throw AppError(.invalidArguments, "\(error)")
        }
    }

    /// Changes the entry `name` under the lock; entries are never removed, so it is there for a
    /// name `start` found, but a missing one is skipped rather than trapped on.
    private func update(_ name: String, _ change: (inout Entry) -> Void) {
        lock.withLock {
            guard var entry = entries[name] else { return }
            change(&entry)
            entries[name] = entry
        }
    }

    /// Says plainly, when an app that serves other visors starts, that it refuses every key
    /// (warning: most likely an unprovisioned whitelist) or is open to every key (notice).
    static func logAccess(of app: VisorApp, name: String, logger: Logger) {
        guard let whitelist = app.whitelist else { return }
        guard let notice = whitelist.notice(app: name) else {
            logger.info("\(name): \(whitelist.summary)")
            return
        }
        if whitelist.admitsNobody { logger.warning("\(notice)") } else { logger.notice("\(notice)") }
    }

    public func stop(_ name: String) async throws(AppError) {
        let taken: Result<VisorApp?, AppError> = lock.withLock {
            guard var entry = entries[name] else { return .failure(AppError(.notFound, "no app named \"\(name)\" in the config")) }
            if entry.retryTask != nil, entry.status != .running {
                // Stopping an app that is waiting to retry its start: no more retries.
                entry.endRetries()
                entry.status = .stopped
                entries[name] = entry
                return .success(nil)
            }
            guard entry.status == .running, let app = entry.app else {
                return .failure(AppError(.conflict, "\(name) is not running"))
            }
            entry.app = nil
            entry.status = .stopped
            entries[name] = entry
            return .success(app)
        }
        let app = try taken.get()
        await app?.stop()
        logger.info("app stopped", metadata: ["app": "\(name)"])
    }

    /// Starts every app marked `auto_start`; failures are logged and do not stop the others. An app
    /// whose start fails (exit unreachable, network not up yet at boot) is retried with backoff
    /// until it runs or is stopped by hand; bad arguments are not retried.
    public func startAutoStartApps() async {
        for spec in specs where spec.autoStart {
            do throws(AppError) {
                try await start(spec.name)
            } catch where error.isWorthRetrying {
                scheduleRetry(spec.name, after: retryInitial)
            } catch {
                // Bad arguments, an app not built in: retrying cannot help.
            }
        }
    }

    private func scheduleRetry(_ name: String, after delay: Duration) {
        let next = min(delay * 2, retryMax)
        update(name) { entry in
            entry.retryAt = .now + delay
            entry.retryTask = Task { [weak self] in
                try? await Task.sleep(for: delay)
                guard let self, !Task.isCancelled else { return }
                self.logger.info("retrying app start", metadata: ["app": "\(name)"])
                do {
                    try await self.start(name, launch: .configured, retrying: true)
                } catch let error as AppError where error.isWorthRetrying {
                    if !Task.isCancelled { self.scheduleRetry(name, after: next) }
                    return
                } catch {
                    // Bad arguments: retrying cannot help.
                }
                self.update(name) { $0.endRetries() }
            }
        }
    }

    /// Stops every running app for a visor shutdown (`VisorApp.shutdown`), last started first.
    public func stopAll() async {
        let running: [(String, VisorApp)] = lock.withLock {
            var out: [(String, VisorApp)] = []
            for name in order.reversed() {
                entries[name]?.endRetries()
                if let app = entries[name]?.app {
                    out.append((name, app))
                    entries[name]?.app = nil
                    entries[name]?.status = .stopped
                }
            }
            return out
        }
        for (name, app) in running {
            await app.shutdown()
            logger.info("app stopped", metadata: ["app": "\(name)"])
        }
    }

    /// Tells every running app that the uplink changed (`VisorApp.uplinkChanged`); what they
    /// did, each prefixed with the app's name.
    public func uplinkChanged(_ change: UplinkChange) async -> [String] {
        let running: [(String, VisorApp)] = lock.withLock { order.compactMap { n in entries[n]?.app.map { (n, $0) } } }
        var done: [String] = []
        for (name, app) in running {
            done += await app.uplinkChanged(change).map { "\(name): \($0)" }
        }
        return done
    }

    public func app(named name: String) -> VisorApp? { lock.withLock { entries[name]?.app } }

    /// `snapshot()` on the blocking pool, for async callers: an app's status may run `nft list`
    /// (the gateway's counters).
    public func snapshotOffPool() async -> [ControlValue] {
        await BlockingPool.shared.runOrInline { [self] in snapshot() }
    }

    /// `apps ls` rows.
    public func snapshot() -> [ControlValue] {
        lock.withLock {
            order.compactMap { name -> ControlValue? in
                guard let e = entries[name] else { return nil }
                var detail = e.lastError ?? ""
                var obj: [String: ControlValue] = [
                    "name": .string(name), "port": .int(Int64(e.spec.port)),
                    "auto_start": .bool(e.spec.autoStart), "status": .string(e.status.rawValue),
                    "args": .array((e.runningArgs ?? e.spec.args).map { .string($0) }),
                ]
                if let at = e.retryAt, e.status != .running {
                    let left = max(0, (at - .now).components.seconds)
                    obj["retry_in_seconds"] = .int(left)
                    detail = "retrying in \(left) s" + (detail.isEmpty ? "" : ": " + detail)
                }
                if let app = e.app {
                    let report = app.status()
                    if detail.isEmpty { detail = report.detail }
                    if !report.fields.isEmpty { obj["info"] = .object(report.fields) }
                    if let whitelist = app.whitelist {
                        obj["access"] = .string(whitelist.access)
                        detail += (detail.isEmpty ? "" : "; ") + whitelist.summary
                    }
                }
                obj["detail"] = .string(detail)
                return .object(obj)
            }
        }
    }

    private func runningApp(on port: UInt16) -> VisorApp? {
        lock.withLock {
            for name in order {
                if let e = entries[name], e.spec.port == port, e.status == .running { return e.app }
            }
            return nil
        }
    }

    // MARK: AppRouter

    public func route(stream: AppStream, destinationPort: UInt16) -> AppStreamResetCode? {
        guard let app = runningApp(on: destinationPort) else { return .noSuchPort }
        return app.accept(stream: stream) ? nil : .refused
    }

    public func route(datagram: ByteBuffer, from: PublicKey, destinationPort: UInt16, sourcePort: UInt16) {
        if let handler = lock.withLock({ ephemeral[destinationPort] }) {
            handler(datagram, from, sourcePort)
            return
        }
        runningApp(on: destinationPort)?.receive(datagram: datagram, from: from, sourcePort: sourcePort)
    }

    /// Reserves a client-side port whose datagrams go to `handler` until `releaseEphemeral`.
    public func reserveEphemeral(_ handler: @escaping DatagramHandler) -> UInt16? {
        lock.withLock {
            let span = Int(Self.ephemeralRange.upperBound - Self.ephemeralRange.lowerBound) + 1
            for _ in 0..<span {
                let port = nextEphemeral
                nextEphemeral = port == Self.ephemeralRange.upperBound ? Self.ephemeralRange.lowerBound : port + 1
                if ephemeral[port] == nil {
                    ephemeral[port] = handler
                    return port
                }
            }
            return nil
        }
    }

    public func releaseEphemeral(_ port: UInt16) {
        lock.withLock { _ = ephemeral.removeValue(forKey: port) }
    }
}

extension AppError {
    /// Whether an auto-started app's failed start is retried: a failure of the start itself
    /// (exit unreachable, network not up at boot, a whitelist not updated yet), not a refusal
    /// of its arguments.
    var isWorthRetrying: Bool {
        switch code {
        case .failed, .forbidden: true
        case .invalidArguments, .notFound, .conflict: false
        }
    }
}
