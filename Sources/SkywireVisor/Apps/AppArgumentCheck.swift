import SkywireConfig

/// Checks the `args` of the built-in apps (their parsers need no running system: the VPN apps,
/// gateway role included, the SOCKS apps, skynet and echo), for `skywire config check`: a typo is reported
/// with its field path before the app fails to start. An entry with no arguments that does not
/// auto-start is skipped: its arguments come with `skywire cli vpn start` / `apps start`.
public enum AppArgumentCheck {
    public static func problems(_ launcher: LauncherConfig) -> [FieldProblem] {
        checked(launcher).compactMap { index, app -> FieldProblem? in
            do throws(AppError) {
                // The same parse as at start (`AppOptions`), so config check and start agree.
                _ = try AppOptions(app: app.name.rawValue, arguments: app.args)
                return nil
            } catch where error.code == .notFound {
                return nil  // not built into this visor: no parser to check with
            } catch {
                return FieldProblem(path: argsPath(index), message: error.message)
            }
        }
    }

    /// What `config check` says about whom each app that serves other visors admits (printed
    /// as warnings): an app whose whitelist is empty refuses every key; one with
    /// `--whitelist any` is open to every key. Apps with listed keys, and arguments `problems`
    /// refuses, give nothing here; so does a closed app that is not auto-started (a board's opt-in
    /// `pty` entry): it serves nobody twice over, and the registry says it if it is started.
    public static func accessNotices(_ launcher: LauncherConfig) -> [FieldProblem] {
        checked(launcher).compactMap { index, app in
            guard let whitelist = (try? AppOptions(app: app.name.rawValue, arguments: app.args))?.whitelist,
                  app.autoStart || whitelist == .anyone,
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
