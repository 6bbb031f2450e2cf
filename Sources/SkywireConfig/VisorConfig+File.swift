#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension VisorConfig {
    /// Mode of a written config: owner read/write only (it holds `sk`).
    public static let fileMode: mode_t = 0o600
    /// Permission bits that must be clear on a config file (group and other), as ssh
    /// requires of private key files.
    public static let forbiddenModeBits: mode_t = 0o077

    /// Reads, checks and validates a config file.
    ///
    /// Refuses a file that is not a regular file, that group or others may access
    /// (`mode & 0o077 != 0`), that belongs to a user other than the effective user or root,
    /// or that is larger than `maxFileBytes`; then parses and validates it (see `parse`).
    public static func load(path: String) throws(ConfigError) -> VisorConfig {
        try parse(bytes: readFile(path: path))
    }

    /// The checked bytes of a config file (all the checks of `load` except parsing).
    static func readFile(path: String) throws(ConfigError) -> [UInt8] {
        try readPrivateFile(path: path, limit: maxFileBytes)
    }

    /// The bytes of a file that holds the secret key, at most `limit` of them.
    ///
    /// Refuses a file that is not a regular file, that group or others may access
    /// (`mode & 0o077 != 0`), that belongs to a user other than the effective user or root,
    /// or that is larger than `limit`.
    static func readPrivateFile(path: String, limit: Int) throws(ConfigError) -> [UInt8] {
        let fd = FileIO.retrying { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        defer { _ = close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, operation: "fstat", errno: errno) }
        guard st.st_mode & FileIO.fileTypeMask == FileIO.regularFileType else { throw .notRegularFile(path: path) }
        guard st.st_mode & forbiddenModeBits == 0 else {
            throw .insecureMode(path: path, mode: UInt32(st.st_mode & FileIO.permissionMask))
        }
        guard st.st_uid == geteuid() || st.st_uid == FileIO.rootUID else {
            throw .insecureOwner(path: path, uid: UInt32(st.st_uid))
        }
        guard Int(st.st_size) <= limit else {
            throw .tooLarge(path: path, size: Int(st.st_size), limit: limit)
        }
        return try FileIO.readAll(fd: fd, path: path, limit: limit)
    }

    /// Largest secret key file `secretKeyHex(file:)` reads: the 128 hex digits and some
    /// whitespace around them.
    public static let maxSecretKeyFileBytes = 4096
    /// The `file` argument of `secretKeyHex(file:)` that means standard input.
    public static let standardInputName = "-"

    /// The secret key hex held in `file` (`skywire config gen --sk-file`), or read from standard
    /// input when `file` is `-`, with surrounding ASCII whitespace removed.
    ///
    /// A file gets the checks of `load` (regular, mode 0600 or stricter, owned by this user or
    /// root) and at most `maxSecretKeyFileBytes`; standard input the size bound only. So the
    /// key never has to be on a command line, where `/proc/<pid>/cmdline` shows it to every
    /// local user. The hex itself is checked by `keyPair(secretKeyHex:)`.
    public static func secretKeyHex(file: String) throws(ConfigError) -> String {
        let bytes: [UInt8]
        if file == standardInputName {
            bytes = try FileIO.readAll(fd: STDIN_FILENO, path: "standard input", limit: maxSecretKeyFileBytes)
        } else {
            bytes = try readPrivateFile(path: file, limit: maxSecretKeyFileBytes)
        }
        let isSpace: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t")
            || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
              let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// Writes the config atomically with mode 0600.
    ///
    /// Validates first (a config `load` would reject is never written). Then: a temporary file
    /// in the same directory made with open(O_CREAT|O_EXCL, 0600), the text written and
    /// fsync'd, moved into place, and the directory fsync'd. Without `force` an existing file
    /// is never replaced: the move is link(2), which fails if the name exists (on file systems
    /// without hard links, a checked rename(2)). With `force` it is rename(2). No temporary
    /// file is left behind on any error.
    public func write(to path: String, force: Bool = false) throws(ConfigError) {
        let problems = validate()
        guard problems.isEmpty else { throw .invalid(problems) }
        do throws(AtomicFileError) {
            try AtomicFile.write(Array(jsonText().utf8), to: path, mode: VisorConfig.fileMode, replace: force)
        } catch {
            switch error {
            case .exists(let path): throw .exists(path: path)
            case .io(let path, let operation, let errno): throw .io(path: path, operation: operation, errno: errno)
            }
        }
    }
}

/// POSIX file helpers for config files.
enum FileIO {
    static let fileTypeMask: mode_t = 0o170000  // S_IFMT
    static let regularFileType: mode_t = 0o100000  // S_IFREG
    static let permissionMask: mode_t = 0o7777
    static let rootUID: uid_t = 0
    static let readChunk = 16 * 1024

    /// Repeats a system call while it fails with EINTR.
    static func retrying<T: BinaryInteger>(_ call: () -> T) -> T {
        while true {
            let r = call()
            if r >= 0 || errno != EINTR { return r }
        }
    }

    /// Everything readable from `fd` up to end of file; `.tooLarge` once more than `limit`
    /// bytes came (at most one chunk is read past the limit, in case a file grew after fstat).
    static func readAll(fd: Int32, path: String, limit: Int) throws(ConfigError) -> [UInt8] {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: readChunk)
        while out.count <= limit {
            let n = buffer.withUnsafeMutableBytes { b in retrying { read(fd, b.baseAddress, b.count) } }
            if n < 0 { throw .io(path: path, operation: "read", errno: errno) }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        guard out.count <= limit else { throw .tooLarge(path: path, size: out.count, limit: limit) }
        return out
    }
}
