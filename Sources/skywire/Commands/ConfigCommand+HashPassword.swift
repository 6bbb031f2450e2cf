import ArgumentParser
import SkywireConfig
import SkywireCrypto

extension ConfigCommand {
    /// `skywire config hash-password`: the Argon2id string for `ui_password_hash` in
    /// skywire-provision.json (docs/ui.md), so the password itself never goes on the card.
    struct HashPassword: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hash-password",
            abstract: "Read a web UI password from stdin (first line); print its Argon2id hash for skywire-provision.json.",
            discussion: "On a running visor use `skywire cli ui password` instead; this needs no visor.")

        func run() throws {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                ConfigCommand.printError("skywire config hash-password: no password on stdin")
                throw ExitCode(ConfigError.exitCode)
            }
            do {
                print(try PasswordHash.hash(Array(line.utf8)))
            } catch {
                ConfigCommand.printError("skywire config hash-password: \(error)")
                throw ExitCode(ConfigError.exitCode)
            }
        }
    }
}
