import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireTransport

/// Builds an app from its config entry. Apps register a factory under their config name.
public typealias AppFactory = @Sendable (_ context: AppContext, _ args: [String]) throws -> VisorApp

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
    /// given; a start error is returned to the caller and kept for `apps ls`.
    public func start(_ name: String, args: [String]? = nil) async throws {
        try await start(name, args: args, retrying: false)
    }

    /// `retrying`: called by the auto-start retry task (which must not cancel itself).
    private func start(_ name: String, args: [String]?, retrying: Bool) async throws {
        let (spec, factory): (AppSpec, AppFactory) = try lock.withLock {
            guard let entry = entries[name] else {
                throw AppError("no app named \"\(name)\" in the config (known: \(order.joined(separator: ", ")))")
            }
            guard entry.status != .running, entry.status != .starting else {
                throw AppError("\(name) is already \(entry.status.rawValue)")
            }
            guard let factory = factories[name] else {
                throw AppError("\(name) is not built into this visor")
            }
            if !retrying { entries[name]!.endRetries() }
            entries[name]!.status = .starting
            var spec = entry.spec
            if let args { spec.args = args }
            return (spec, factory)
        }
        let app: VisorApp
        do {
            app = try factory(makeContext(spec.port), spec.args)
        } catch {
            // Bad arguments: retrying cannot help.
            lock.withLock {
                entries[name]!.status = .failed
                entries[name]!.lastError = "\(error)"
            }
            logger.error("app failed to start", metadata: ["app": "\(name)", "error": "\(error)"])
            throw AppStartError.invalidArguments(error)
        }
        do {
            try await app.start()
            lock.withLock {
                entries[name]!.app = app
                entries[name]!.status = .running
                entries[name]!.lastError = nil
                entries[name]!.runningArgs = spec.args
            }
            logger.info("app started", metadata: ["app": "\(name)", "port": "\(spec.port)"])
            Self.logAccess(of: app, name: name, logger: logger)
        } catch {
            lock.withLock {
                entries[name]!.status = .failed
                entries[name]!.lastError = "\(error)"
            }
            logger.error("app failed to start", metadata: ["app": "\(name)", "error": "\(error)"])
            throw error
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

    public func stop(_ name: String) async throws {
        let app: VisorApp? = try lock.withLock {
            guard let entry = entries[name] else { throw AppError("no app named \"\(name)\" in the config") }
            if entry.retryTask != nil, entry.status != .running {
                // Stopping an app that is waiting to retry its start: no more retries.
                entries[name]!.endRetries()
                entries[name]!.status = .stopped
                return nil
            }
            guard entry.status == .running, let app = entry.app else {
                throw AppError("\(name) is not running")
            }
            entries[name]!.app = nil
            entries[name]!.status = .stopped
            return app
        }
        await app?.stop()
        logger.info("app stopped", metadata: ["app": "\(name)"])
    }

    /// Starts every app marked `auto_start`; failures are logged and do not stop the others. An app
    /// whose start fails (exit unreachable, network not up yet at boot) is retried with backoff
    /// until it runs or is stopped by hand; bad arguments are not retried.
    public func startAutoStartApps() async {
        for spec in specs where spec.autoStart {
            do {
                try await start(spec.name)
            } catch is AppStartError {
            } catch {
                scheduleRetry(spec.name, after: retryInitial)
            }
        }
    }

    private func scheduleRetry(_ name: String, after delay: Duration) {
        let next = min(delay * 2, retryMax)
        lock.withLock {
            guard entries[name] != nil else { return }
            entries[name]!.retryAt = .now + delay
            entries[name]!.retryTask = Task { [weak self] in
                try? await Task.sleep(for: delay)
                guard let self, !Task.isCancelled else { return }
                self.logger.info("retrying app start", metadata: ["app": "\(name)"])
                do {
                    try await self.start(name, args: nil, retrying: true)
                } catch is AppStartError {
                    // Bad arguments: retrying cannot help.
                } catch {
                    if !Task.isCancelled { self.scheduleRetry(name, after: next) }
                    return
                }
                self.lock.withLock { self.entries[name]!.endRetries() }
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
                    entries[name]!.app = nil
                    entries[name]!.status = .stopped
                }
            }
            return out
        }
        for (name, app) in running {
            await app.shutdown()
            logger.info("app stopped", metadata: ["app": "\(name)"])
        }
    }

    public func app(named name: String) -> VisorApp? { lock.withLock { entries[name]?.app } }

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
