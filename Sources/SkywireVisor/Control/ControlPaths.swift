import FoundationEssentials

/// Where `skywire cli` finds the control socket.
public enum ControlPaths {
    public static let defaultSocket = "/run/skywire/cli.sock"

    /// --rpc PATH, else $SKYWIRE_RPC, else CONFIG's `cli_addr`, else the default path.
    public static func resolve(explicit: String?, environment: String?, configPath: String?) throws -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let environment, !environment.isEmpty { return environment }
        if let configPath {
            struct OnlyCLIAddr: Decodable { var cli_addr: String? }
            guard let data = FileManager.default.contents(atPath: configPath) else {
                throw ControlError(.badRequest, "\(configPath): cannot read the config")
            }
            do {
                if let addr = try JSONDecoder().decode(OnlyCLIAddr.self, from: data).cli_addr, !addr.isEmpty {
                    return addr
                }
            } catch {
                throw ControlError(.badRequest, "\(configPath): not a valid config: \(error)")
            }
        }
        return defaultSocket
    }
}

/// The visor's version, printed by `skywire --version` and `cli visor info`.
public enum SkywireVersion {
    public static let string = "0.1.0"
}
