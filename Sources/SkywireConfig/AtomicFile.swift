#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one atomic file writer: config files (`VisorConfig.write`) and the VPN apps' state and
/// backup files (`VPNStateFile`, the resolv.conf backup) use it. A reader sees the old file or
/// the new one, never a part; after a crash the new name is on disk (file and directory
/// fsync'd); no temporary file is left behind on any error; a name planted at the temporary
/// path (a symlink) is never followed (random name, O_CREAT|O_EXCL|O_NOFOLLOW).
public enum AtomicFile {
    /// Owner read/write only: the files written this way hold the secret key or system state.
    public static let defaultMode: mode_t = 0o600

    /// Writes `bytes` to `path` with exactly `mode` (the umask does not apply).
    ///
    /// A temporary file in the same directory made with open(O_CREAT|O_EXCL|O_NOFOLLOW), the
    /// bytes written and fsync'd, moved into place, and the directory fsync'd. Without
    /// `replace` an existing file is never replaced: the move is link(2), which fails if the
    /// name exists (on file systems without hard links, a checked rename(2)). With `replace`
    /// it is rename(2).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = defaultMode,
                             replace: Bool) throws(AtomicFileError) {
        let (directory, name) = split(path)
        guard !name.isEmpty, name != ".", name != ".." else {
            throw .io(path: path, operation: "open", errno: EISDIR)
        }
        var st = stat()
        if !replace && lstat(path, &st) == 0 { throw .exists(path: path) }

        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let temp = "\(directory)/.\(name).tmp-\(getpid())-\(suffix)"
        let fd = FileIO.retrying { open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode) }
        guard fd >= 0 else { throw .io(path: directory, operation: "create a temporary file in", errno: errno) }
        var keepTemp = false
        defer { if !keepTemp { _ = unlink(temp) } }

        do throws(AtomicFileError) {
            // The umask may have cleared bits of `mode`; set exactly `mode`.
            guard fchmod(fd, mode) == 0 else { throw .io(path: temp, operation: "fchmod", errno: errno) }
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { b -> Int in
                    guard let base = b.baseAddress else { return 0 }
                    return FileIO.retrying { Glibc.write(fd, base + offset, b.count - offset) }
                }
                guard n > 0 else { throw .io(path: temp, operation: "write", errno: n < 0 ? errno : EIO) }
                offset += n
            }
            guard fsync(fd) == 0 else { throw .io(path: temp, operation: "fsync", errno: errno) }
        } catch {
            _ = close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw .io(path: temp, operation: "close", errno: errno) }

        if replace {
            guard rename(temp, path) == 0 else { throw .io(path: path, operation: "rename into", errno: errno) }
            keepTemp = true  // it is now `path`
        } else if link(temp, path) == 0 {
            // `path` now names the file; the defer removes the temporary name.
        } else {
            let e = errno
            switch e {
            case EEXIST:
                throw .exists(path: path)
            case EPERM, EOPNOTSUPP, ENOSYS, EMLINK:
                // No hard links here (e.g. vfat): fall back to rename after a fresh check.
                if lstat(path, &st) == 0 { throw .exists(path: path) }
                guard rename(temp, path) == 0 else { throw .io(path: path, operation: "rename into", errno: errno) }
                keepTemp = true
            default:
                throw .io(path: path, operation: "link into", errno: e)
            }
        }
        try syncDirectory(directory)
    }

    /// Directory part and last component of `path` (`x.json` → `.`, `x.json`).
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// fsync(2) on the directory so the new name survives a crash.
    static func syncDirectory(_ directory: String) throws(AtomicFileError) {
        let dfd = FileIO.retrying { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard dfd >= 0 else { throw .io(path: directory, operation: "open directory", errno: errno) }
        defer { _ = close(dfd) }
        // Some file systems cannot fsync a directory (EINVAL); the rename itself is done.
        if fsync(dfd) != 0 && errno != EINVAL {
            throw .io(path: directory, operation: "fsync directory", errno: errno)
        }
    }
}

/// Why `AtomicFile.write` did not write.
public enum AtomicFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call on `path` failed; `operation` names it ("cannot <operation> <path>").
    case io(path: String, operation: String, errno: Int32)
    /// Without `replace`, the file was already there.
    case exists(path: String)

    public var description: String {
        switch self {
        case .io(let path, let operation, let errno): "cannot \(operation) \(path): \(String(cString: strerror(errno)))"
        case .exists(let path): "\(path): already exists"
        }
    }
}
