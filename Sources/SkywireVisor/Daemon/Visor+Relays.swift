import NIOConcurrencyHelpers
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
import SkywireTransport

extension Visor {
    /// Seconds between lookups while discovery lists no relay server (doubling from the first).
    static let relayLookupFirstRetry: UInt64 = 15
    static let relayLookupMaxRetry: UInt64 = 300

    /// The relay servers: `transport.dmsg_servers`, else (with an http:// discovery) the
    /// `dmsg` services discovery lists, of which `TransportManager.chooseRelays` takes
    /// the first `TransportManager.relaysFromDiscovery` by rendezvous hashing of this visor's key (docs/dmsg.md),
    /// looked up again with backoff until discovery lists one. The returned task ends at once
    /// when relays are configured or there is no discovery; `shutdown` cancels it.
    func startRelays() throws -> Task<Void, Never>? {
        if !options.transport.dmsgServers.isEmpty {
            try transports.startRelays(options.transport.dmsgServers)
            return nil
        }
        guard options.discovery.hasPrefix("http://"), let url = try? DiscoveryURL(options.discovery),
              let resolver = transports.resolver else { return nil }
        let (transports, logger, own) = (self.transports, self.logger, options.transport.identity.publicKey)
        return Task {
            var wait = Self.relayLookupFirstRetry
            while !Task.isCancelled {
                do {
                    let servers = try await Self.discoverRelays(url: url, resolver: resolver, own: own)
                    if !servers.isEmpty {
                        try transports.startRelays(servers)
                        return
                    }
                    logger.debug("discovery lists no dmsg relay server; asking again in \(wait) s")
                } catch {
                    logger.info("dmsg relay servers from discovery: \(error); asking again in \(wait) s")
                }
                try? await Task.sleep(nanoseconds: wait * 1_000_000_000)
                wait = min(wait * 2, Self.relayLookupMaxRetry)
            }
        }
    }

    /// The relay servers discovery lists, the chosen ones with their stcpr address.
    static func discoverRelays(url: DiscoveryURL, resolver: PeerResolver, own: PublicKey) async throws -> [DmsgServerAddress] {
        let target = "/v1/services/\(DiscoveryServiceType.dmsg.rawValue)?limit=\(DiscoveryAPI.maxPageEntries)"
        let entries = try await BlockingPool.shared.run { () throws(DiscoveryError) -> [ServiceEntry] in
            let (status, body) = try DiscoveryHTTPClient.exchange(url, method: "GET", target: target)
            guard status == 200 else { throw DiscoveryError(status, DiscoveryHTTP.errorMessage(body)) }
            return try ServiceEntry.decodePage(body).entries
        }
        let keys = entries.compactMap { try? PublicKey(hex: $0.pk) }.filter { $0 != own }
        var out: [DmsgServerAddress] = []
        for key in TransportManager.chooseRelays(for: own, among: keys) where out.count < TransportManager.relaysFromDiscovery {
            guard let address = try? await resolver.resolve(key).stcpr.first else { continue }
            out.append(DmsgServerAddress(publicKey: key, address: address))
        }
        return out
    }
}
