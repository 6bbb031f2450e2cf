import ArgumentParser
import SkywireConfig
import SkywireVisor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `skywire config`: create and check `skywire-config.json` (see docs/config.md).
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Create and check the visor config file.",
        subcommands: [Gen.self, Check.self, HashPassword.self])

    /// Exit status when the file exists (without --force) or cannot be written.
    static let writeFailedExitCode: Int32 = 1

    /// `skywire config gen`: writes a default config with a fresh (or given) identity and
    /// prints only the public key on stdout, so scripts can capture it.
    struct Gen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new config; print its public key on stdout.",
            discussion: """
                The file is written atomically with mode 0600 and never replaces an existing \
                file unless --force is given. Messages go to stderr; stdout carries only the \
                64-hex public key.
                """)

        @Option(name: [.short, .long], help: "File to write.")
        var output: String = "./" + VisorConfig.defaultFileName

        @Flag(help: "Replace the file if it exists.")
        var force = false

        @Option(help: ArgumentHelp(
            "Use this secret key (128 hex) instead of a fresh one; visible in /proc/<pid>/cmdline.",
            discussion: "Every local user can read a command line (ps, /proc/<pid>/cmdline): "
                + "scripts and boards should pass the key with --sk-file instead."))
        var sk: String?

        @Option(help: ArgumentHelp(
            "Read the secret key (128 hex) from this file (mode 0600, owned by you or root), "
                + "or from standard input with '\(VisorConfig.standardInputName)'.",
            valueName: "path"))
        var skFile: String?

        @Option(help: "TCP port of the stcpr listener, 0 to disable (default \(VisorConfig.defaultSTCPRPort)).")
        var stcprPort: UInt16?

        @Option(help: "UDP port of the sudph listener, 0 to disable (default \(VisorConfig.defaultSUDPHPort)).")
        var sudphPort: UInt16?

        @Option(help: "IP address both listeners bind to (default \(VisorConfig.defaultListenAddr)).")
        var listenAddr: String?

        @Option(help: "Control socket path (default \(VisorConfig.defaultCLIAddr)).")
        var cliAddr: String?

        @Option(help: "Runtime state directory (default \(VisorConfig.defaultStateDir)).")
        var stateDir: String?

        @Option(help: ArgumentHelp(
            "Log level: \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")) (default \(VisorConfig.defaultLogLevel)).",
            valueName: "level"))
        var logLevel: String?

        func validate() throws {
            if sk != nil && skFile != nil {
                throw ValidationError("--sk and --sk-file are exclusive: give the key once")
            }
            if let sk {
                do {
                    _ = try VisorConfig.keyPair(secretKeyHex: sk)
                } catch {
                    throw ValidationError("--sk: not a 128-hex Ed25519 secret key (libsodium form: seed || public key)")
                }
            }
            if let logLevel, LogLevel(rawValue: logLevel) == nil {
                throw ValidationError("--log-level \"\(logLevel)\" is not one of "
                                      + LogLevel.allCases.map(\.rawValue).joined(separator: ", "))
            }
        }

        func run() throws {
            var config = VisorConfig.generate()
            if let sk {
                do {
                    config = VisorConfig.generate(keyPair: try VisorConfig.keyPair(secretKeyHex: sk))
                } catch {
                    throw ValidationError("--sk: not a 128-hex Ed25519 secret key (libsodium form: seed || public key)")
                }
            } else if let skFile {
                let hex: String
                do {
                    hex = try VisorConfig.secretKeyHex(file: skFile)
                } catch {
                    throw ValidationError("--sk-file: " + error.description)
                }
                do {
                    config = VisorConfig.generate(keyPair: try VisorConfig.keyPair(secretKeyHex: hex))
                } catch {
                    throw ValidationError("--sk-file \(skFile): not a 128-hex Ed25519 secret key "
                                          + "(libsodium form: seed || public key)")
                }
            }
            if let stcprPort { config.transport.stcprPort = stcprPort }
            if let sudphPort { config.transport.sudphPort = sudphPort }
            if let listenAddr { config.transport.listenAddr = listenAddr }
            if let cliAddr { config.cliAddr = cliAddr }
            if let stateDir { config.stateDir = stateDir }
            if let logLevel, let level = LogLevel(rawValue: logLevel) { config.logLevel = level }

            do {
                try config.write(to: output, force: force)
            } catch {
                ConfigCommand.printError("skywire config gen: " + error.report(file: output))
                if case .invalid = error { throw ExitCode(ConfigError.exitCode) }
                throw ExitCode(ConfigCommand.writeFailedExitCode)
            }
            for warning in config.warnings() {
                ConfigCommand.printError("skywire config gen: warning: \(warning)")
            }
            ConfigCommand.printError("skywire config gen: wrote \(output) (mode 0600); public key:")
            print(config.publicKey.hex)
        }
    }

    /// `skywire config check`: loads the file exactly as the visor does and lists every problem,
    /// then checks the apps' arguments (`AppArgumentCheck`) and warns about every app that refuses
    /// every key (empty whitelist) or admits every key (`--whitelist any`).
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a config file; exit 2 and list every problem if it is invalid.")

        @Option(name: [.short, .customLong("config")], help: "Config file to check.")
        var config: String = "./" + VisorConfig.defaultFileName

        func run() throws {
            let loaded: VisorConfig
            do {
                loaded = try VisorConfig.load(path: config)
            } catch {
                ConfigCommand.printError(error.report(file: config))
                throw ExitCode(ConfigError.exitCode)
            }
            let argumentProblems = AppArgumentCheck.problems(loaded.launcher)
            if !argumentProblems.isEmpty {
                ConfigCommand.printError(ConfigError.invalid(argumentProblems).report(file: config))
                throw ExitCode(ConfigError.exitCode)
            }
            for warning in loaded.warnings() + AppArgumentCheck.accessNotices(loaded.launcher) {
                ConfigCommand.printError("\(config): warning: \(warning)")
            }
            print("\(config): ok, public key \(loaded.publicKey.hex)")
        }
    }

    /// Writes one line to stderr (fd 2), unbuffered.
    static func printError(_ message: String) {
        var line = message + "\n"
        line.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count, let base = buffer.baseAddress {
                let n = write(STDERR_FILENO, base + offset, buffer.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                offset += n
            }
        }
    }
}
