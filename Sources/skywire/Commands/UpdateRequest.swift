/// What `skywire cli update apply` installs (docs/update.md), parsed once at the edge: a bundle
/// file on this board or an http(s) URL that rauc streams. Pure: no file system access.
enum UpdateSource: Equatable {
    case file(String)
    case url(String)

    /// Longest URL or path accepted (rauc and the kernel take far longer; this bounds what we pass).
    static let maxLength = 4096
    static let urlSchemes = ["http://", "https://"]

    /// What ends a URL scheme (RFC 3986 §3).
    static let schemeSeparator = "://"

    static func parse(_ argument: String) throws(UpdateRequestError) -> UpdateSource {
        guard !argument.isEmpty else { throw .empty }
        guard argument.utf8.count <= maxLength else { throw .tooLong(argument.utf8.count) }
        guard !argument.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else { throw .controlCharacter }
        let lower = argument.lowercased()
        if let scheme = urlSchemes.first(where: { lower.hasPrefix($0) }) {
            let rest = argument.dropFirst(scheme.count)
            let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            guard !host.isEmpty, !argument.contains(" ") else { throw .badURL(argument) }
            return .url(argument)
        }
        // Stdlib only: `firstRange(of:)` would link _StringProcessing (~0.95 MB, docs/cross-compiling.md).
        if let colon = lower.indices.first(where: { lower[$0...].hasPrefix(Self.schemeSeparator) }) {
            throw .unsupportedScheme(String(lower[..<colon]))
        }
        return .file(argument)
    }

    /// rauc's argument: the URL, or the file's path.
    var raucArgument: String {
        switch self {
        case .file(let p): p
        case .url(let u): u
        }
    }
}

enum UpdateRequestError: Error, Equatable, CustomStringConvertible {
    case empty
    case tooLong(Int)
    case controlCharacter
    case badURL(String)
    case unsupportedScheme(String)

    var description: String {
        switch self {
        case .empty: "no bundle given: a .raucb file on this board or an http(s):// URL"
        case .tooLong(let n): "the bundle path or URL is \(n) bytes, longer than \(UpdateSource.maxLength)"
        case .controlCharacter: "the bundle path or URL contains a control character"
        case .badURL(let u): "'\(u)' is not an http(s) URL with a host"
        case .unsupportedScheme(let s): "URL scheme '\(s)' is not supported: a file on this board, http:// or https://"
        }
    }
}

/// `skywire cli update status`: the running image and the last update's outcome, from
/// /etc/skywire/image-release, /proc/cmdline and /var/lib/skywire/update-status.json. Pure.
struct UpdateStatusReport: Equatable {
    var board: String?
    var version: String?
    /// A or B; nil on an image without A/B slots.
    var slot: String?
    /// The status file's fields (state, slot, version, reason, ...), as strings.
    var last: [String: String]

    /// `KEY=value` lines of image-release; `rauc.slot=` of the kernel command line.
    static func parse(imageRelease: String, cmdline: String, lastUpdate: [String: String]) -> UpdateStatusReport {
        var fields: [String: String] = [:]
        for line in imageRelease.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        let slot = cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" })
            .first { $0.hasPrefix("rauc.slot=") }
            .map { String($0.dropFirst("rauc.slot=".count)) }
        return UpdateStatusReport(board: fields["BOARD"], version: fields["VERSION"], slot: slot, last: lastUpdate)
    }

    /// One line per fact, for people.
    var lines: [String] {
        var out = ["board    \(board ?? "unknown")", "version  \(version ?? "unknown")",
                   "slot     \(slot ?? "none (this image has no A/B slots)")"]
        if last.isEmpty {
            out.append("last     no update installed")
        } else {
            let what = [last["state"], last["version"].map { "version \($0)" }, last["slot"].map { "slot \($0)" }]
                .compactMap { $0 }.joined(separator: ", ")
            out.append("last     \(what)" + (last["reason"].map { ": \($0)" } ?? ""))
        }
        return out
    }
}
