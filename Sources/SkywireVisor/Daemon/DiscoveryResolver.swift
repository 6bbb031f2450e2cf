import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireTransport

/// The visor's `PeerResolver`: `GET /v1/transports/{pk}` at `transport.discovery`
/// (docs/discovery.md). The blocking HTTP exchange runs on a detached task, never on an event loop.
struct DiscoveryResolver: PeerResolver {
    let url: DiscoveryURL

    var name: String { "discovery http://\(url.host.contains(":") ? "[\(url.host)]" : url.host):\(url.port)" }

    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        let url = self.url
        let answer = try await Task.detached { () throws -> (status: Int, body: [UInt8]) in
            try DiscoveryHTTPClient.exchange(url, method: "GET", target: "/v1/transports/\(key.hex)", timeoutSeconds: 5)
        }.value
        let (status, body) = (answer.status, answer.body)
        return try Self.interpret(status: status, body: body, key: key, source: name)
    }

    /// Maps an answer of `GET /v1/transports/{pk}` to addresses (pure, for unit tests).
    /// Addresses that do not parse as HOST:PORT are skipped; a 404 is "not found in discovery".
    static func interpret(status: Int, body: [UInt8], key: PublicKey, source: String) throws(TransportError) -> ResolvedPeer {
        switch status {
        case 200: break
        case 404:
            throw TransportError(.notFound, "\(key.hex) not found in \(source) (no live entry for that key): is that visor running with transport.discovery set?")
        default:
            throw TransportError(.unreachable, "\(source) answered \(status) to GET /v1/transports/\(key.hex): \(DiscoveryHTTP.errorMessage(body))")
        }
        let entry: TransportEntry
        do { entry = try TransportEntry.decode(body) } catch {
            throw TransportError(.unreachable, "\(source): malformed transport entry for \(key.hex): \(error.message)")
        }
        guard entry.pk == key.hex else {
            throw TransportError(.unreachable, "\(source) answered for key \(entry.pk.prefix(64)) when asked for \(key.hex)")
        }
        let stcpr = entry.stcpr.compactMap { s -> HostPort? in
            if case .success(let hp) = HostPort.parse(s) { return hp } else { return nil }
        }
        let sudph = entry.sudph.flatMap { s -> HostPort? in
            if case .success(let hp) = HostPort.parse(s) { return hp } else { return nil }
        }
        return ResolvedPeer(stcpr: stcpr, sudph: sudph)
    }
}
