import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// Runs a helper program (only `nft`) with posix_spawn(3): bytes on stdin, stdout and stderr
/// collected together, bounded in size.
public enum Subprocess {
    public struct Result: Sendable {
        public var status: Int32
        public var output: String
    }

    static let maxOutput = 1 << 20
    static let readChunk = 4096

    /// Runs `path` with `arguments` (argv[0] is `path`) and waits for it to exit.
    public static func run(_ path: String, _ arguments: [String], stdin input: [UInt8] = []) throws -> Result {
        BlockingPool.assertMayBlock("\(path) (waitpid)")
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
        try syscall("pipe") { skw_pipe_cloexec(&inPipe) }
        let inRead = OwnedDescriptor(taking: inPipe[0]), inWrite = OwnedDescriptor(taking: inPipe[1])
        try syscall("pipe") { skw_pipe_cloexec(&outPipe) }
        let outRead = OwnedDescriptor(taking: outPipe[0]), outWrite = OwnedDescriptor(taking: outPipe[1])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inRead.raw, STDIN_FILENO)
        posix_spawn_file_actions_adddup2(&actions, outWrite.raw, STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, outWrite.raw, STDERR_FILENO)

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for p in envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw SystemError(call: "posix_spawn(\(path))", errno: rc) }
        inRead.close()
        outWrite.close()

        // The inputs are small (a ruleset), well below the pipe buffer, so write then read.
        var written = 0
        while written < input.count {
            let n = input.withUnsafeBytes { Glibc.write(inWrite.raw, $0.baseAddress! + written, $0.count - written) }
            if n < 0 { if errno == EINTR { continue }; break }
            written += n
        }
        inWrite.close()

        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: readChunk)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(outRead.raw, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { break }
            if output.count < maxOutput { output += chunk[0..<n] }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS by hand (they are macros).
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code, output: String(decoding: output, as: UTF8.self))
    }
}

/// nftables through `nft -f -`: every change is one atomic ruleset transaction.
public enum NFTables {
    /// Where Debian puts nft (installed by scripts/install-deps.sh).
    static let candidates = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { message }
    }

    static func binary() throws -> String {
        guard let path = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw Failure(message: "nft not found (install nftables: scripts/install-deps.sh)")
        }
        return path
    }

    /// Applies `script` atomically (`nft -f -`); the whole transaction fails or succeeds.
    public static func apply(_ script: String) throws {
        let r = try Subprocess.run(try binary(), ["-f", "-"], stdin: Array(script.utf8))
        guard r.status == 0 else {
            throw Failure(message: "nft -f - failed (exit \(r.status)): \(r.output.trimmingASCIIWhitespace)")
        }
    }

    /// Deletes a table if it exists (creating an empty one first makes the delete always valid,
    /// in the same transaction).
    public static func deleteTable(family: String, name: String) throws {
        try apply("table \(family) \(name) {}\ndelete table \(family) \(name)\n")
    }

    /// `nft list table FAMILY NAME`, or nil when the table does not exist.
    public static func listTable(family: String, name: String) throws -> String? {
        let r = try Subprocess.run(try binary(), ["list", "table", family, name])
        return r.status == 0 ? r.output : nil
    }

    /// `nft list ruleset`.
    public static func listRuleset() throws -> String {
        let r = try Subprocess.run(try binary(), ["list", "ruleset"])
        guard r.status == 0 else { throw Failure(message: "nft list ruleset failed: \(r.output)") }
        return r.output
    }
}
