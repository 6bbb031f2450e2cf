import Logging
import SkywireConfig
import SkywireTransport

/// One entry of `launcher.apps`.
public struct AppSpec: Sendable, Equatable {
    public var name: String
    public var args: [String]
    public var autoStart: Bool
    public var port: UInt16

    public init(name: String, args: [String], autoStart: Bool, port: UInt16) {
        self.name = name
        self.args = args
        self.autoStart = autoStart
        self.port = port
    }
}

/// Everything the daemon needs, taken from a validated config.
public struct VisorOptions: Sendable {
    public var transport: TransportSettings
    public var apps: [AppSpec]
    public var controlSocket: String
    public var logLevel: Logger.Level
    public var stateDirectory: String
    /// Discovery service to register with (`transport.discovery`), "" for none.
    public var discovery: String
    /// Country the visor's services are listed under (`transport.country`).
    public var country: String
    /// The stcpr address registered with discovery (`transport.public_addr`), nil for the default.
    public var publicAddr: HostPort?
    /// The web UI's address (`ui.listen`, docs/ui.md), nil for none.
    public var uiListen: HostPort?

    public init(transport: TransportSettings, apps: [AppSpec], controlSocket: String,
                logLevel: Logger.Level, stateDirectory: String, discovery: String = "", country: String = "",
                publicAddr: HostPort? = nil, uiListen: HostPort? = nil) {
        self.publicAddr = publicAddr
        self.uiListen = uiListen
        self.transport = transport
        self.apps = apps
        self.controlSocket = controlSocket
        self.logLevel = logLevel
        self.stateDirectory = stateDirectory
        self.discovery = discovery
        self.country = country
    }
}
