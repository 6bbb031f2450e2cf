import Logging
import SkywireConfig
import SkywireDiscovery
import SkywireTransport

extension Visor {
    /// The registrar for `options.discovery`, or nil (none set, or not an http:// URL: logged).
    /// The stcpr address advertised is `transport.public_addr` when set, else the listener's when
    /// it is bound to a specific address.
    static func makeRegistrar(options: VisorOptions, apps: AppRegistry, transports: TransportManager, logger: Logger) -> DiscoveryRegistrar? {
        guard !options.discovery.isEmpty else { return nil }
        let url: DiscoveryURL
        do { url = try DiscoveryURL(options.discovery) } catch {
            logger.warning("transport.discovery not used: \(error.message)")
            return nil
        }
        let t = options.transport
        var stcpr: [String] = []
        if t.stcprPort > 0, let pub = options.publicAddr {
            stcpr.append(pub.description)
        } else if t.stcprPort > 0, t.listenHost != "0.0.0.0", t.listenHost != "::" {
            stcpr.append(t.listenHost.contains(":") ? "[\(t.listenHost)]:\(t.stcprPort)" : "\(t.listenHost):\(t.stcprPort)")
        }
        return DiscoveryRegistrar(url: url, keyPair: t.identity, country: options.country, stcpr: stcpr, apps: apps, logger: logger,
                                  relays: { Array(transports.relaysReachableThrough.prefix(DiscoveryAPI.maxDmsgRelays)) },
                                  bindRendezvous: { transports.startRendezvous(host: $0.host, port: Int($0.port), interval: .seconds(Int64($1))) })
    }
}
