import SkywireConfig

/// The `skychat` app's options (docs/skychat.md, "Arguments"): whom it admits and how fast.
public struct ChatOptions: Sendable, Equatable {
    /// `--whitelist PK,...|any` (repeatable): the senders admitted besides `skychat allow`; closed by default.
    public var whitelist: AppWhitelist = .nobody
    /// `--rate N`: messages a minute each sender may deliver (a burst of `burst` first); more are answered "retry later".
    public var ratePerMinute: Int = ChatOptions.defaultRatePerMinute

    public static let defaultRatePerMinute = 60
    static let rateRange = 1...6000
    static let names = ["--whitelist", "-w", "--rate"]

    public init() {}

    /// Parses `--whitelist`/`-w` and `--rate` (`--name value` or `--name=value`).
    public static func parse(_ arguments: [String]) throws(AppError) -> ChatOptions {
        var options = ChatOptions()
        var whitelists: [String] = []
        for (name, v) in try AppArguments.pairs(arguments, names: names, app: "skychat", usage: "--whitelist PK,...|any, --rate N") {
            if name == "--rate" {
                guard let n = Int(v), rateRange.contains(n) else {
                    throw AppError(.invalidArguments, "skychat: --rate needs \(rateRange.lowerBound)...\(rateRange.upperBound) messages a minute, got '\(v)'")
                }
                options.ratePerMinute = n
            } else {
                whitelists.append(v)
            }
        }
        do {
            options.whitelist = try AppWhitelist(parsing: whitelists)
        } catch {
            throw AppError(.invalidArguments, "skychat: \(error)")
        }
        return options
    }
}
