import Logging
import SkywireConfig
import SkywireTransport

extension VisorOptions {
    /// The daemon's options from a validated config.
    public init(config: VisorConfig) {
        var transport = TransportSettings(identity: config.keyPair, listenHost: config.transport.listenAddr,
                                          stcprPort: Int(config.transport.stcprPort),
                                          sudphPort: Int(config.transport.sudphPort), peers: config.transport.peers)
        transport.dmsgServers = config.transport.dmsgServers
        self.init(
            transport: transport,
            apps: Self.withSkychat(Self.withSkynet(config.launcher.apps.map {
                AppSpec(name: $0.name.rawValue, args: $0.args, autoStart: $0.autoStart, port: $0.port)
            })),
            controlSocket: config.cliAddr,
            logLevel: Logger.Level(rawValue: config.logLevel.rawValue) ?? .info,
            stateDirectory: config.stateDir,
            discovery: config.transport.discovery, country: config.transport.country,
            publicAddr: config.transport.publicAddr, uiListen: config.ui.listen)
    }
}
