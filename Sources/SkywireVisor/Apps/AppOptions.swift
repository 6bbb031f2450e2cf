import SkywireConfig
import SkywireSocks
import SkywireVPN

/// An app's options, typed. Parsed once at the edge: from the config's `args` (or the `args` of
/// `apps.start`) by `init(app:arguments:)`, or built from a control request's parameters
/// (`vpn.start`, `vpn.server.start`, `proxy.start`). Apps are built from these, never from argv.
public enum AppOptions: Sendable {
    case echo
    case skysocks(SkysocksServerOptions)
    case skysocksClient(SkysocksClientOptions)
    case vpnServer(VPNServerArguments)
    case vpnClient(VPNClientArguments)
    case skynet(SkynetOptions)
    case pty(PtyOptions)
    case skychat(ChatOptions)
    case updateServer(UpdateServerOptions)

    /// Parses the arguments of the built-in app `app`; a refusal is an `AppError` with code
    /// `invalidArguments` naming the app, an app not built in one with `notFound`.
    public init(app: String, arguments: [String]) throws(AppError) {
        guard let name = AppName(rawValue: app) else { throw Self.notBuiltIn(app) }
        do {
            switch name {
            case .echo:
                guard arguments.isEmpty else { throw AppError(.invalidArguments, "echo takes no arguments, got \(arguments)") }
                self = .echo
            case .skysocks: self = .skysocks(try SkysocksServerOptions.parse(arguments))
            case .skysocksClient: self = .skysocksClient(try SkysocksClientOptions.parse(arguments))
            case .vpnServer: self = .vpnServer(try VPNServerArguments(parsing: arguments))
            case .vpnClient: self = .vpnClient(try VPNClientArguments(parsing: arguments))
            case .skynet: self = .skynet(try SkynetOptions.parse(arguments))
            case .pty: self = .pty(try PtyOptions.parse(arguments))
            case .skychat: self = .skychat(try ChatOptions.parse(arguments))
            case .updateServer: self = .updateServer(try UpdateServerOptions.parse(arguments))
            }
        } catch let e as AppError {
            throw e
        } catch {
            throw AppError(.invalidArguments, "\(app): \(error)")
        }
    }

    /// For an app that serves other visors: whom it admits (its parsed `--whitelist`); nil for
    /// the others. An app added later that takes `--whitelist` (`AppWhitelist`) adds its case.
    public var whitelist: AppWhitelist? {
        switch self {
        case .vpnServer(let a): a.whitelist
        case .skysocks(let o): o.whitelist
        case .skynet(let o): o.whitelist
        case .pty(let o): o.whitelist
        case .skychat(let o): o.whitelist
        case .updateServer(let o): o.whitelist
        case .echo, .skysocksClient, .vpnClient: nil
        }
    }

    static func notBuiltIn(_ app: String) -> AppError { AppError(.notFound, "\(app) is not built into this visor") }
}
