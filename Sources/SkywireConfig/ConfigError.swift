#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thing wrong with a config, named by its JSON path, e.g.
/// `launcher.apps[2].port: 99999 is not in 1...65535`.
public struct FieldProblem: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// JSON path: `pk`, `transport.stcpr_port`, `launcher.apps[2].port`,
    /// `transport.peers["<key>"].stcpr`; `(root)` for the document itself.
    public var path: String
    /// What is wrong, e.g. `not a 64-hex public key`.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Why a config could not be read, parsed, validated or written.
public enum ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call on `path` failed; `operation` names it so that "cannot <operation> <path>"
    /// reads well (open, read, rename to, ...).
    case io(path: String, operation: String, errno: Int32)
    /// The path is not a regular file (a directory, a device, ...).
    case notRegularFile(path: String)
    /// The file is larger than its limit (`VisorConfig.maxFileBytes` for a config,
    /// `VisorConfig.maxSecretKeyFileBytes` for a secret key file).
    case tooLarge(path: String, size: Int, limit: Int)
    /// The file holds the secret key but group or others may access it (like ssh, we refuse).
    case insecureMode(path: String, mode: UInt32)
    /// The file belongs to a user other than the one running the visor or root.
    case insecureOwner(path: String, uid: UInt32)
    /// The text is not JSON (RFC 8259); 1-based line and column.
    case syntax(line: Int, column: Int, message: String)
    /// The JSON is well-formed but wrong: every problem found, in document order.
    case invalid([FieldProblem])
    /// `write(to:force:)` without `force` found the file already there.
    case exists(path: String)

    /// The process exit status for a config that cannot be used (`skywire config check`,
    /// `skywire visor`).
    public static let exitCode: Int32 = 2

    /// Every problem, one per line.
    public var description: String {
        switch self {
        case .io(let path, let operation, let errno):
            return "cannot \(operation) \(path): \(String(cString: strerror(errno)))"
        case .notRegularFile(let path):
            return "\(path): not a regular file"
        case .tooLarge(let path, let size, let limit):
            return "\(path): \(size) bytes is larger than the \(limit)-byte limit for this file"
        case .insecureMode(let path, let mode):
            return "\(path): mode \(Self.octal(mode)) lets group or others access the secret key; "
                + "run 'chmod 600 \(path)'"
        case .insecureOwner(let path, let uid):
            return "\(path): owned by uid \(uid), not by this user or root; "
                + "another user could replace the identity or peers"
        case .syntax(let line, let column, let message):
            return "line \(line), column \(column): \(message)"
        case .invalid(let problems):
            return problems.map(\.description).joined(separator: "\n")
        case .exists(let path):
            return "\(path): already exists; refusing to overwrite it (use --force to replace it)"
        }
    }

    /// A message for people about the config file `file`: the file name, then every problem
    /// on its own indented line (for `.invalid`), or the one-line description.
    public func report(file: String) -> String {
        switch self {
        case .syntax:
            return "\(file): not valid JSON: \(description)"
        case .invalid(let problems):
            let header = "\(file): \(problems.count) problem\(problems.count == 1 ? "" : "s"):"
            return ([header] + problems.map { "  \($0)" }).joined(separator: "\n")
        default:
            return description
        }
    }

    /// Permission bits as four octal digits, e.g. `0644`.
    static func octal(_ mode: UInt32) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
