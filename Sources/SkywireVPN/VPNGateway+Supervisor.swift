import Logging
import NIOCore
import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// The restart schedule of the gateway's dnsmasq (docs/gateway.md §4.1), pure: times are
/// milliseconds of a monotonic clock. A dnsmasq that exits is started again after 1 s, then
/// 2, 4, 8, 16 and 30 s for each further failure in a row; a dnsmasq that ran `stableMillis`
/// before it exited starts the schedule over. The first failure of an outage and the recovery
/// are reported once each (`exited` answers `first`, `checkRunning` answers true once).
struct DNSMasqSupervision: Sendable, Equatable {
    static let initialDelayMillis: Int64 = 1000
    static let maxDelayMillis: Int64 = 30_000
    /// A run this long resets the schedule.
    static let stableMillis: Int64 = 30_000
    /// A restarted dnsmasq still running this long after its start serves again (it checks its
    /// options and binds its sockets before that: a bad start exits at once).
    static let recoveredAfterMillis: Int64 = 500

    /// Restarts done (spawned), over the gateway's life.
    private(set) var restarts = 0
    /// Failures in a row (exits, and restarts that could not spawn).
    private(set) var failures = 0
    /// How the last dnsmasq ended (`killed by signal 9`), or why the last restart failed.
    private(set) var lastExit: String?
    /// When the current outage began; nil while dnsmasq serves.
    private(set) var downSince: Int64?
    /// When the next restart is due; nil while a dnsmasq runs.
    private(set) var restartAt: Int64?
    private(set) var startedAt: Int64

    init(startedAt: Int64) { self.startedAt = startedAt }

    /// The pause before restart number `failures` of an outage (1 s doubling, at most 30 s).
    static func delayMillis(failures: Int) -> Int64 {
        guard failures > 1 else { return initialDelayMillis }
        let shift = min(failures - 1, 16)
        return min(initialDelayMillis << Int64(shift), maxDelayMillis)
    }

    /// The running dnsmasq ended at `now`: the restart is scheduled. `first` is true for the
    /// first failure of an outage (the one to log).
    mutating func exited(at now: Int64, how: String) -> (first: Bool, delayMillis: Int64) {
        if downSince == nil && now - startedAt >= Self.stableMillis { failures = 0 }
        return failed(at: now, how: how)
    }

    /// A restart could not even spawn dnsmasq (its binary gone, no state directory).
    mutating func startFailed(at now: Int64, error: String) -> Int64 {
        failed(at: now, how: error).delayMillis
    }

    private mutating func failed(at now: Int64, how: String) -> (first: Bool, delayMillis: Int64) {
        let first = downSince == nil
        if first { downSince = now }
        failures += 1
        lastExit = how
        let delay = Self.delayMillis(failures: failures)
        restartAt = now + delay
        return (first, delay)
    }

    /// Whether a restart is due at `now`.
    func restartDue(at now: Int64) -> Bool { restartAt.map { now >= $0 } ?? false }

    /// A restart spawned dnsmasq at `now`.
    mutating func restarted(at now: Int64) {
        restarts += 1
        restartAt = nil
        startedAt = now
    }

    /// dnsmasq was replaced at `now` on purpose (new DNS servers): not a restart.
    mutating func replaced(at now: Int64) {
        restartAt = nil
        startedAt = now
    }

    /// dnsmasq is running at `now`: true once, when a restarted one has run long enough to
    /// count as serving again (the outage ends; its length is `now - downSince` before the call).
    mutating func checkRunning(at now: Int64) -> Bool {
        guard downSince != nil, restartAt == nil, now - startedAt >= Self.recoveredAfterMillis else { return false }
        downSince = nil
        return true
    }
}

extension VPNGateway {
    /// How often the supervisor looks at dnsmasq (one non-blocking waitpid).
    static let supervisionTickNanos: UInt64 = 250_000_000

    static func nowMillis() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    /// Starts watching the dnsmasq `startDNSMasq` started (a task that sleeps between
    /// non-blocking checks: the visor never waits for dnsmasq).
    func startSupervising(watch: Bool = true) {
        let task = !watch ? nil : Task { [weak self] in
            for _ in 0..<Int.max {
                try? await Task.sleep(nanoseconds: Self.supervisionTickNanos)
                // waitpid(2) and a dnsmasq restart on the blocking pool.
                guard let self, !Task.isCancelled,
                      await BlockingPool.shared.runOrInline({ self.superviseOnce(now: Self.nowMillis()) }) else { return }
            }
        }
        let old: Task<Void, Never>? = lock.withLock {
            supervising = true
            supervision = DNSMasqSupervision(startedAt: Self.nowMillis())
            defer { supervisor = task }
            return supervisor
        }
        old?.cancel()
    }

    /// One look at dnsmasq: reaps an exited one and schedules its restart, restarts when due,
    /// notes a recovery. Everything that touches the PID runs under `lock`, which `teardown`
    /// takes to end supervision, so a stopped gateway is never restarted and a PID is only
    /// signalled or reaped while it is our unreaped child. False once supervision has ended.
    func superviseOnce(now: Int64) -> Bool {
        enum Note { case none, exited(String, first: Bool, delay: Int64), restarted(pid_t), spawnFailed(String, delay: Int64)
                    case recovered(pid_t, restarts: Int, downMillis: Int64) }
        let (active, note): (Bool, Note) = lock.withLock {
            guard supervising else { return (false, .none) }
            if let pid = dnsmasqPID {
                if let how = Subprocess.reap(pid) {
                    dnsmasqPID = nil
                    let (first, delay) = supervision.exited(at: now, how: how)
                    return (true, .exited(how, first: first, delay: delay))
                }
                let down = supervision.downSince.map { now - $0 } ?? 0
                return (true, supervision.checkRunning(at: now) ? .recovered(pid, restarts: supervision.restarts, downMillis: down) : .none)
            }
            guard supervision.restartDue(at: now) else { return (true, .none) }
            do {
                let pid = try spawnDNSMasq(dns: dns, lan6: lan6)
                supervision.restarted(at: now)
                adoptLocked(pid)
                return (true, .restarted(pid))
            } catch {
                return (true, .spawnFailed("\(error)", delay: supervision.startFailed(at: now, error: "\(error)")))
            }
        }
        switch note {
        case .none: break
        case .exited(let how, let first, let delay):
            let meta: Logger.Metadata = ["lan": "\(options.lan)", "how": "\(how)", "restart_in_ms": "\(delay)"]
            if first { logger.warning("gateway: dnsmasq exited, the LAN has no DHCP/DNS; restarting it", metadata: meta) }
            else { logger.debug("gateway: restarted dnsmasq exited again", metadata: meta) }
        case .restarted(let pid):
            logger.debug("gateway: dnsmasq restarted", metadata: ["pid": "\(pid)"])
        case .spawnFailed(let error, let delay):
            logger.debug("gateway: dnsmasq restart failed", metadata: ["error": "\(error)", "retry_in_ms": "\(delay)"])
        case .recovered(let pid, let restarts, let down):
            logger.info("gateway: dnsmasq serving the LAN again", metadata: [
                "lan": "\(options.lan)", "pid": "\(pid)", "restarts": "\(restarts)", "down_ms": "\(down)"])
        }
        return active
    }

    /// Ends supervision and hands back the running dnsmasq's PID (to stop it): after this no
    /// restart happens.
    func endSupervision() -> pid_t? {
        let (task, pid): (Task<Void, Never>?, pid_t?) = lock.withLock {
            supervising = false
            defer { supervisor = nil; dnsmasqPID = nil }
            return (supervisor, dnsmasqPID)
        }
        task?.cancel()
        return pid
    }

    /// A dnsmasq spawned under `lock` becomes the running one; the state file names it (a
    /// crashed visor's successor stops it by that PID, after checking its name).
    private func adoptLocked(_ pid: pid_t) {
        dnsmasqPID = pid
        if let i = entries.lastIndex(where: { $0.key == "dnsmasq_pid" }) { entries[i].value = "\(pid)" }
        else { entries.append(("dnsmasq_pid", "\(pid)")) }
        try? state.save(entries)
    }

    /// New upstream servers after a reconnect (the exit announced others): the DNS fence names
    /// them, and dnsmasq is started again with them. The lease file keeps the LAN's addresses
    /// across the restart. (`--servers-file` + SIGHUP would keep the process, but dnsmasq reads
    /// that file after dropping root, and the state directory is not readable to it.)
    public func updateDNS(_ dns: [IPAddress]) throws {
        guard !dns.isEmpty, lock.withLock({ self.dns }) != dns else { return }
        try NFTables.apply(VPNFirewall.gatewayDNSFence(tun: tun, dns: dns))
        // Taken out of supervision's view while it stops (no PID, no restart due: nothing to do).
        let (active, old): (Bool, pid_t?) = lock.withLock {
            self.dns = dns
            defer { dnsmasqPID = nil }
            return (supervising, dnsmasqPID)
        }
        guard active else { return }
        // Our child, never reaped by anyone else meanwhile: the PID is still ours.
        if let old { Subprocess.terminate(old, expectedName: "dnsmasq") }
        let now = Self.nowMillis()
        let outcome: Result<pid_t, Error>? = lock.withLock {
            // A stop in the meantime ended supervision (and stopped nothing of ours): no start.
            guard supervising, dnsmasqPID == nil else { return nil }
            do {
                let pid = try spawnDNSMasq(dns: dns, lan6: lan6)
                supervision.replaced(at: now)
                adoptLocked(pid)
                return .success(pid)
            } catch {
                _ = supervision.startFailed(at: now, error: "\(error)")
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let pid):
            logger.info("gateway: dnsmasq restarted with new DNS servers", metadata: [
                "dns": "\(dns.map(\.description).joined(separator: ","))", "pid": "\(pid)"])
        case .failure(let error):
            throw VPNError("dnsmasq did not start with the new DNS servers (retried): \(error)")
        case nil:
            break
        }
    }
}
