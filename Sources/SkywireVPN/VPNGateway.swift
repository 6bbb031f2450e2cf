import Logging
import NIOConcurrencyHelpers
import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// The LAN side of `vpn-client` in the gateway role (docs/gateway.md): the LAN kill switch
/// (nft table `inet skywire_gateway`, installed before the first handshake and kept in the
/// kernel until an explicit stop), forwarding and NAT into the tunnel, per-device bypass through
/// a policy rule, and dnsmasq serving DHCP and DNS on the LAN with DNS forwarded into the tunnel.
/// Every change is recorded in `vpn-gateway.state` before it is made.
public final class VPNGateway: @unchecked Sendable {
    // @unchecked Sendable: every `var` is guarded by `lock`.
    static let stateFileName = "vpn-gateway.state"
    static let ipForwardKey = "net.ipv4.ip_forward"
    static let ip6ForwardKey = "net.ipv6.conf.all.forwarding"
    /// The LAN's unique local /64 (RFC 4193), kept across restarts.
    static let ulaFileName = "vpn-gateway.ula"
    static let dnsmasqCandidates = ["/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"]
    static let leaseTime = "12h"

    let options: VPNGatewayOptions
    let tun: String
    let stateDirectory: String
    let logger: Logger
    let state: VPNStateFile

    let lock = NIOLock()
    var entries: [(key: String, value: String)] = []
    var dnsmasqPID: pid_t?
    var dns: [IPAddress] = []
    /// The LAN's IPv6 /64 while the tunnel carries IPv6 (router advertisements, NAT66), else nil.
    var lan6: IPPrefix?
    /// dnsmasq is watched and restarted (VPNGateway+Supervisor.swift) from its start until
    /// `teardown`.
    var supervising = false
    var supervision = DNSMasqSupervision(startedAt: 0)
    var supervisor: Task<Void, Never>?

    public init(options: VPNGatewayOptions, tun: String, stateDirectory: String, logger: Logger) {
        self.options = options
        self.tun = tun
        self.stateDirectory = stateDirectory
        self.logger = logger
        state = VPNStateFile(directory: stateDirectory, name: Self.stateFileName)
    }

    var leasePath: String { stateDirectory + "/gateway-dnsmasq.leases" }
    var dnsmasqLogPath: String { stateDirectory + "/gateway-dnsmasq.log" }

    // MARK: Fence

    /// Undoes what a previous run left but the fence and ip_forward, then (re)installs the
    /// fence in one transaction (an existing table is replaced atomically: no open moment).
    public func installFence() throws {
        // A wrong --lan changes nothing: checked before anything is touched.
        guard try RouteNetlink().linkExists(options.lan) else {
            throw VPNError("--lan: there is no interface \"\(options.lan)\"")
        }
        let kept = Self.cleanLeftovers(state, keepFence: true, logger: logger)
        lock.withLock { entries = kept }
        if !kept.contains(where: { $0.key == "nft_table" }) { try record("nft_table", VPNFirewall.gatewayTable) }
        try applyRuleset(dns: [])
    }

    private func applyRuleset(dns: [IPAddress]) throws {
        try NFTables.apply(VPNFirewall.gatewayRuleset(lan: options.lan, lanNetwork: options.lanNetwork, tun: tun,
                                                      bypassMACs: options.bypassMACs, bypassIPs: options.bypassIPs,
                                                      dns: dns, lan6: lock.withLock { lan6 }))
    }

    // MARK: Configure

    /// After the tunnel is up: the DNS fence, forwarding, bypass routing and dnsmasq. With
    /// `ipv6` (the tunnel carries IPv6) the LAN gets the gateway's ULA /64 by router
    /// advertisements and its IPv6 is NATed into the tunnel; without, IPv6 stays fenced.
    public func configure(dns: [IPAddress], ipv6: Bool = false) throws {
        guard !dns.isEmpty else {
            throw VPNError("the gateway needs DNS servers to forward the LAN's queries to: give --dns IP or run the exit with --dns")
        }
        let prefix = ipv6 ? try VPNIPv6Network.storedULA(directory: stateDirectory, name: Self.ulaFileName) : nil
        lock.withLock { lan6 = prefix }
        try applyRuleset(dns: dns)
        if prefix != nil {
            if !lock.withLock({ entries.contains { $0.key == "ip6_forward" } }) {
                try record("ip6_forward", (try? Sysctl.read(Self.ip6ForwardKey)) ?? "0")
            }
            try Sysctl.write(Self.ip6ForwardKey, "1")
        }
        lock.withLock { self.dns = dns }
        if !lock.withLock({ entries.contains { $0.key == "ip_forward" } }) {
            try record("ip_forward", (try? Sysctl.read(Self.ipForwardKey)) ?? "0")
        }
        try Sysctl.write(Self.ipForwardKey, "1")
        if options.hasBypass { try configureBypass() }
        try startDNSMasq(dns: dns)
    }

    /// Marked (bypassing) packets look up a table whose default route is the uplink's.
    private func configureBypass() throws {
        let nl = try RouteNetlink()
        guard let spec = try bypassUplinkRoute(nl) else {
            let defaults = try nl.defaultRoutes(family: .v4).filter { $0.interfaceName != tun && $0.table == 254 }
            let names = defaults.map(\.interfaceName).joined(separator: ", ")
            if let u = options.uplink { throw VPNError("--bypass: no default route on the uplink \(u) (default routes: \(names.isEmpty ? "none" : names))") }
            throw VPNError(defaults.isEmpty ? "--bypass needs a default route on the uplink; there is none"
                                            : "--bypass: default routes on several interfaces (\(names)); pick one with --uplink")
        }
        let rule = RuleSpec(family: .v4, priority: VPNFirewall.bypassRulePriority, table: VPNFirewall.bypassTable,
                            fwmark: VPNFirewall.bypassMark)
        try record("route", spec.stateValue)
        do { try nl.addRoute(spec) } catch let e as NetlinkError where e.alreadyExists {}
        try record("rule", "\(rule.priority) \(rule.table) \(rule.fwmark!)")
        do { try nl.addRule(rule) } catch let e as NetlinkError where e.alreadyExists {}
    }

    /// The bypass table's default route: a copy of the uplink's (`--uplink`, else the only
    /// main-table default route not on the tunnel); nil when there is not exactly one.
    func bypassUplinkRoute(_ nl: RouteNetlink) throws -> RouteSpec? {
        let defaults = try nl.defaultRoutes(family: .v4).filter { $0.interfaceName != tun && $0.table == RouteSpec.mainTable }
        let candidates = options.uplink.map { u in defaults.filter { $0.interfaceName == u } } ?? defaults
        guard candidates.count == 1, let route = candidates.first, let any = IPPrefix("0.0.0.0/0") else { return nil }
        return RouteSpec(destination: any, interface: route.interfaceName, gateway: route.gateway, table: VPNFirewall.bypassTable)
    }

    // MARK: Stop

    /// Stops dnsmasq and undoes the bypass routing; with `keepFence` (visor shutdown, failed
    /// start) the LAN kill switch and ip_forward stay, else everything is restored.
    public func teardown(keepFence: Bool) {
        // Supervision ends first (under the lock the supervisor restarts under): no restart
        // races the stop.
        if let pid = endSupervision() { Subprocess.terminate(pid, expectedName: "dnsmasq") }
        let kept = Self.cleanLeftovers(state, keepFence: keepFence, logger: logger)
        lock.withLock { entries = kept }
        if keepFence {
            // The table stays as it is, DNS fence included.
            logger.info("gateway: LAN kill switch left in place", metadata: ["lan": "\(options.lan)"])
        }
    }

    /// Undoes a state file's entries, last first; with `keepFence` the `nft_table` and
    /// `ip_forward` entries are kept (file rewritten with them) and returned.
    @discardableResult
    public static func cleanLeftovers(directory: String, keepFence: Bool, logger: Logger) -> Int {
        cleanLeftovers(VPNStateFile(directory: directory, name: stateFileName), keepFence: keepFence, logger: logger).count
    }

    static func cleanLeftovers(_ state: VPNStateFile, keepFence: Bool, logger: Logger) -> [(key: String, value: String)] {
        let all = state.load()
        guard !all.isEmpty else { return [] }
        var kept: [(key: String, value: String)] = []
        let nl = try? RouteNetlink()
        for (key, value) in all.reversed() {
            if keepFence && (key == "nft_table" || key == "ip_forward" || key == "ip6_forward") {
                kept.insert((key, value), at: 0)
                continue
            }
            do {
                switch key {
                case "nft_table":
                    try NFTables.deleteTable(family: VPNFirewall.family, name: value)
                case "ip_forward", "ip6_forward":
                    try Sysctl.write(key == "ip_forward" ? ipForwardKey : ip6ForwardKey, value)
                case "route":
                    if let spec = RouteSpec(stateValue: value), let nl {
                        do { try nl.removeRoute(spec) } catch let e as NetlinkError where e.notFound {}
                    }
                case "rule":
                    let f = value.split(separator: " ").compactMap { UInt32($0) }
                    if f.count == 3, let nl {
                        do { try nl.removeRule(RuleSpec(family: .v4, priority: f[0], table: f[1], fwmark: f[2])) }
                        catch let e as NetlinkError where e.notFound {}
                    }
                case "address":
                    let f = value.split(separator: " ").map(String.init)
                    if f.count == 2, let p = IPPrefix(f[0]), let nl {
                        do { try nl.removeAddress(p, interface: f[1]) } catch let e as NetlinkError where e.notFound {}
                    }
                case "dnsmasq_pid":
                    if let pid = pid_t(value) { Subprocess.terminate(pid, expectedName: "dnsmasq") }
                default:
                    logger.warning("gateway: unknown state entry", metadata: ["entry": "\(key)=\(value)"])
                }
            } catch {
                logger.warning("gateway: cleanup step failed", metadata: ["step": "\(key)=\(value)", "error": "\(error)"])
            }
        }
        if kept.isEmpty { state.remove() } else { try? state.save(kept) }
        return kept
    }

    /// Drops the last `key=value` entry (the change it announced was undone or did not happen).
    func unrecord(_ key: String, _ value: String) throws {
        let all: [(key: String, value: String)] = lock.withLock {
            if let i = entries.lastIndex(where: { $0.key == key && $0.value == value }) { entries.remove(at: i) }
            return entries
        }
        try state.save(all)
    }

    func record(_ key: String, _ value: String) throws {
        let all: [(key: String, value: String)] = lock.withLock {
            entries.append((key, value))
            return entries
        }
        try state.save(all)
    }
}
