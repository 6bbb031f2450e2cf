import Logging
import NIOConcurrencyHelpers
import SkywireConfig
import SkywireCrypto
import SkywireDiscovery
import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// Keeps this visor's entries alive in the discovery service (docs/discovery.md): its transport
/// entry, and a `vpn` / `proxy` service entry while vpn-server / skysocks run. Refreshes every
/// ttl/3 (ttl from `GET /v1/info`), deletes what it registered on stop. Failures are logged and
/// retried at the next refresh; they never stop the visor.
final class DiscoveryRegistrar: Sendable {
    /// The app whose running state decides each service entry.
    static let serviceApps: [(AppName, DiscoveryServiceType)] = [(.vpnServer, .vpn), (.skysocks, .proxy)]

    private let url: DiscoveryURL
    private let keyPair: KeyPair
    private let country: String
    private let stcpr: [String]
    private let apps: AppRegistry
    private let logger: Logger
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Service types currently registered (to delete them when their app stops, and on stop).
    private let registered = NIOLockedValueBox<Set<DiscoveryServiceType>>([])
    private let lastError = NIOLockedValueBox<String?>(nil)
    /// What the periodic refresh PUTs (set once `GET /v1/info` was read), for `refreshNow`.
    private let advertising = NIOLockedValueBox<(stcpr: [String], sudph: Bool)?>(nil)
    /// Starts BINDing the sudph socket at the rendezvous `GET /v1/info` names, every given number
    /// of seconds; true when it does (the transport entry then says `sudph: true`).
    private let bindRendezvous: @Sendable (HostPort, Int) -> Bool
    /// The dmsg relays whose session is up (the entry's `dmsg`), read at each refresh and every
    /// `relayCheckSeconds` between refreshes: a change is registered at once.
    private let relays: @Sendable () -> [PublicKey]
    /// The `dmsg` list last sent.
    private let advertisedRelays = NIOLockedValueBox<[PublicKey]>([])
    /// How often the relay set is compared with what was registered (at most one extra PUT per this).
    static let relayCheckSeconds = 3

    init(url: DiscoveryURL, keyPair: KeyPair, country: String, stcpr: [String], apps: AppRegistry, logger: Logger,
         relays: @escaping @Sendable () -> [PublicKey] = { [] },
         bindRendezvous: @escaping @Sendable (HostPort, Int) -> Bool = { _, _ in false }) {
        self.bindRendezvous = bindRendezvous
        self.relays = relays
        self.url = url
        self.keyPair = keyPair
        self.country = country
        self.stcpr = stcpr
        self.apps = apps
        self.logger = logger
    }

    func start() {
        // The blocking HTTP exchanges (5 s timeouts) run on BlockingPool.shared, never on the
        // cooperative pool or an event loop.
        let t = Task { [self] in
            var ttl = DiscoveryAPI.defaultTTLSeconds
            var sudph = false
            var stcpr = self.stcpr
            let url = self.url
            if let (status, body) = try? await BlockingPool.shared.run({
                try DiscoveryHTTPClient.exchange(url, method: "GET", target: "/v1/info", timeoutSeconds: 5)
            }),
               status == 200, let info = try? DiscoveryInfo.decode(body) {
                ttl = info.ttl
                if info.privateAddresses == false {
                    let (kept, dropped) = Self.publicOnly(stcpr)
                    stcpr = kept
                    if !dropped.isEmpty {
                        logger.info("discovery: the service takes public addresses only; not advertising \(dropped.joined(separator: ", ")) (set transport.public_addr)")
                    }
                }
                if let udp = info.udp {
                    sudph = bindRendezvous(udp, Self.bindInterval(ttl: ttl))
                    logger.info(sudph ? "discovery: sudph binds at the rendezvous \(udp)" : "discovery: sudph not bound at the rendezvous \(udp) (sudph disabled, or not an IP address)")
                }
            }
            let (interval, advertised) = (max(1, ttl / 3), stcpr)
            logger.info("discovery: registering every \(interval) s", metadata: ["url": "\(url.host):\(url.port)"])
            advertising.withLockedValue { $0 = (advertised, sudph) }
            while !Task.isCancelled {
                try? await BlockingPool.shared.run { [self, sudph] in refresh(stcpr: advertised, sudph: sudph) }
                // Sleep until the next refresh, or until the relay set differs from the one sent.
                var waited = 0
                while waited < interval, !Task.isCancelled {
                    let step = min(Self.relayCheckSeconds, interval - waited)
                    try? await Task.sleep(nanoseconds: UInt64(step) * 1_000_000_000)
                    waited += step
                    if relays() != advertisedRelays.withLockedValue({ $0 }) { break }
                }
            }
        }
        task.withLockedValue { $0 = t }
    }

    /// Refreshes the entries now, off the periodic schedule (the uplink changed: the service
    /// sees the new source address at once). Nothing before the first registration.
    func refreshNow() {
        guard let (stcpr, sudph) = advertising.withLockedValue({ $0 }) else { return }
        Task { try? await BlockingPool.shared.run { [self] in refresh(stcpr: stcpr, sudph: sudph) } }
    }

    /// Stops refreshing and deletes the entries (best effort, bounded by the client timeout).
    func stop() async {
        let t = task.withLockedValue { t -> Task<Void, Never>? in defer { t = nil }; return t }
        guard let t else { return }
        t.cancel()
        _ = await t.value
        let types = registered.withLockedValue { $0 }
        try? await BlockingPool.shared.run { [self] in
            for type in types {
                _ = try? write("DELETE", "/v1/services/\(type.rawValue)/\(keyPair.publicKey.hex)", body: [])
            }
            _ = try? write("DELETE", "/v1/transports/\(keyPair.publicKey.hex)", body: [])
        }
        registered.withLockedValue { $0 = [] }
        logger.info("discovery: entries deleted")
    }

    /// Seconds between BINDs: every 15 s (DiscoveryAPI.bindIntervalSeconds), more often when the
    /// service's TTL is short, so that the binding never expires between two BINDs (ttl/3, ≥ 1).
    static func bindInterval(ttl: Int) -> Int {
        min(DiscoveryAPI.bindIntervalSeconds, max(1, ttl / 3))
    }

    /// Whether an `apps ls` row earns a service entry: the app runs and admits some key. A running
    /// app whose whitelist is empty (`access: closed`) refuses everyone, so advertising it would only
    /// send clients to a refusal; its entry is left out (and deleted if it was there).
    static func advertised(row: ControlValue) -> Bool {
        row["status"]?.stringValue == "running" && row["access"]?.stringValue != AppWhitelist.keys([]).access
    }

    /// The `stats` a service entry reports, from its app's `apps ls` row: vpn-server the clients
    /// connected now, skysocks the SOCKS sessions open now (`{"connected": N}`); nil without them.
    static func stats(app: AppName, row: ControlValue) -> [String: Int64]? {
        let info = row["info"]
        switch app {
        case .vpnServer: return info?["clients"]?.arrayValue.map { ["connected": Int64($0.count)] }
        case .skysocks: return info?["active_sessions"]?.intValue.map { ["connected": max(0, $0)] }
        default: return nil
        }
    }

    private func write(_ method: String, _ target: String, body: [UInt8]) throws(DiscoveryError) {
        let h = DiscoverySigning.sign(keyPair: keyPair, method: method, target: target, body: body,
                                      timestampMs: DiscoveryTime.nowMs())
        let (status, resp) = try DiscoveryHTTPClient.exchange(url, method: method, target: target, headers: h.fields,
                                                              body: body, timeoutSeconds: 5)
        guard (200..<300).contains(status) else { throw DiscoveryError(status, DiscoveryHTTP.errorMessage(resp)) }
    }

    /// `addresses` split into those a public service accepts and the others (with the reason).
    static func publicOnly(_ addresses: [String]) -> (kept: [String], dropped: [String]) {
        var kept: [String] = [], dropped: [String] = []
        for a in addresses {
            if case .success(let hp) = HostPort.parse(a), let why = DiscoveryAddressPolicy.nonPublicReason(host: hp.host) {
                dropped.append("\(a) (\(why))")
            } else {
                kept.append(a)
            }
        }
        return (kept, dropped)
    }

    private func refresh(stcpr: [String], sudph: Bool) {
        let pk = keyPair.publicKey.hex
        var problems: [String] = []
        let dmsg = relays()
        let tb = Array(TransportRegistration(stcpr: stcpr, sudph: sudph, dmsg: dmsg).json().compact().utf8)
        do {
            try write("PUT", "/v1/transports/\(pk)", body: tb)
            advertisedRelays.withLockedValue { $0 = dmsg }
        } catch { problems.append("transports: \(error.message)") }
        var running: [String: ControlValue] = [:]
        for v in apps.snapshot() where Self.advertised(row: v) {
            if let name = v["name"]?.stringValue { running[name] = v }
        }
        for (app, type) in Self.serviceApps {
            let target = "/v1/services/\(type.rawValue)/\(pk)"
            if let row = running[app.rawValue] {
                guard !country.isEmpty else { continue }
                let body = Array(ServiceRegistration(version: SkywireVersion.string, country: country,
                                                     stats: Self.stats(app: app, row: row)).json().compact().utf8)
                do {
                    try write("PUT", target, body: body)
                    registered.withLockedValue { _ = $0.insert(type) }
                } catch { problems.append("\(type.rawValue): \(error.message)") }
            } else if registered.withLockedValue({ $0.contains(type) }) {
                do {
                    try write("DELETE", target, body: [])
                    registered.withLockedValue { _ = $0.remove(type) }
                } catch { problems.append("\(type.rawValue) delete: \(error.message)") }
            }
        }
        // Log a failure once, and the recovery once.
        let now = problems.isEmpty ? nil : problems.joined(separator: "; ")
        let before = lastError.withLockedValue { v -> String? in defer { v = now }; return v }
        if let now, now != before { logger.warning("discovery: registration failed: \(now)") }
        if now == nil, before != nil { logger.info("discovery: registration works again") }
    }
}

/// `GET /v1/info`.
public struct DiscoveryInfo {
    public var ttl: Int
    /// The UDP rendezvous (`udp`), nil when absent or not HOST:PORT.
    var udp: HostPort?
    /// `private_addresses`: whether the service accepts non-public transport addresses; nil
    /// from a service before the address policy (it accepted everything).
    var privateAddresses: Bool? = nil

    public static func decode(_ body: [UInt8]) throws -> DiscoveryInfo {
        guard case .object(let members) = try JSONParser.parse(body),
              case .number(let n)? = members.first(where: { $0.name == "ttl" })?.value, let ttl = Int(n), ttl > 0 else {
            throw DiscoveryError(502, "GET /v1/info: no ttl")
        }
        var udp: HostPort? = nil
        if case .string(let s)? = members.first(where: { $0.name == "udp" })?.value, case .success(let hp) = HostPort.parse(s) {
            udp = hp
        }
        var privateAddresses: Bool? = nil
        if case .bool(let b)? = members.first(where: { $0.name == "private_addresses" })?.value { privateAddresses = b }
        return DiscoveryInfo(ttl: ttl, udp: udp, privateAddresses: privateAddresses)
    }
}

/// Unix time in milliseconds (clock_gettime(CLOCK_REALTIME)) for signed writes.
public enum DiscoveryTime {
    public static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
