import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
import SkywireTransport

/// The visor's `PeerResolver`: `GET /v1/transports/{pk}` at `transport.discovery`
/// (docs/discovery.md). The blocking HTTP exchange runs on `BlockingPool.shared`, never on an event loop or the
/// cooperative pool.
struct DiscoveryResolver: PeerResolver {
    let url: DiscoveryURL
    /// Signs `POST /v1/punch/{pk}`.
    let keyPair: KeyPair

    var name: String { "discovery http://\(url.host.contains(":") ? "[\(url.host)]" : url.host):\(url.port)" }

    func resolve(_ key: PublicKey) async throws -> ResolvedPeer {
        let url = self.url
        let answer = try await BlockingPool.shared.run { () throws -> (status: Int, body: [UInt8]) in
            try DiscoveryHTTPClient.exchange(url, method: "GET", target: "/v1/transports/\(key.hex)", timeoutSeconds: 5)
        }
        let (status, body) = (answer.status, answer.body)
        return try Self.interpret(status: status, body: body, key: key, source: name)
    }

    /// `POST /v1/punch/{pk}` (signed): the service sends `key` a PUNCH with our observed address
    /// and answers with `key`'s observed sudph address.
    func punch(_ key: PublicKey) async throws -> HostPort {
        let (url, keyPair, target) = (self.url, self.keyPair, "/v1/punch/\(key.hex)")
        let answer = try await BlockingPool.shared.run { () throws -> (status: Int, body: [UInt8]) in
            let h = DiscoverySigning.sign(keyPair: keyPair, method: "POST", target: target, body: [], timestampMs: DiscoveryTime.nowMs())
            return try DiscoveryHTTPClient.exchange(url, method: "POST", target: target, headers: h.fields, timeoutSeconds: 5)
        }
        return try Self.interpretPunch(status: answer.status, body: answer.body, key: key, source: name)
    }

    /// Maps an answer of `POST /v1/punch/{pk}` to the target address (pure, for unit tests).
    static func interpretPunch(status: Int, body: [UInt8], key: PublicKey, source: String) throws(TransportError) -> HostPort {
        guard status == 200 else {
            throw TransportError(.unreachable, "\(source) answered \(status) to POST /v1/punch/\(key.hex): \(DiscoveryHTTP.errorMessage(body))")
        }
        guard case .object(let members)? = try? JSONParser.parse(body),
              case .string(let t)? = members.first(where: { $0.name == "target" })?.value,
              case .success(let hp) = HostPort.parse(t) else {
            throw TransportError(.unreachable, "\(source): malformed punch answer for \(key.hex)")
        }
        return hp
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
        return ResolvedPeer(stcpr: entry.stcpr.compactMap { try? HostPort.parse($0).get() },
                            sudph: entry.sudph.flatMap { try? HostPort.parse($0).get() }, dmsg: entry.dmsg)
    }
}
