import SkywireCrypto

/// The visor configuration, stored as `skywire-config.json` (shape modelled on Skywire's).
/// See docs/config.md for every field, its default and its validation rules.
public struct VisorConfig: Sendable, Equatable {
    /// The config format version written to and required in the `version` field.
    public static let formatVersion = "1"
    /// Default file name for `skywire config gen`.
    public static let defaultFileName = "skywire-config.json"
    /// Largest config file `load(path:)` reads.
    public static let maxFileBytes = 1 << 20

    public static let defaultSTCPRPort: UInt16 = 7777
    public static let defaultSUDPHPort: UInt16 = 7778
    public static let defaultListenAddr = "0.0.0.0"
    public static let defaultCLIAddr = "/run/skywire/cli.sock"
    public static let defaultStateDir = "/var/lib/skywire"
    public static let defaultLogLevel = LogLevel.info
    /// The apps a generated config lists, in this order, all with `auto_start: false`.
    public static let defaultApps: [AppName] = [.vpnServer, .vpnClient, .skysocks, .skysocksClient]

    /// The visor identity (`sk` and `pk`); always consistent, never regenerated on load.
    public var keyPair: KeyPair
    public var transport: TransportConfig
    public var launcher: LauncherConfig
    /// Path of the control socket (`cli_addr`), absolute.
    public var cliAddr: String
    public var logLevel: LogLevel
    /// Directory for runtime state such as VPN cleanup records (`state_dir`), absolute.
    public var stateDir: String
    /// The web UI (`ui`, docs/ui.md).
    public var ui: UIConfig

    /// The visor's address.
    public var publicKey: PublicKey { keyPair.publicKey }

    public init(keyPair: KeyPair, transport: TransportConfig = TransportConfig(),
                launcher: LauncherConfig = LauncherConfig(),
                cliAddr: String = VisorConfig.defaultCLIAddr,
                logLevel: LogLevel = VisorConfig.defaultLogLevel,
                stateDir: String = VisorConfig.defaultStateDir, ui: UIConfig = UIConfig()) {
        self.keyPair = keyPair
        self.transport = transport
        self.launcher = launcher
        self.cliAddr = cliAddr
        self.logLevel = logLevel
        self.stateDir = stateDir
        self.ui = ui
    }

    /// The default config around `keyPair` (a fresh one unless given): default ports, no
    /// peers, the default apps with their Skywire ports, none auto-started.
    public static func generate(keyPair: KeyPair = KeyPair.generate()) -> VisorConfig {
        VisorConfig(keyPair: keyPair,
                    launcher: LauncherConfig(apps: defaultApps.map { AppConfig(name: $0) }))
    }

    /// The identity for a given secret key (128 lowercase hex, libsodium's seed || pk form):
    /// the public key is its second half, and `KeyPair` checks that the seed derives it.
    public static func keyPair(secretKeyHex hex: String) throws(ConfigError) -> KeyPair {
        let problem = FieldProblem(path: "sk", message: "not a \(Limits.secretKeyHexLength)-hex secret key "
                                   + "whose second half is its public key")
        guard hex.utf8.count == Limits.secretKeyHexLength else { throw .invalid([problem]) }
        let pkHex = String(hex.suffix(Limits.publicKeyHexLength))
        guard let pk = try? PublicKey(hex: pkHex), let pair = try? KeyPair(secretKeyHex: hex, publicKey: pk) else {
            throw .invalid([problem])
        }
        return pair
    }

    public static func == (a: VisorConfig, b: VisorConfig) -> Bool {
        a.keyPair.publicKey == b.keyPair.publicKey && a.keyPair.secretKey == b.keyPair.secretKey
            && a.transport == b.transport && a.launcher == b.launcher && a.cliAddr == b.cliAddr
            && a.logLevel == b.logLevel && a.stateDir == b.stateDir && a.ui == b.ui
    }
}

/// `transport`: listeners and the static peer table.
public struct TransportConfig: Sendable, Equatable {
    /// TCP port of the `stcpr` listener; 0 disables it.
    public var stcprPort: UInt16
    /// UDP port of the `sudph` listener; 0 disables it.
    public var sudphPort: UInt16
    /// IP address literal both listeners bind to (`0.0.0.0`, `::`, `127.0.0.1`, ...).
    public var listenAddr: String
    /// Known peers and where to dial them.
    public var peers: [PublicKey: PeerAddresses]
    /// Resolver/discovery URL, empty for none (docs/discovery.md).
    public var discovery: String
    /// ISO 3166-1 alpha-2 country the visor's services are listed under in discovery; "" for none.
    public var country: String
    /// The stcpr address registered with discovery (a port forward or public address the
    /// listener is reachable at); nil: the listener's own address when it is a specific one.
    public var publicAddr: HostPort?
    /// dmsg relay servers to keep a session with (`transport.dmsg_servers`); empty: the relay
    /// servers discovery lists, if any (docs/dmsg.md).
    public var dmsgServers: [DmsgServerAddress]

    public init(stcprPort: UInt16 = VisorConfig.defaultSTCPRPort,
                sudphPort: UInt16 = VisorConfig.defaultSUDPHPort,
                listenAddr: String = VisorConfig.defaultListenAddr,
                peers: [PublicKey: PeerAddresses] = [:], discovery: String = "", country: String = "",
                publicAddr: HostPort? = nil, dmsgServers: [DmsgServerAddress] = []) {
        self.publicAddr = publicAddr
        self.dmsgServers = dmsgServers
        self.stcprPort = stcprPort
        self.sudphPort = sudphPort
        self.listenAddr = listenAddr
        self.peers = peers
        self.discovery = discovery
        self.country = country
    }
}

/// Where one peer listens; at least one of the two is set.
public struct PeerAddresses: Sendable, Equatable, Hashable {
    public var stcpr: HostPort?
    public var sudph: HostPort?

    public init(stcpr: HostPort? = nil, sudph: HostPort? = nil) {
        self.stcpr = stcpr
        self.sudph = sudph
    }
}

/// `launcher`: the apps the visor hosts.
public struct LauncherConfig: Sendable, Equatable {
    public var apps: [AppConfig]

    public init(apps: [AppConfig] = []) {
        self.apps = apps
    }

    /// The entry for `name`, if configured.
    public func app(_ name: AppName) -> AppConfig? {
        apps.first { $0.name == name }
    }
}

/// One `launcher.apps[]` entry.
public struct AppConfig: Sendable, Equatable, Hashable {
    public var name: AppName
    /// Arguments for the app; each app validates its own when it starts.
    public var args: [String]
    public var autoStart: Bool
    /// The app's mux port (1...65535), unique within the visor.
    public var port: UInt16

    public init(name: AppName, args: [String] = [], autoStart: Bool = false, port: UInt16? = nil) {
        self.name = name
        self.args = args
        self.autoStart = autoStart
        self.port = port ?? name.defaultPort
    }
}

/// The apps a visor knows (Skywire's names and default ports).
public enum AppName: String, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    case vpnServer = "vpn-server"
    case vpnClient = "vpn-client"
    case skysocks = "skysocks"
    case skysocksClient = "skysocks-client"
    case skychat = "skychat"
    case skynet = "skynet"
    case pty = "pty"
    /// Serves update bundles (`.raucb`) to the visors on its whitelist (docs/update.md).
    case updateServer = "update-server"
    /// Echoes streams and datagrams back (`skywire cli visor ping`); for testing a transport.
    case echo = "echo"

    /// Skywire's default port for the app.
    public var defaultPort: UInt16 {
        switch self {
        case .skychat: return 1
        case .echo: return 7
        case .skysocks: return 3
        case .skysocksClient: return 13
        case .pty: return 22
        case .updateServer: return 24
        case .vpnClient: return 43
        case .vpnServer: return 44
        case .skynet: return 57
        }
    }

    public var description: String { rawValue }
}

/// `log_level`: the same names and order as swift-log's `Logger.Level`.
public enum LogLevel: String, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case trace, debug, info, notice, warning, error, critical

    public var description: String { rawValue }

    /// Position in severity order, `trace` lowest.
    public var severity: Int {
        switch self {
        case .trace: return 0
        case .debug: return 1
        case .info: return 2
        case .notice: return 3
        case .warning: return 4
        case .error: return 5
        case .critical: return 6
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.severity < b.severity }
}
