import SkywireConfig
import SkywireSystem

/// Where `skywire cli` finds the control socket.
public enum ControlPaths {
    public static let defaultSocket = "/run/skywire/cli.sock"
    /// The config member naming the control socket.
    static let cliAddrKey = "cli_addr"

    /// --rpc PATH, else $SKYWIRE_RPC, else CONFIG's `cli_addr`, else the default path.
    public static func resolve(explicit: String?, environment: String?, configPath: String?) throws -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let environment, !environment.isEmpty { return environment }
        if let configPath {
            // Only `cli_addr` is read here (the visor validates the whole file when it loads it).
            let bytes: [UInt8]?
            do { bytes = try FileIO.read(configPath) } catch {
                throw ControlError(.badRequest, "\(configPath): cannot read the config: \(error)")
            }
            guard let bytes else { throw ControlError(.badRequest, "\(configPath): cannot read the config") }
            let config: JSONValue
            do { config = try JSONParser.parse(bytes) } catch {
                throw ControlError(.badRequest, "\(configPath): not a valid config: line \(error.line), column \(error.column): \(error.message)")
            }
            guard case .object(let members) = config else {
                throw ControlError(.badRequest, "\(configPath): not a valid config: expected an object, got \(config.typeName)")
            }
            switch members.last(where: { $0.name == cliAddrKey })?.value {
            case .string(let addr)? where !addr.isEmpty: return addr
            case nil, .null?, .string?: break
            case let other?:
                throw ControlError(.badRequest, "\(configPath): not a valid config: \(cliAddrKey) must be a string, not \(other.typeName)")
            }
        }
        return defaultSocket
    }
}

/// The visor's version, printed by `skywire --version` and `cli visor info`.
public enum SkywireVersion {
    public static let string = "0.1.0"
}
