import SkywireConfig

/// The apps compiled into this visor, by config name.
public enum BuiltinApps {
    public static let factories: [String: AppFactory] = Dictionary(
        uniqueKeysWithValues: [AppName.echo, .skysocks, .skysocksClient, .vpnServer, .vpnClient, .skynet, .pty, .skychat, .updateServer].map { ($0.rawValue, factory($0)) })

    /// Parses with `AppOptions(app:arguments:)`; builds the app the options are for.
    static func factory(_ name: AppName) -> AppFactory {
        AppFactory(parse: { args in try AppOptions(app: name.rawValue, arguments: args) }) { context, options in
            switch options {
            case .echo where name == .echo: return EchoApp(context: context)
            case .skysocks(let o) where name == .skysocks: return SkysocksServerVisorApp(context: context, options: o)
            case .skysocksClient(let o) where name == .skysocksClient: return try SkysocksClientVisorApp(context: context, options: o)
            case .vpnServer(let a) where name == .vpnServer: return VPNServerVisorApp(context: context, arguments: a)
            case .vpnClient(let a) where name == .vpnClient: return VPNClientVisorApp(context: context, arguments: a)
            case .skynet(let o) where name == .skynet: return SkynetVisorApp(context: context, options: o)
            case .pty(let o) where name == .pty: return PtyApp(context: context, options: o)
            case .skychat(let o) where name == .skychat: return ChatApp(context: context, options: o)
            case .updateServer(let o) where name == .updateServer: return UpdateServerApp(context: context, options: o)
            default: throw AppError(.invalidArguments, "\(name.rawValue): given the options of another app")
            }
        }
    }
}
