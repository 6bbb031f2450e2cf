import SkywireSystem
#if canImport(Glibc)
import Glibc
#endif

/// The LAN interface and its dnsmasq (DHCP, and DNS forwarded only to the tunnel's servers).
extension VPNGateway {
    /// Brings the LAN interface up with the gateway's address (added, and recorded, only when
    /// it is missing: an address the system configured is left alone).
    func configureLANInterface() throws {
        let nl = try RouteNetlink()
        guard nl.linkExists(options.lan) else {
            throw VPNError("--lan: there is no interface \"\(options.lan)\"")
        }
        try nl.setLink(options.lan, up: true)
        let existing = try nl.addresses()
        for address in [options.lanAddress] + (lanAddress6.map { [$0] } ?? [])
        where !existing.contains(where: { $0.interfaceName == options.lan && $0.prefix == address }) {
            try record("address", "\(address) \(options.lan)")
            do { try nl.addAddress(address, interface: options.lan) }
            catch let e as NetlinkError where e.alreadyExists {}
        }
    }

    /// The gateway's IPv6 address on the LAN (`lan6::1/64`) while the LAN gets IPv6.
    var lanAddress6: IPPrefix? {
        lock.withLock { lan6 }.flatMap { VPNIPv6Network(prefix: $0, routed: false)?.serverPrefix }
    }

    /// The dnsmasq command line: no config file, no /etc/resolv.conf, no /etc/hosts; listens on
    /// the LAN interface only; forwards every query to `dns` (reached through the tunnel). The
    /// lease file outlives dnsmasq, so a restarted one keeps the LAN's addresses.
    /// With `lan6` (the tunnel carries IPv6) dnsmasq also sends router advertisements.
    func dnsmasqArguments(dns: [IPAddress], lan6: IPPrefix? = nil) -> [String] {
        let gw = options.lanAddress.address.description
        let mask = IPAddress(v4: options.lanAddress.length == 0 ? 0 : UInt32.max << UInt32(32 - options.lanAddress.length))
        var args = ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                    "--log-facility=-", "--interface=\(options.lan)", "--except-interface=lo", "--bind-interfaces",
                    "--pid-file=\(stateDirectory)/gateway-dnsmasq.pid", "--dhcp-authoritative",
                    "--dhcp-range=\(options.dhcpFirst),\(options.dhcpLast),\(mask),\(Self.leaseTime)",
                    "--dhcp-option=option:router,\(gw)", "--dhcp-option=option:dns-server,\(gw)",
                    "--dhcp-leasefile=\(leasePath)", "--cache-size=1000"]
        args += dns.map { "--server=\($0)" }
        // IPv6: router advertisements of the LAN's /64 (SLAAC, no DHCPv6), the gateway as
        // router and DNS server (RDNSS, RFC 8106).
        if let lan6 {
            args += ["--enable-ra", "--dhcp-range=\(lan6.address),ra-only,\(lan6.length),\(Self.leaseTime)"]
        }
        return args
    }

    /// The dnsmasq executable, or an error naming the package that provides it.
    static func dnsmasqBinary() throws -> String {
        guard let binary = dnsmasqCandidates.first(where: { access($0, X_OK) == 0 }) else {
            throw VPNError("the gateway role needs dnsmasq (Debian package dnsmasq-base)")
        }
        return binary
    }

    /// Spawns dnsmasq (no checks: the caller waits, or the supervisor watches).
    /// (`lan6` is passed in: the supervisor calls this holding `lock`.)
    func spawnDNSMasq(dns: [IPAddress], lan6: IPPrefix?) throws -> pid_t {
        try Subprocess.spawn(Self.dnsmasqBinary(), dnsmasqArguments(dns: dns, lan6: lan6), logPath: dnsmasqLogPath)
    }

    /// Starts dnsmasq (recorded by PID), checks it is still running a moment later, then
    /// supervises it (restarted when it exits, until `teardown`). Without `watch` no task
    /// calls `superviseOnce` (the unit tests drive it with their own clock).
    func startDNSMasq(dns: [IPAddress], watch: Bool = true) throws {
        _ = try Self.dnsmasqBinary()   // before anything is changed
        if let old = endSupervision() { Subprocess.terminate(old, expectedName: "dnsmasq") }
        try configureLANInterface()
        try FileIO.makeDirectories(stateDirectory)
        lock.withLock { self.dns = dns }
        let pid = try spawnDNSMasq(dns: dns, lan6: lock.withLock { lan6 })
        try record("dnsmasq_pid", "\(pid)")
        lock.withLock { dnsmasqPID = pid }
        // dnsmasq checks its options and binds its sockets before it serves: a failure shows
        // as an early exit.
        for _ in 0..<10 {
            usleep(50_000)
            if Subprocess.hasExited(pid) {
                lock.withLock { dnsmasqPID = nil }
                let log = (try? FileIO.read(dnsmasqLogPath)).map { String(decoding: $0.suffix(400), as: UTF8.self) } ?? ""
                throw VPNError("dnsmasq exited at once: \(log.split(separator: "\n").joined(separator: "; "))")
            }
        }
        startSupervising(watch: watch)
        logger.info("gateway: dnsmasq serving the LAN", metadata: [
            "lan": "\(options.lan)", "addr": "\(options.lanAddress)", "pid": "\(pid)",
            "dns": "\(dns.map(\.description).joined(separator: ","))"])
    }

    // MARK: Status

    /// One DHCP lease: `EXPIRY MAC IP HOSTNAME CLIENTID` in dnsmasq's lease file.
    public struct Lease: Sendable, Equatable {
        public var expires: Int64
        public var mac: String
        public var ip: IPAddress
        public var hostname: String?
    }

    /// A device seen on the LAN: a DHCP lease, or a complete neighbour (ARP) entry on the LAN
    /// interface for a device with a static address.
    public struct Client: Sendable, Equatable {
        public var mac: String
        public var ip: IPAddress
        public var hostname: String?
        public var leaseExpires: Int64?
    }

    public struct Status: Sendable {
        public var lan: String
        public var lanAddress: IPPrefix
        public var dhcpRunning: Bool
        /// dnsmasq exited and its restart is pending.
        public var dhcpRestarting: Bool
        /// Times dnsmasq was restarted after it exited.
        public var dhcpRestarts: Int
        /// How the last dnsmasq ended (`killed by signal 9`), nil before any exit.
        public var dhcpLastExit: String?
        public var clients: [Client]
        public var bypassMACs: [String]
        public var bypassIPs: [IPAddress]
        public var bytesUp: UInt64
        public var bytesDown: UInt64
        public var bytesBypass: UInt64
        public var droppedPackets: UInt64
        public var dns: [IPAddress]
        public var fence: Bool
    }

    static func parseLeases(_ text: String) -> [Lease] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 4, let exp = Int64(f[0]), let ip = IPAddress(f[2]) else { return nil }
            return Lease(expires: exp, mac: f[1], ip: ip, hostname: f[3] == "*" ? nil : f[3])
        }
    }

    /// Complete IPv4 neighbour entries of `interface` from /proc/net/arp
    /// (`IP HWTYPE FLAGS MAC MASK DEVICE`, flag 0x2 = complete).
    static func parseNeighbours(_ text: String, interface: String) -> [(ip: IPAddress, mac: String)] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 6, f[5] == interface, let flags = UInt32(f[2].dropFirst(2), radix: 16), flags & 0x2 != 0,
                  let ip = IPAddress(f[0]), f[3] != "00:00:00:00:00:00" else { return nil }
            return (ip, f[3].lowercased())
        }
    }

    /// Leases first, then neighbours that have none.
    static func clients(leases: [Lease], neighbours: [(ip: IPAddress, mac: String)]) -> [Client] {
        var out = leases.map { Client(mac: $0.mac, ip: $0.ip, hostname: $0.hostname, leaseExpires: $0.expires) }
        for n in neighbours where !out.contains(where: { $0.ip == n.ip }) {
            out.append(Client(mac: n.mac, ip: n.ip, hostname: nil, leaseExpires: nil))
        }
        return out
    }

    public var status: Status {
        let (pid, dns, supervised, sup): (pid_t?, [IPAddress], Bool, DNSMasqSupervision) =
            lock.withLock { (dnsmasqPID, self.dns, supervising, supervision) }
        let leases = ((try? FileIO.read(leasePath)) ?? nil).map { Self.parseLeases(String(decoding: $0, as: UTF8.self)) } ?? []
        let arp = ((try? FileIO.read("/proc/net/arp")) ?? nil).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let neighbours = Self.parseNeighbours(arp, interface: options.lan).filter { options.lanNetwork.contains($0.ip) }
        let listing = (try? NFTables.listCounters(family: VPNFirewall.family, table: VPNFirewall.gatewayTable)) ?? nil
        let c = listing.map(VPNFirewall.parseCounters) ?? [:]
        let running = pid.map { Subprocess.processName($0) == "dnsmasq" } ?? false
        return Status(lan: options.lan, lanAddress: options.lanAddress,
                      dhcpRunning: running, dhcpRestarting: supervised && !running, dhcpRestarts: sup.restarts, dhcpLastExit: sup.lastExit,
                      clients: Self.clients(leases: leases, neighbours: neighbours), bypassMACs: options.bypassMACs, bypassIPs: options.bypassIPs,
                      bytesUp: c["lan_up"]?.bytes ?? 0, bytesDown: c["lan_down"]?.bytes ?? 0,
                      bytesBypass: c["lan_bypass"]?.bytes ?? 0, droppedPackets: c["lan_dropped"]?.packets ?? 0,
                      dns: dns, fence: listing != nil)
    }
}
