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
        var index = 0
        while index < arguments.count {
            var name = arguments[index]
            var value: String?
            index += 1
            if name.hasPrefix("--"), let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard names.contains(name) else {
                throw AppError(.invalidArguments, "skychat: unknown argument '\(name)' (--whitelist PK,...|any, --rate N)")
            }
            if value == nil {
                guard index < arguments.count else { throw AppError(.invalidArguments, "skychat: \(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            let v = value ?? ""
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
