/// The `--name value` / `--name=value` scanning the in-process apps' option parsers share
/// (`PtyOptions`, `ChatOptions`): every word must be one of `names`, and each takes a value.
enum AppArguments {
    /// The (name, value) pairs of `arguments`, in order; an unknown name or a missing value is
    /// an `invalidArguments` error naming `app` (and `usage` for an unknown name).
    static func pairs(_ arguments: [String], names: [String], app: String, usage: String) throws(AppError) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        var index = 0
        while index < arguments.count {
            var name = arguments[index]
            var value: String?
            index += 1
            if name.hasPrefix("--"), let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard names.contains(name) else { throw AppError(.invalidArguments, "\(app): unknown argument '\(name)' (\(usage))") }
            if value == nil {
                guard index < arguments.count else { throw AppError(.invalidArguments, "\(app): \(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            out.append((name, value ?? ""))
        }
        return out
    }
}
