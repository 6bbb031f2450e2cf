#if canImport(Glibc)
import Glibc
#endif

/// Small whole-file helpers for state files, /proc/sys and /etc/resolv.conf (no Foundation).
/// Files that must be replaced atomically are written with SkywireConfig's `AtomicFile`.
public enum FileIO {
    static let readChunk = 4096

    /// The whole file; nil when it does not exist.
    public static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError(call: "open(\(path))", errno: errno)
        }
        let owned = OwnedDescriptor(taking: fd)
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: readChunk)
        while true {
            let n = try syscall("read(\(path))") { chunk.withUnsafeMutableBytes { Glibc.read(owned.raw, $0.baseAddress, $0.count) } }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    /// Writes `bytes` into the file in place (O_TRUNC, no rename), so bind mounts such as
    /// `ip netns exec`'s /etc/resolv.conf keep working. Creates it with `mode` if missing.
    public static func overwrite(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = try syscall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
        let owned = OwnedDescriptor(taking: fd)
        var done = 0
        while done < bytes.count {
            let n = try syscall("write(\(path))") {
                bytes.withUnsafeBytes { Glibc.write(owned.raw, $0.baseAddress! + done, $0.count - done) }
            }
            done += n
        }
    }

    /// unlink(2); a missing file is not an error.
    public static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw SystemError(call: "unlink(\(path))", errno: errno) }
    }

    /// mkdir -p with `mode` for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError(call: "mkdir(\(current))", errno: errno)
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}

/// `/proc/sys` access (sysctl(8) without the binary): `net.ipv4.ip_forward` and friends.
public enum Sysctl {
    static func path(_ key: String) -> String {
        "/proc/sys/" + key.split(separator: ".").joined(separator: "/")
    }

    /// The value with surrounding whitespace removed.
    public static func read(_ key: String) throws -> String {
        guard let bytes = try FileIO.read(path(key)) else {
            throw SystemError(call: "sysctl \(key)", errno: ENOENT)
        }
        return String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace
    }

    public static func write(_ key: String, _ value: String) throws {
        try FileIO.overwrite(path(key), Array((value + "\n").utf8))
    }

    /// Whether this process may write `key` (access(2) with W_OK): false on a read-only /proc/sys,
    /// as under systemd's ProtectKernelTunables without a ReadWritePaths= for it, or in a container.
    /// The error names the call and errno.
    public static func checkWritable(_ key: String) throws {
        guard access(path(key), W_OK) == 0 else { throw SystemError(call: "access(\(path(key)), W_OK)", errno: errno) }
    }
}

extension String {
    var trimmingASCIIWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
