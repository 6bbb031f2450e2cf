import SkywireConfig
import SkywireVPN

/// Checks the `args` of the apps whose argument parsers need no running system (the VPN apps,
/// gateway role included), for `skywire config check`: a typo is reported with its field path
/// before the app fails to start. An entry with no arguments that does not auto-start is
/// skipped: its arguments come with `skywire cli vpn start`.
public enum AppArgumentCheck {
    public static func problems(_ launcher: LauncherConfig) -> [FieldProblem] {
        launcher.apps.enumerated().compactMap { index, app in
            guard !app.args.isEmpty || app.autoStart else { return nil }
            do {
                switch app.name {
                case .vpnClient: _ = try VPNClientArguments(parsing: app.args)
                case .vpnServer: _ = try VPNServerArguments(parsing: app.args)
                default: return nil
                }
                return nil
            } catch {
                return FieldProblem(path: "launcher.apps[\(index)].args", message: "\(app.name.rawValue): \(error)")
            }
        }
    }
}
