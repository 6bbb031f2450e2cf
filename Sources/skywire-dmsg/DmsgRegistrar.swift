import Logging
import NIOConcurrencyHelpers
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
import SkywireTransport
import SkywireVisor

/// Keeps the relay listed in the discovery service (docs/dmsg.md "Discovery"): a transport entry
/// whose `stcpr` address is where clients dial (the relay speaks the stcpr handshake), and a
/// `dmsg` service entry (`GET /v1/services/dmsg` lists relays) with `stats.clients`. Refreshed
/// every ttl/3 like a visor's entries; failures are logged and retried at the next refresh.
final class DmsgRegistrar: Sendable {
    static let version = "0.1.0"
    static let putTimeoutSeconds = 5
    private let url: DiscoveryURL
    private let keyPair: KeyPair
    private let address: String
    private let country: String
    private let server: DmsgRelayServer
    private let logger: Logger
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    init(url: String, keyPair: KeyPair, address: String, country: String, server: DmsgRelayServer, logger: Logger) throws {
        self.url = try DiscoveryURL(url)
        self.keyPair = keyPair
        self.address = address
        self.country = country
        self.server = server
        self.logger = logger
    }

    func start() {
        let t = Task { [self] in
            var ttl = DiscoveryAPI.defaultTTLSeconds
            let url = self.url
            if let (status, body) = try? await BlockingPool.shared.run({
                try DiscoveryHTTPClient.exchange(url, method: "GET", target: "/v1/info", timeoutSeconds: 5)
            }), status == 200, let info = try? DiscoveryInfo.decode(body) {
                ttl = info.ttl
            }
            let interval = max(1, ttl / 3)
            logger.info("discovery: registering \(address) every \(interval) s", metadata: ["url": "\(url.host):\(url.port)"])
            var lastProblem: String?
            while !Task.isCancelled {
                let clients = await server.snapshot().clients
                let problem: String?
                do {
                    problem = try await BlockingPool.shared.run { [self] in refresh(clients: clients) }
                } catch {
                    problem = "\(error)"
                }
                if let problem, problem != lastProblem {
                    logger.warning("discovery: \(problem)")
                } else if problem == nil, lastProblem != nil {
                    logger.info("discovery: registered again")
                }
                lastProblem = problem
                try? await Task.sleep(nanoseconds: UInt64(interval) * 1_000_000_000)
            }
        }
        task.withLockedValue { $0 = t }
    }

    /// Seconds each DELETE on stop may take (systemd's stop timeout is far longer).
    static let deleteTimeoutSeconds = 2

    /// Stops refreshing and deletes both entries (SIGTERM), each DELETE bounded by
    /// `deleteTimeoutSeconds`; the problems, or nil when both were deleted.
    func stop() async -> String? {
        let t = task.withLockedValue { t -> Task<Void, Never>? in defer { t = nil }; return t }
        t?.cancel()
        // A refresh in flight ends within its own timeout; waiting keeps it from re-creating an entry.
        _ = await t?.value
        let pk = keyPair.publicKey.hex
        let problems: [String] = (try? await BlockingPool.shared.run { [self] in
            ["/v1/services/dmsg/\(pk)", "/v1/transports/\(pk)"].compactMap { target in
                exchange("DELETE", target, body: [], timeout: Self.deleteTimeoutSeconds)
            }
        }) ?? ["DELETE: not run"]
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// One signed request; the problem, or nil on 2xx.
    private func exchange(_ method: String, _ target: String, body: [UInt8], timeout: Int) -> String? {
        let h = DiscoverySigning.sign(keyPair: keyPair, method: method, target: target, body: body, timestampMs: DiscoveryTime.nowMs())
        do {
            let (status, resp) = try DiscoveryHTTPClient.exchange(url, method: method, target: target, headers: h.fields,
                                                                  body: body, timeoutSeconds: timeout)
            return (200..<300).contains(status) ? nil : "\(method) \(target): \(status) \(DiscoveryHTTP.errorMessage(resp))"
        } catch {
            return "\(method) \(target): \(error)"
        }
    }

    /// One round of PUTs; the problem, or nil when both were accepted.
    private func refresh(clients: Int) -> String? {
        let pk = keyPair.publicKey.hex
        let transport = Array(TransportRegistration(stcpr: [address], sudph: false).json().compact().utf8)
        let service = Array(ServiceRegistration(version: Self.version, country: country, label: "dmsg relay",
                                                stats: ["clients": Int64(clients)]).json().compact().utf8)
        let problems = [("/v1/transports/\(pk)", transport), ("/v1/services/dmsg/\(pk)", service)].compactMap { target, body in
            exchange("PUT", target, body: body, timeout: Self.putTimeoutSeconds)
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }
}
