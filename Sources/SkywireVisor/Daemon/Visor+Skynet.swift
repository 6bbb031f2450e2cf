import SkywireConfig
import SkywireCrypto
import SkywireSocks

extension VisorOptions {
    /// `specs` with a `skynet` entry (port 57, not auto-started) when the config has none, so
    /// `skywire cli skynet ...` and `resolver ...` work on every visor (docs/skynet.md).
    static func withSkynet(_ specs: [AppSpec]) -> [AppSpec] { withEntry(.skynet, specs) }

    /// `specs` with an entry for `name` on its default port, not auto-started, when there is none.
    static func withEntry(_ name: AppName, _ specs: [AppSpec]) -> [AppSpec] {
        guard !specs.contains(where: { $0.name == name.rawValue }) else { return specs }
        return specs + [AppSpec(name: name.rawValue, args: [], autoStart: false, port: name.defaultPort)]
    }
}

extension Visor {
    /// `skynet.*` and `resolver.*` (docs/skynet.md, docs/cli.md): forwards and the resolver of
    /// the `skynet` app, which the first start starts (without config forwards when it was stopped).
    func skynetControl(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        switch method {
        case "skynet.srv.status":
            return .array(runningSkynet()?.serverRows ?? [])
        case "skynet.status":
            return .array(runningSkynet()?.clientRows ?? [])
        case "resolver.status":
            return runningSkynet()?.resolverRow ?? .null
        case "skynet.srv.start":
            let words = try Self.words(params, ["port", "name", "target", "wl"])
            let forward = try Self.parsed { () throws(SkysocksArgumentError) in try SkynetServerForward.parse(words) }
            try await skynet().addServer(forward)
            return (runningSkynet()?.serverRows ?? []).first { $0["name"]?.stringValue == forward.name } ?? .null
        case "skynet.srv.stop":
            let name = try params.optionalString("name"), port = try params.optionalInt("port")
            guard (name == nil) != (port == nil) else { throw ControlError(.badRequest, "give either \"name\" or \"port\"") }
            let removed = runningSkynet()?.server.remove { f in name.map { f.name == $0 } ?? (Int64(f.port) == port) } ?? 0
            guard removed > 0 else { throw ControlError(.notFound, "no exposed port \(name.map { "named \"\($0)\"" } ?? "\(port ?? 0)")") }
            return .object([:])
        case "skynet.start":
            let words = try Self.words(params, ["pk", "remote", "local", "bind", "name"])
            let forward = try Self.parsed { () throws(SkysocksArgumentError) in try SkynetClientForward.parse(words) }
            try await ensureTransport(to: Self.publicKey(forward.serverKeyHex), timeout: params.optionalInt("timeout") ?? 20)
            try await skynet().addClient(forward)
            return (runningSkynet()?.clientRows ?? []).first { $0["name"]?.stringValue == forward.name } ?? .null
        case "skynet.stop":
            let name = try params.requiredString("name")
            guard await runningSkynet()?.removeClient(named: name) == true else { throw ControlError(.notFound, "no forward named \"\(name)\"") }
            return .object([:])
        case "resolver.up":
            let words = try Self.words(params, ["addr", "upstream"])
            let options = try Self.parsed { () throws(SkysocksArgumentError) in try SkynetResolverOptions.parse(words) }
            try await skynet().resolverUp(options)
            return runningSkynet()?.resolverRow ?? .null
        case "resolver.down":
            guard await runningSkynet()?.resolverDown() == true else { throw ControlError(.conflict, "the resolver is not up") }
            return .object([:])
        default:
            throw ControlError(.badRequest, "unknown method \"\(method)\"")
        }
    }

    private func runningSkynet() -> SkynetVisorApp? { apps.app(named: AppName.skynet.rawValue) as? SkynetVisorApp }

    /// The running `skynet` app, started (with no forwards) when it is not.
    private func skynet() async throws -> SkynetVisorApp {
        if let app = runningSkynet() { return app }
        // A conflict: started by a concurrent request meanwhile. (No `catch where` on this typed
        // throw: swiftc 6.2.3, the aarch64 compiler, crashed in SIL verification on it.)
        var failure: AppError?
        do {
            try await apps.start(AppName.skynet.rawValue, options: .skynet(SkynetOptions()), shownArguments: [])
        } catch {
            failure = error
        }
        if let failure, failure.code != .conflict { throw failure }
        guard let app = runningSkynet() else { throw ControlError(.unavailable, "the skynet app is not running") }
        return app
    }

    /// The string (or integer) parameters `names` as `--name value` words, for the app's own parser
    /// (the one edge for config `args` and control parameters alike).
    private static func words(_ params: [String: ControlValue], _ names: [String]) throws -> [String] {
        try names.flatMap { name -> [String] in
            guard let value = params[name], value != .null else { return [] }
            if let i = value.intValue { return ["--\(name)", "\(i)"] }
            guard let s = value.stringValue else { throw ControlError(.badRequest, "parameter \"\(name)\" must be a string") }
            return ["--\(name)", s]
        }
    }

    private static func parsed<T>(_ body: () throws(SkysocksArgumentError) -> T) throws -> T {
        do { return try body() } catch { throw ControlError(.badRequest, error.message) }
    }
}
