import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// Long-running helpers (the gateway's dnsmasq): started with posix_spawn(3), stopped by PID.
extension Subprocess {
    /// Starts `path` in the background with stdin on /dev/null and stdout/stderr appended to
    /// `logPath`. Signals the visor ignores or handles (SIGTERM, SIGINT, SIGHUP, SIGPIPE) are
    /// reset to their defaults in the child and its signal mask is cleared, so it can be stopped.
    public static func spawn(_ path: String, _ arguments: [String], logPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t(), empty = sigset_t()
        sigemptyset(&defaults)
        sigemptyset(&empty)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for p in envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw SystemError(call: "posix_spawn(\(path))", errno: rc) }
        return pid
    }

    /// Whether our child `pid` has exited (reaps it); false while it runs.
    public static func hasExited(_ pid: pid_t) -> Bool {
        reap(pid) != nil
    }

    /// How our child `pid` ended (`exit 2`, `killed by signal 9`), reaping it, or nil while it
    /// runs. A PID that is not (or no longer) our child counts as ended (`gone`).
    public static func reap(_ pid: pid_t) -> String? {
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
        if r == 0 { return nil }
        if r != pid { return "gone" }
        return describe(waitStatus: status)
    }

    /// A waitpid(2) status in words (WIFEXITED / WTERMSIG by hand: they are macros).
    public static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exit \((status >> 8) & 0xff)" }
        return "killed by signal \(signal)"
    }

    /// Stops `pid` with SIGTERM, then SIGKILL after `graceMillis`, and reaps it when it is our
    /// child. Only a process whose /proc/PID/comm is `expectedName` is signalled (a PID from a
    /// state file may have been reused).
    public static func terminate(_ pid: pid_t, expectedName: String, graceMillis: Int = 2000) {
        BlockingPool.assertMayBlock("stopping \(expectedName) (waitpid)")
        guard pid > 1, processName(pid) == expectedName else { return }
        kill(pid, SIGTERM)
        var waited = 0
        while waited < graceMillis {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return }
            // Not our child (a previous run's): poll for it to disappear.
            if r < 0 && errno == ECHILD && processName(pid) != expectedName { return }
            usleep(20_000)
            waited += 20
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    /// `/proc/PID/comm` without the newline, or nil when there is no such process. A zombie
    /// still has its name, so this is checked together with waitpid above.
    public static func processName(_ pid: pid_t) -> String? {
        guard let bytes = try? FileIO.read("/proc/\(pid)/comm") else { return nil }
        let name = String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace
        if let stat = try? FileIO.read("/proc/\(pid)/stat"),
           let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count, stat[close + 2] == UInt8(ascii: "Z") {
            return nil
        }
        return name
    }
}
