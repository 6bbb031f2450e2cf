import ArgumentParser
import Dispatch
import Logging
import NIOConcurrencyHelpers
import SkywireConfig
import SkywireVisor
#if canImport(Glibc)
import Glibc
#endif

/// `skywire visor`: runs the daemon until SIGTERM or SIGINT.
struct VisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visor",
        abstract: "Run the visor daemon.",
        discussion: """
            Starts the transports and the apps marked auto_start, and serves the control socket \
            (cli_addr). SIGTERM or SIGINT stops the apps and undoes their system changes, except the \
            VPN gateway's LAN kill switch, which stays until `cli vpn stop` (docs/gateway.md). A config \
            that fails validation stops the visor with exit status 2 and names every bad field.
            """
    )

    @Option(name: .shortAndLong, help: "The visor config.")
    var config: String = "./skywire-config.json"

    func run() async throws {
        let cfg: VisorConfig
        do {
            cfg = try VisorConfig.load(path: config)
        } catch {
            FileHandleStderr.write("skywire visor: " + error.report(file: config) + "\n")
            throw ExitCode(ConfigError.exitCode)
        }
        let level = Logger.Level(rawValue: cfg.logLevel.rawValue) ?? .info
        let logger = StderrLogging.bootstrap(level: level)
        for warning in cfg.warnings() {
            logger.warning("config: \(warning)")
        }
        let visor = Visor(options: VisorOptions(config: cfg), logger: logger, factories: BuiltinApps.factories)
        let signals = SignalWaiter([SIGTERM, SIGINT])
        do {
            try await visor.start()
        } catch {
            logger.critical("visor failed to start: \(error)")
            throw ExitCode.failure
        }
        let sig = await signals.wait()
        logger.info("signal \(sig) received; stopping")
        await visor.shutdown()
    }
}

/// Waits for the first of a set of signals (Dispatch signal sources; the default
/// actions are disabled while the visor runs).
final class SignalWaiter: @unchecked Sendable {
    // @unchecked Sendable: `sources` is written once in init; `continuation` is guarded by `lock`.
    private var sources: [DispatchSourceSignal] = []
    private let lock = NIOLock()
    private var continuation: CheckedContinuation<Int32, Never>?
    private var fired: Int32?

    init(_ signals: [Int32]) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { [weak self] in self?.fire(sig) }
            src.resume()
            sources.append(src)
        }
    }

    private func fire(_ sig: Int32) {
        let cont: CheckedContinuation<Int32, Never>? = lock.withLock {
            if fired == nil { fired = sig }
            defer { continuation = nil }
            return continuation
        }
        cont?.resume(returning: sig)
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { cont in
            let already: Int32? = lock.withLock {
                if let fired { return fired }
                continuation = cont
                return nil
            }
            if let already { cont.resume(returning: already) }
        }
    }
}

