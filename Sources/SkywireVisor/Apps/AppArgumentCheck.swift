import SkywireConfig
import SkywireSocks
import SkywireVPN

/// Checks the `args` of the apps whose argument parsers need no running system (the VPN apps,
/// gateway role included, and the SOCKS apps), for `skywire config check`: a typo is reported
/// with its field path before the app fails to start. An entry with no arguments that does not
/// auto-start is skipped: its arguments come with `skywire cli vpn start` / `apps start`.
public enum AppArgumentCheck {
    /// The apps that serve other visors, each with its parser's whitelist. An app added later
    /// that takes `--whitelist` (`AppWhitelist`) adds its line here.
    static let whitelists: [AppName: @Sendable ([String]) throws -> AppWhitelist] = [
        .vpnServer: { try VPNServerArguments(parsing: $0).whitelist },
        .skysocks: { try SkysocksServerOptions.parse($0).whitelist },
    ]

    public static func problems(_ launcher: LauncherConfig) -> [FieldProblem] {
        checked(launcher).compactMap { index, app in
            do {
                switch app.name {
                case .vpnClient: _ = try VPNClientArguments(parsing: app.args)
                case .skysocksClient: _ = try SkysocksClientOptions.parse(app.args)
                default: _ = try whitelists[app.name]?(app.args)
                }
                return nil
            } catch {
                return FieldProblem(path: argsPath(index), message: "\(app.name.rawValue): \(error)")
            }
        }
    }

    /// What `config check` says about whom each such app admits (printed as warnings): an app
    /// whose whitelist is empty refuses every key; one with `--whitelist any` is open to every
    /// key. Apps with listed keys, and arguments `problems` refuses, give nothing here.
    public static func accessNotices(_ launcher: LauncherConfig) -> [FieldProblem] {
        checked(launcher).compactMap { index, app in
            guard let parse = whitelists[app.name], let whitelist = try? parse(app.args),
                  let notice = whitelist.notice(app: app.name.rawValue) else { return nil }
            return FieldProblem(path: argsPath(index), message: notice)
        }
    }

    /// The entries whose arguments are used as configured: given, or auto-started.
    private static func checked(_ launcher: LauncherConfig) -> [(Int, AppConfig)] {
        launcher.apps.enumerated().filter { !$0.element.args.isEmpty || $0.element.autoStart }.map { ($0.offset, $0.element) }
    }

    private static func argsPath(_ index: Int) -> String { "launcher.apps[\(index)].args" }
}
