#if canImport(Glibc)
import Glibc
#endif

extension Subprocess {
    /// Replaces this process with `path` (execv(3)), keeping stdin, stdout, stderr and the
    /// environment: the program's output (rauc's progress) goes straight to the terminal and its
    /// exit status is the command's. Returns only by throwing, when execv fails.
    public static func replaceProcess(_ path: String, _ arguments: [String]) throws -> Never {
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        execv(path, argv)
        throw SystemError(call: "execv(\(path))", errno: errno)
    }
}
