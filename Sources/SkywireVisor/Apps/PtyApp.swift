import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireSystem
import SkywireTransport
import SkywireWire

/// `pty` (port 22): remote shells, commands and file copies for the visors on its whitelist
/// (docs/pty.md). Closed by default. Each admitted stream is one session (`PtyHostSession`):
/// the protocol of `PtyFrame` over the stream, the child process on a thread of its own.
final class PtyApp: VisorApp, @unchecked Sendable {
    // @unchecked Sendable: `running`, `active`, `total`, `refused` are guarded by `lock`;
    // the rest is immutable.
    private let context: AppContext
    let options: PtyOptions
    private let admitted: AppWhitelist.HexIndex
    private let lock = NIOLock()
    private var running = false
    private var active = 0
    private var total = 0
    private var refused = 0
    /// The running sessions' links, hung up by `stop`.
    private var links: [ObjectIdentifier: PtySessionLink] = [:]
    /// The sessions handed to the session host (`--session-host`): their hang-ups, by number.
    private var hostSessions: [Int: @Sendable () -> Void] = [:]
    /// How long a client has to send `open` (shorter in tests).
    let openTimeout: TimeAmount

    init(context: AppContext, options: PtyOptions, openTimeout: TimeAmount = PtyHostSession.defaultOpenTimeout) {
        self.context = context
        self.openTimeout = openTimeout
        self.options = options
        admitted = options.whitelist.hexIndex
    }

    var whitelist: AppWhitelist? { options.whitelist }

    func start() async throws {
        // The user must exist now, not at the first session.
        do {
            _ = try SessionUser.lookup(options.user)
        } catch {
            throw AppError(.invalidArguments, "pty: --user \(options.user): \(error)")
        }
        if options.sessionHost != nil, !PtyHostHeader.isUserName(options.user) {
            throw AppError(.invalidArguments, "pty: --user '\(options.user)' is not a portable user name ([a-z_][a-z0-9_-]*, at most \(PtyHostHeader.maxUserLength)), which --session-host needs")
        }
        lock.withLock { running = true }
    }

    /// Refuses new sessions and hangs up the running ones (their commands get SIGHUP, then SIGKILL).
    func stop() async {
        let (open, hosted): ([PtySessionLink], [@Sendable () -> Void]) = lock.withLock {
            running = false
            return (Array(links.values), Array(hostSessions.values))
        }
        for link in open { link.peerClosed() }
        for hangUp in hosted { hangUp() }
    }

    func register(_ link: PtySessionLink) {
        lock.withLock { links[ObjectIdentifier(link)] = link }
    }

    func unregister(_ link: PtySessionLink) {
        lock.withLock { _ = links.removeValue(forKey: ObjectIdentifier(link)) }
    }

    func status() -> AppStatusReport {
        lock.withLock {
            AppStatusReport(detail: "\(active) active as \(options.user)", fields: [
                "user": .string(options.user), "active_sessions": .int(Int64(active)),
                "total_sessions": .int(Int64(total)), "refused_sessions": .int(Int64(refused)),
                "whitelist": .array(options.whitelist.sortedKeys.map { .string($0.hex) }),
            ])
        }
    }

    func accept(stream: AppStream) -> Bool {
        let key = stream.remoteKeyHex
        guard admitted.admits(key) else {
            lock.withLock { refused += 1 }
            context.logger.warning("pty: refused a session from a key not on the whitelist", metadata: ["pk": "\(key)"])
            return false
        }
        let admittedNow: Bool = lock.withLock {
            guard running, active < options.maxSessions else { return false }
            active += 1
            total += 1
            return true
        }
        guard admittedNow else {
            context.logger.warning("pty: refused a session: \(options.maxSessions) sessions already", metadata: ["pk": "\(key)"])
            return false
        }
        if let path = options.sessionHost {
            let number = lock.withLock { total }
            PtySessionHost.forward(stream, to: path, user: options.user, logger: context.logger,
                                   started: { [self] hangUp in
                                       let stopped: Bool = lock.withLock {
                                           if running { hostSessions[number] = hangUp }
                                           return !running
                                       }
                                       if stopped { hangUp() }
                                   },
                                   onDone: { [self] in
                                       lock.withLock {
                                           active -= 1
                                           hostSessions[number] = nil
                                       }
                                   })
            return true
        }
        let session = PtyHostSession(stream: stream, user: options.user, logger: context.logger, app: self,
                                     openTimeout: openTimeout) { [self] in
            lock.withLock { active -= 1 }
        }
        session.start()
        return true
    }
}
