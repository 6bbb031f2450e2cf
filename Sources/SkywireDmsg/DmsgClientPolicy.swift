import SkywireCrypto

/// Which client keys a relay serves (`skywire-dmsg --clients` / `--clients-file`, docs/dmsg.md).
/// Closed by default: the empty list serves nobody; `any` (a public relay) must be said.
public enum DmsgClientPolicy: Equatable, Sendable {
    case any
    case keys(Set<PublicKey>)

    /// The word that means every key.
    public static let anyWord = "any"
    /// Keys at most in one list (a file's lines are bounded by this too).
    public static let maxKeys = 100_000

    public static let nobody = DmsgClientPolicy.keys([])

    public func admits(_ key: PublicKey) -> Bool {
        switch self {
        case .any: true
        case .keys(let set): set.contains(key)
        }
    }

    /// For logs and `/health`: "any" or the number of keys.
    public var summary: String {
        switch self {
        case .any: Self.anyWord
        case .keys(let set): "\(set.count) listed key\(set.count == 1 ? "" : "s")"
        }
    }

    /// Both lists' keys; `any` in either wins.
    public func union(_ other: DmsgClientPolicy) -> DmsgClientPolicy {
        switch (self, other) {
        case (.any, _), (_, .any): .any
        case (.keys(let a), .keys(let b)): .keys(a.union(b))
        }
    }

    /// Why a client list does not parse.
    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        /// Item `index` (1-based: the list's position or the file's line) is not a key.
        case badKey(index: Int, text: String)
        case tooMany(Int)

        public var description: String {
            switch self {
            case .badKey(let index, let text): "item \(index) \"\(text.prefix(80))\" is not a public key (64 hex characters) nor \"any\""
            case .tooMany(let n): "more than \(n) keys"
            }
        }
    }

    /// `--clients`: comma-separated keys, or `any`. Blank items are skipped (so "" is nobody).
    public static func parse(list: String) throws(ParseError) -> DmsgClientPolicy {
        try parse(items: list.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
    }

    /// `--clients-file`: one key (or `any`) per line; blank lines and `#` comments skipped.
    public static func parse(file text: String) throws(ParseError) -> DmsgClientPolicy {
        try parse(items: text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(line.prefix { $0 != "#" })
        })
    }

    private static func parse(items: [String]) throws(ParseError) -> DmsgClientPolicy {
        var keys = Set<PublicKey>()
        var any = false
        for (offset, raw) in items.enumerated() {
            let item = String(raw.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
            if item.isEmpty { continue }
            if item == anyWord { any = true; continue }
            guard let key = try? PublicKey(hex: item.lowercased()) else { throw .badKey(index: offset + 1, text: item) }
            keys.insert(key)
            guard keys.count <= maxKeys else { throw .tooMany(maxKeys) }
        }
        return any ? .any : .keys(keys)
    }
}
