import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// A local account a session runs as: getpwnam_r(3) and getgrouplist(3), looked up once per session.
public struct SessionUser: Sendable, Equatable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t
    public let home: String
    public let shell: String
    public let groups: [gid_t]

    /// Longest passwd/group record buffer tried (getpwnam_r's ERANGE doubling stops here).
    private static let maxRecordBuffer = 1 << 20
    /// The most supplementary groups kept.
    private static let maxGroups = 1024
    static let fallbackShell = "/bin/sh"

    /// Looks `name` up in the password database; an unknown user is an error naming it.
    public static func lookup(_ name: String) throws -> SessionUser {
        var size = 4096
        while size <= maxRecordBuffer {
            var pwd = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: size)
            let rc = getpwnam_r(name, &pwd, &buffer, size, &result)
            if rc == ERANGE {
                size *= 2
                continue
            }
            guard rc == 0 else { throw SystemError(call: "getpwnam_r(\(name))", errno: rc) }
            guard result != nil else { throw SessionUserError.unknown(name) }
            let shell = pwd.pw_shell.map { String(cString: $0) } ?? ""
            var count = Int32(maxGroups)
            var groups = [gid_t](repeating: 0, count: maxGroups)
            if getgrouplist(name, pwd.pw_gid, &groups, &count) < 0 { count = 0 }
            return SessionUser(name: name, uid: pwd.pw_uid, gid: pwd.pw_gid,
                               home: pwd.pw_dir.map { String(cString: $0) } ?? "/",
                               shell: shell.isEmpty ? fallbackShell : shell,
                               groups: Array(groups.prefix(Int(max(0, count)))))
        }
        throw SystemError(call: "getpwnam_r(\(name))", errno: ERANGE)
    }

    /// Makes the calling thread open files as this user (setfsuid/setfsgid: per thread, so
    /// only a thread of its own may call this). No change when the visor is not root or the
    /// user is root.
    public func actOnFilesAsThisUser() throws {
        guard geteuid() == 0, uid != 0 else { return }
        try syscall("setfsuid(\(name))") { skw_set_thread_fs_ids(uid, gid) }
    }
}

/// A file written beside its final path and renamed over it once complete.
public enum PartialFile {
    /// mkostemp(3) of `path` + `.skw-part-XXXXXX` (close-on-exec): the descriptor and its path.
    public static func create(beside path: String) throws -> (OwnedDescriptor, String) {
        var template = Array((path + ".skw-part-XXXXXX").utf8CString)
        let fd = try template.withUnsafeMutableBufferPointer { buffer in
            try syscall("mkstemp(\(path))") { skw_mkstemp_cloexec(buffer.baseAddress) }
        }
        return (OwnedDescriptor(taking: fd), String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

public enum SessionUserError: Error, CustomStringConvertible, Equatable {
    case unknown(String)
    public var description: String {
        switch self {
        case .unknown(let name): "no user \"\(name)\" on this system"
        }
    }
}

/// How a session's child ended (waitpid(2) status, decoded).
public enum SessionExit: Sendable, Equatable {
    case exited(Int32)
    case signalled(Int32)
}

/// One session's child process: a login shell on a pseudo-terminal (`terminal` given) or a
/// command on three pipes, in its own session and process group (setsid), run as `user`.
/// Spawned by `skw_spawn_session` (fork/exec, async-signal-safe in the child). The caller owns
/// the descriptors and must `reap` the child (the pidfd polls readable when it exits).
public final class SessionProcess: @unchecked Sendable {
    // @unchecked Sendable: confined to the session's thread after `spawn` returns.
    public let pid: pid_t
    /// pidfd_open(2) of the child: readable once it exited.
    public let exitDescriptor: OwnedDescriptor
    /// The pty master (terminal sessions): read the terminal's output, write its input.
    public let terminal: OwnedDescriptor?
    /// Pipe ends (command sessions): write the command's stdin, read its stdout and stderr.
    public let stdinPipe: OwnedDescriptor?
    public let stdoutPipe: OwnedDescriptor?
    public let stderrPipe: OwnedDescriptor?
    public private(set) var exit: SessionExit?

    private init(pid: pid_t, exitDescriptor: OwnedDescriptor, terminal: OwnedDescriptor?, stdinPipe: OwnedDescriptor?,
                 stdoutPipe: OwnedDescriptor?, stderrPipe: OwnedDescriptor?) {
        self.pid = pid
        self.exitDescriptor = exitDescriptor
        self.terminal = terminal
        self.stdinPipe = stdinPipe
        self.stdoutPipe = stdoutPipe
        self.stderrPipe = stderrPipe
    }

    /// A terminal's initial size (rows, columns); 0 leaves the kernel's default.
    public struct WindowSize: Sendable {
        public var rows: UInt16
        public var columns: UInt16
        public init(rows: UInt16, columns: UInt16) {
            self.rows = rows
            self.columns = columns
        }
    }

    /// Spawns `path` with `argv` (argv[0] included) and `environment` as `user` in `user.home`.
    /// With `terminal` the child gets a new pty as its controlling terminal on 0, 1 and 2;
    /// without, three pipes. The ids change only when `user` differs from the visor's.
    public static func spawn(path: String, argv: [String], environment: [String], user: SessionUser,
                             terminal: WindowSize?) throws -> SessionProcess {
        var parentEnds: [OwnedDescriptor] = []
        var childEnds: [OwnedDescriptor] = []
        var master: OwnedDescriptor?
        if let size = terminal {
            var slave: Int32 = -1
            let m = try syscall("posix_openpt") { skw_pty_open(size.rows, size.columns, &slave) }
            master = OwnedDescriptor(taking: m)
            childEnds = [OwnedDescriptor(taking: slave)]
        } else {
            for direction in 0..<3 {
                var fds: [Int32] = [-1, -1]
                try syscall("pipe2") { skw_pipe_cloexec(&fds) }
                let (read, write) = (OwnedDescriptor(taking: fds[0]), OwnedDescriptor(taking: fds[1]))
                // stdin: the child reads; stdout/stderr: the child writes.
                if direction == 0 {
                    childEnds.append(read)
                    parentEnds.append(write)
                } else {
                    childEnds.append(write)
                    parentEnds.append(read)
                }
            }
        }
        defer { for end in childEnds { end.close() } }
        let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgv { free(p) } }
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in cEnv { free(p) } }
        let inFd = childEnds[0].raw
        let outFd = childEnds.count > 1 ? childEnds[1].raw : inFd
        let errFd = childEnds.count > 2 ? childEnds[2].raw : inFd
        let switchIds: Int32 = user.uid == getuid() && user.gid == getgid() ? 0 : 1
        let pid: pid_t = try user.groups.withUnsafeBufferPointer { groups in
            var ids = skw_spawn_ids(set_ids: switchIds, uid: user.uid, gid: user.gid, groups: groups.baseAddress,
                                    group_count: groups.count)
            return try syscall("spawn(\(path))") {
                skw_spawn_session(path, cArgv, cEnv, user.home, &ids, inFd, outFd, errFd, terminal == nil ? 0 : 1)
            }
        }
        let pidfd: Int32
        do {
            pidfd = try syscall("pidfd_open") { skw_pidfd_open(pid) }
        } catch {
            _ = kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            throw error
        }
        for end in parentEnds + [master].compactMap({ $0 }) { try end.setNonBlocking() }
        return SessionProcess(pid: pid, exitDescriptor: OwnedDescriptor(taking: pidfd), terminal: master,
                              stdinPipe: parentEnds.first, stdoutPipe: parentEnds.count > 1 ? parentEnds[1] : nil,
                              stderrPipe: parentEnds.count > 2 ? parentEnds[2] : nil)
    }

    /// kill(2) of the child's whole process group (it leads one: setsid), while it is not reaped.
    public func signalGroup(_ signal: Int32) {
        guard exit == nil else { return }
        if kill(-pid, signal) != 0 { _ = kill(pid, signal) }
    }

    /// waitpid(2) without blocking: the exit once the child ended (kept), nil while it runs.
    @discardableResult
    public func reap() -> SessionExit? {
        if let exit { return exit }
        var status: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &status, WNOHANG) } while r < 0 && errno == EINTR
        guard r == pid else { return nil }
        var signalled: Int32 = 0
        let value = skw_wait_status(status, &signalled)
        guard value >= 0 else { return nil }
        exit = signalled != 0 ? .signalled(value) : .exited(value)
        return exit
    }

    /// eventfd(2), non-blocking: how another thread wakes a session's poll(2).
    public static func makeWakeDescriptor() throws -> OwnedDescriptor {
        OwnedDescriptor(taking: try syscall("eventfd") { skw_eventfd() })
    }

    /// TIOCSWINSZ on the terminal (the kernel sends SIGWINCH to its foreground group).
    public func resize(_ size: WindowSize) {
        guard let terminal, size.rows > 0, size.columns > 0 else { return }
        _ = skw_pty_set_window(terminal.raw, size.rows, size.columns)
    }
}
