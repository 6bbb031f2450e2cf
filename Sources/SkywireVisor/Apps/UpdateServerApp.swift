import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireSystem
import SkywireTransport
import SkywireWire

/// `update-server` (port 24): serves the `.raucb` bundles of its `--dir` to the visors on its
/// whitelist, for `skywire cli update apply --from PK` (docs/update.md, "Delivery over the
/// mesh"). Closed by default. One stream is one request (`UpdateFrame`); each is an
/// `UpdateServerSession`. Bounded: requests at once (all keys and per key), an idle timeout.
final class UpdateServerApp: VisorApp, @unchecked Sendable {
    // @unchecked Sendable: `running`, `perKey`, `sessions` and the counters are guarded by `lock`;
    // the rest is immutable.
    private let context: AppContext
    let options: UpdateServerOptions
    let directory: UpdateBundleDirectory
    private let admitted: AppWhitelist.HexIndex
    private let lock = NIOLock()
    private var running = false
    private var perKey: [String: Int] = [:]
    private var sessions: [ObjectIdentifier: UpdateServerSession] = [:]
    private var counters = Counters()

    struct Counters {
        var requests = 0
        var refused = 0
        var busy = 0
        var completed = 0
        var bytesSent: UInt64 = 0
    }

    init(context: AppContext, options: UpdateServerOptions) {
        self.context = context
        self.options = options
        directory = UpdateBundleDirectory(path: options.directory)
        admitted = options.whitelist.hexIndex
    }

    var whitelist: AppWhitelist? { options.whitelist }
    var logger: Logger { context.logger }
    var idleTimeout: TimeAmount { .seconds(Int64(options.idleTimeoutSeconds)) }

    func start() async throws {
        let directory = self.directory
        do {
            try await BlockingPool.shared.run { try directory.check() }
        } catch {
            throw AppError(.invalidArguments, "update-server: --dir \(options.directory): \(error)")
        }
        lock.withLock { running = true }
    }

    /// Refuses new requests and resets the running ones.
    func stop() async {
        let open: [UpdateServerSession] = lock.withLock {
            running = false
            return Array(sessions.values)
        }
        for session in open { session.eventLoop.execute { session.abort() } }
    }

    func status() -> AppStatusReport {
        lock.withLock {
            AppStatusReport(detail: "\(sessions.count) active, \(counters.bytesSent) bytes sent from \(options.directory)", fields: [
                "directory": .string(options.directory), "active": .int(Int64(sessions.count)),
                "requests": .int(Int64(counters.requests)), "completed": .int(Int64(counters.completed)),
                "refused": .int(Int64(counters.refused)), "busy": .int(Int64(counters.busy)),
                "bytes_sent": .int(Int64(clamping: counters.bytesSent)),
                "whitelist": .array(options.whitelist.sortedKeys.map { .string($0.hex) }),
            ])
        }
    }

    func accept(stream: AppStream) -> Bool {
        let key = stream.remoteKeyHex
        guard admitted.admits(key) else {
            lock.withLock { counters.refused += 1 }
            context.logger.warning("update-server: refused a request from a key not on the whitelist", metadata: ["pk": "\(key)"])
            return false
        }
        let session = UpdateServerSession(stream: stream, app: self)
        enum Admission { case admitted, stopped, busy }
        let admission: Admission = lock.withLock {
            guard running else { return .stopped }
            counters.requests += 1
            guard sessions.count < options.maxTransfers, perKey[key, default: 0] < options.maxPerKey else {
                counters.busy += 1
                return .busy
            }
            perKey[key, default: 0] += 1
            sessions[ObjectIdentifier(session)] = session
            return .admitted
        }
        switch admission {
        case .stopped: return false
        case .busy:
            context.logger.notice("update-server: busy (\(options.maxTransfers) at once, \(options.maxPerKey) per key)", metadata: ["pk": "\(key)"])
            UpdateServerSession.refuse(stream, .busy, "the update server is busy (at most \(options.maxTransfers) transfers, \(options.maxPerKey) per key): try again later")
        case .admitted:
            session.start()
        }
        return true
    }

    /// A session ended (on its loop): its slot is free.
    func ended(_ session: UpdateServerSession, key: String, completed: Bool) {
        lock.withLock {
            guard sessions.removeValue(forKey: ObjectIdentifier(session)) != nil else { return }
            perKey[key, default: 1] -= 1
            if perKey[key] == 0 { perKey[key] = nil }
            if completed { counters.completed += 1 }
        }
    }

    func countSent(_ bytes: Int) {
        lock.withLock { counters.bytesSent += UInt64(bytes) }
    }
}
