import SkywireConfig

/// The `update-server` app's options (docs/update.md, "Delivery over the mesh"): the directory
/// served, whom it admits, and its bounds.
public struct UpdateServerOptions: Sendable, Equatable {
    /// `--dir PATH` (required, absolute): the `.raucb` files directly in it are served, read-only.
    public var directory: String = ""
    /// `--whitelist PK,...|any` (repeatable): closed by default (`AppWhitelist`).
    public var whitelist: AppWhitelist = .nobody
    /// `--max-transfers N`: requests served at once, all keys together.
    public var maxTransfers: Int = UpdateServerOptions.defaultMaxTransfers
    /// `--max-per-key N`: requests served at once for one key.
    public var maxPerKey: Int = UpdateServerOptions.defaultMaxPerKey
    /// `--idle-timeout SECONDS`: a request that makes no progress this long (no request sent, a
    /// reader that takes no bytes) is reset.
    public var idleTimeoutSeconds: Int = UpdateServerOptions.defaultIdleTimeoutSeconds

    public static let defaultMaxTransfers = 4
    public static let defaultMaxPerKey = 2
    public static let defaultIdleTimeoutSeconds = 60
    static let maxTransfersLimit = 256
    static let idleTimeoutLimit = 3600
    static let app = AppName.updateServer.rawValue

    public init() {}

    public static func parse(_ arguments: [String]) throws(AppError) -> UpdateServerOptions {
        var options = UpdateServerOptions()
        var whitelists: [String] = []
        let pairs = try AppArguments.pairs(arguments, names: ["--dir", "--whitelist", "-w", "--max-transfers", "--max-per-key", "--idle-timeout"],
                                           app: app, usage: "--dir PATH, --whitelist PK,...|any, --max-transfers N, --max-per-key N, --idle-timeout SECONDS")
        func number(_ name: String, _ value: String, _ range: ClosedRange<Int>) throws(AppError) -> Int {
            guard let n = Int(value), range.contains(n) else {
                throw AppError(.invalidArguments, "\(app): \(name) needs \(range.lowerBound)...\(range.upperBound), got '\(value)'")
            }
            return n
        }
        for (name, v) in pairs {
            switch name {
            case "--dir":
                guard v.hasPrefix("/") else { throw AppError(.invalidArguments, "\(app): --dir needs an absolute path, got '\(v)'") }
                options.directory = v
            case "--max-transfers": options.maxTransfers = try number(name, v, 1...maxTransfersLimit)
            case "--max-per-key": options.maxPerKey = try number(name, v, 1...maxTransfersLimit)
            case "--idle-timeout": options.idleTimeoutSeconds = try number(name, v, 1...idleTimeoutLimit)
            default: whitelists.append(v)
            }
        }
        guard !options.directory.isEmpty else { throw AppError(.invalidArguments, "\(app): --dir PATH is required (the directory of .raucb files served)") }
        do {
            options.whitelist = try AppWhitelist(parsing: whitelists)
        } catch {
            throw AppError(.invalidArguments, "\(app): \(error)")
        }
        return options
    }
}
