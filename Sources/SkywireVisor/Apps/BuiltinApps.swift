/// The apps compiled into this visor, by config name.
public enum BuiltinApps {
    public static let factories: [String: AppFactory] = [
        "echo": { context, args in try EchoApp(context: context, args: args) },
    ]
}
