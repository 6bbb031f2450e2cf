/// The apps compiled into this visor, by config name.
public enum BuiltinApps {
    public static let factories: [String: AppFactory] = [
        "echo": { context, args in try EchoApp(context: context, args: args) },
        "skysocks": { context, args in try SkysocksServerVisorApp(context: context, args: args) },
        "skysocks-client": { context, args in try SkysocksClientVisorApp(context: context, args: args) },
        "vpn-server": { context, args in try VPNServerVisorApp(context: context, args: args) },
        "vpn-client": { context, args in try VPNClientVisorApp(context: context, args: args) },
    ]
}
