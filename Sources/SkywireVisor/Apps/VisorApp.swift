import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireTransport

/// What an app sees of its visor: the transports, identity and logging.
public struct AppContext: Sendable {
    public let localKey: PublicKey
    public let port: UInt16
    public let transports: TransportManager
    public let logger: Logger
    public let stateDirectory: String
}

/// An app hosted on an internal port (config `launcher.apps`). Apps run in-process.
public protocol VisorApp: AnyObject, Sendable {
    /// Starts the app; throws a user-facing error for bad args or a failed setup.
    func start() async throws
    /// Stops the app and undoes every system change it made.
    func stop() async
    /// Stops the app because the visor is shutting down (SIGTERM/SIGINT). The default is
    /// `stop()`; the gateway role keeps its LAN kill switch in the kernel (docs/gateway.md).
    func shutdown() async
    /// A one-line status for `apps ls`, and app-specific details for `--json`.
    func status() -> AppStatusReport
    /// A stream from another visor arrived on the app's port. Called on the stream's event loop.
    /// Return false to refuse it (the opener sees "refused by app").
    func accept(stream: AppStream) -> Bool
    /// A datagram from another visor arrived on the app's port.
    func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16)
    /// For an app that serves other visors: whom it admits (its parsed `--whitelist`). The
    /// registry logs it when the app starts and shows it in `apps ls`. Nil for the others (default).
    var whitelist: AppWhitelist? { get }
    /// The uplink changed (docs/architecture.md, "Network changes"): move what the app copied
    /// from the old one (routes). Returns what it did, for the visor's log line; empty when
    /// nothing (default).
    func uplinkChanged(_ change: UplinkChange) async -> [String]
}

extension VisorApp {
    public func shutdown() async { await stop() }
    public func accept(stream: AppStream) -> Bool { false }
    public func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16) {}
    public var whitelist: AppWhitelist? { nil }
    public func uplinkChanged(_ change: UplinkChange) async -> [String] { [] }
}

public struct AppStatusReport: Sendable {
    public var detail: String
    public var fields: [String: ControlValue]

    public init(detail: String = "", fields: [String: ControlValue] = [:]) {
        self.detail = detail
        self.fields = fields
    }
}

/// The user-facing error an app or the registry raises, with a code the control socket passes
/// on (`ControlError.Code`) and the CLI maps to its exit status: decided where the error
/// arises, never from the message text.
public struct AppError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// The app's arguments were refused (retrying cannot help).
        case invalidArguments
        /// The remote end refused this visor's key (e.g. a VPN server's whitelist).
        case forbidden
        /// No such app in the config, or not built into this visor.
        case notFound
        /// The app is already running or starting, or not running when asked to stop.
        case conflict
        /// The start failed (unreachable peer, system setup); retrying may help.
        case failed
    }

    public let code: Code
    public let message: String
    public init(_ message: String) { self.init(.failed, message) }
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
