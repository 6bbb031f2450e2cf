import SkywireConfig

/// The `pty` app's options (docs/pty.md, "Arguments"): whom it admits and as whom it runs.
public struct PtyOptions: Sendable, Equatable {
    /// `--whitelist PK,...|any` (repeatable): closed by default (`AppWhitelist`).
    public var whitelist: AppWhitelist = .nobody
    /// `--user NAME`: the account shells, commands and copies run as.
    public var user: String = PtyOptions.defaultUser
    /// `--max-sessions N`: sessions at once; more are refused (each is a process and a thread).
    public var maxSessions: Int = PtyOptions.defaultMaxSessions
    /// `--session-host PATH`: sessions run in `skywire pty-host` behind this unix socket
    /// (boards: outside the visor's sandbox); nil: in the visor's own children.
    public var sessionHost: String?

    public static let defaultUser = "root"
    public static let defaultMaxSessions = 16
    static let maxSessionsLimit = 1024

    public init() {}

    /// Parses `--whitelist`/`-w`, `--user`, `--max-sessions` (`--name value` or `--name=value`).
    public static func parse(_ arguments: [String]) throws(AppError) -> PtyOptions {
        var options = PtyOptions()
        var whitelists: [String] = []
        let pairs = try AppArguments.pairs(arguments, names: ["--whitelist", "-w", "--user", "--max-sessions", "--session-host"], app: "pty",
                                           usage: "--whitelist PK,...|any, --user NAME, --max-sessions N, --session-host PATH")
        for (name, v) in pairs {
            switch name {
            case "--user":
                guard !v.isEmpty, !v.contains("/"), !v.contains(":") else { throw AppError(.invalidArguments, "pty: --user '\(v)' is not a user name") }
                options.user = v
            case "--max-sessions":
                guard let n = Int(v), (1...maxSessionsLimit).contains(n) else {
                    throw AppError(.invalidArguments, "pty: --max-sessions needs 1...\(maxSessionsLimit), got '\(v)'")
                }
                options.maxSessions = n
            case "--session-host":
                guard v.hasPrefix("/") else { throw AppError(.invalidArguments, "pty: --session-host needs an absolute socket path, got '\(v)'") }
                options.sessionHost = v
            default:
                whitelists.append(v)
            }
        }
        do {
            options.whitelist = try AppWhitelist(parsing: whitelists)
        } catch {
            throw AppError(.invalidArguments, "pty: \(error)")
        }
        return options
    }

    /// The argument form `apps ls` shows.
    public var arguments: [String] {
        var out: [String] = []
        switch whitelist {
        case .anyone: out += [AppWhitelist.option, AppWhitelist.anyToken]
        case .keys(let keys) where !keys.isEmpty: out += [AppWhitelist.option, whitelist.sortedKeys.map(\.hex).joined(separator: ",")]
        case .keys: break
        }
        if user != Self.defaultUser { out += ["--user", user] }
        if maxSessions != Self.defaultMaxSessions { out += ["--max-sessions", String(maxSessions)] }
        if let sessionHost { out += ["--session-host", sessionHost] }
        return out
    }
}
