import SkywireCrypto

/// Which remote visors an app that serves other visors admits: its `--whitelist`. Closed by
/// default: a missing or empty `--whitelist` admits nobody; every key needs the explicit
/// `--whitelist any`. One type for every such app (vpn-server, skysocks, and later skychat, pty,
/// skynet), parsed once from the app's arguments (docs/config.md, "Whitelists").
public enum AppWhitelist: Sendable, Equatable {
    /// Only these visors. Empty: nobody (the default).
    case keys(Set<PublicKey>)
    /// Every visor key (`--whitelist any`): an exit open to anyone who can reach this visor.
    case anyone

    /// The value that opens an app to every key.
    public static let anyToken = "any"
    /// The default: refuses every key.
    public static let nobody = AppWhitelist.keys([])
    /// The option's name, as apps spell it (`-w` is its short form).
    public static let option = "--whitelist"

    /// Parses every `--whitelist` value given to one app (the option may be repeated). Each value
    /// is a comma-separated list of visor public keys (64 hex characters; spaces around items and
    /// upper case are accepted), or `any` alone. No value, or only empty ones: nobody.
    /// A malformed key is an error, never skipped: a list that lost its keys must not start
    /// anything an operator believes is restricted. `any` together with keys is an error too.
    public init(parsing values: [String], option: String = AppWhitelist.option) throws(AppWhitelistError) {
        var keys = Set<PublicKey>()
        var anyone = false
        for value in values {
            for raw in value.split(separator: ",", omittingEmptySubsequences: true) {
                let item = String(raw.filter { $0 != " " && $0 != "\t" })
                if item.isEmpty { continue }
                if item == Self.anyToken {
                    anyone = true
                    continue
                }
                guard let key = try? PublicKey(hex: item.lowercased()) else {
                    throw AppWhitelistError("\(option): \"\(item)\" is not a visor public key (64 hex characters of an "
                                            + "Ed25519 key); list keys, or \"\(Self.anyToken)\" alone for every key")
                }
                keys.insert(key)
            }
        }
        if anyone {
            guard keys.isEmpty else {
                throw AppWhitelistError("\(option): \"\(Self.anyToken)\" admits every key and cannot be combined with "
                                        + "keys (\(keys.count) given): use either \"\(Self.anyToken)\" or the keys")
            }
            self = .anyone
        } else {
            self = .keys(keys)
        }
    }

    /// Whether `key` may use the app.
    public func admits(_ key: PublicKey) -> Bool {
        switch self {
        case .anyone: true
        case .keys(let keys): keys.contains(key)
        }
    }

    /// True when the app refuses every key.
    public var admitsNobody: Bool { self == .nobody }

    /// The listed keys in hex order (empty for `nobody` and `anyone`).
    public var sortedKeys: [PublicKey] {
        switch self {
        case .anyone: []
        case .keys(let keys): keys.sorted { $0.hex < $1.hex }
        }
    }

    /// `closed`, `listed` or `open`: the `access` field of `apps ls --json` (docs/cli.md).
    public var access: String {
        switch self {
        case .anyone: "open"
        case .keys(let keys): keys.isEmpty ? "closed" : "listed"
        }
    }

    /// A short summary for `apps ls` and log metadata: `refuses every key (whitelist empty)`,
    /// `open to every key (whitelist any)` or `2 keys whitelisted`.
    public var summary: String {
        switch self {
        case .anyone: "open to every key (whitelist \(Self.anyToken))"
        case .keys(let keys) where keys.isEmpty: "refuses every key (whitelist empty)"
        case .keys(let keys): "\(keys.count) key\(keys.count == 1 ? "" : "s") whitelisted"
        }
    }

    /// What an operator must be told when `app` starts or its config is checked: nil when keys
    /// are listed, else a plain sentence (closed: how to open it; open: that it is).
    public func notice(app: String) -> String? {
        switch self {
        case .keys(let keys) where !keys.isEmpty:
            nil
        case .keys:
            "\(app): whitelist empty: refuses every key; use \(Self.option) PK,... or \(Self.option) \(Self.anyToken)"
        case .anyone:
            "\(app): whitelist \(Self.anyToken): open to every visor key"
        }
    }

    /// The whitelist as checked per stream against a remote key in hex (`AppStream.remoteKeyHex`),
    /// built once: a set lookup, no key decoding per stream.
    public var hexIndex: HexIndex { HexIndex(self) }

    public struct HexIndex: Sendable {
        /// Nil: every key.
        private let hexKeys: Set<String>?

        init(_ whitelist: AppWhitelist) {
            switch whitelist {
            case .anyone: hexKeys = nil
            case .keys(let keys): hexKeys = Set(keys.map(\.hex))
            }
        }

        /// `hex`: 64 lowercase hex characters.
        public func admits(_ hex: String) -> Bool { hexKeys?.contains(hex) ?? true }
    }
}

/// A `--whitelist` value that cannot be used, with a message fit for the user.
public struct AppWhitelistError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
