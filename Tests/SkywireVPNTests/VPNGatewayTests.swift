import Logging
import SkywireCrypto
import SkywireSystem
import SkywireTestSupport
import XCTest
@testable import SkywireVPN

final class VPNGatewayTests: XCTestCase {
    let pk = KeyPair.generate().publicKey.hex

    func parse(_ extra: [String]) throws -> VPNClientArguments {
        try VPNClientArguments(parsing: ["-k", pk] + extra)
    }

    func assertRefused(_ extra: [String], _ message: String, line: UInt = #line) {
        XCTAssertThrowsError(try parse(extra), line: line) { e in
            XCTAssertTrue("\(e)".contains(message), "\(e)", line: line)
        }
    }

    func testGatewayArguments() throws {
        XCTAssertNil(try parse([]).gateway)
        let d = try XCTUnwrap(try parse(["--lan", "eth1"]).gateway)
        XCTAssertEqual(d.lanAddress, IPPrefix("192.168.50.1/24"))
        XCTAssertEqual(d.lanNetwork, IPPrefix("192.168.50.0/24"))
        XCTAssertEqual(d.dhcpFirst, IPAddress("192.168.50.2"))
        XCTAssertEqual(d.dhcpLast, IPAddress("192.168.50.254"))
        XCTAssertFalse(d.hasBypass)

        let g = try XCTUnwrap(try parse(["--lan", "br-lan", "--lan-subnet", "10.20.30.254/24",
                                         "--bypass", "AA:bb:cc:dd:ee:01,10.20.30.7", "--bypass=10.20.30.8,aa:bb:cc:dd:ee:01",
                                         "--uplink", "eth0"]).gateway)
        XCTAssertEqual(g.bypassMACs, ["aa:bb:cc:dd:ee:01"])
        XCTAssertEqual(g.bypassIPs, [IPAddress("10.20.30.7")!, IPAddress("10.20.30.8")!])
        XCTAssertEqual(g.uplink, "eth0")
        // The gateway is at the top: the range is below it.
        XCTAssertEqual(g.dhcpFirst, IPAddress("10.20.30.1"))
        XCTAssertEqual(g.dhcpLast, IPAddress("10.20.30.253"))
        let r = try XCTUnwrap(try parse(["--lan", "eth1", "--dhcp-range", "192.168.50.100-192.168.50.150"]).gateway)
        XCTAssertEqual(r.dhcpFirst, IPAddress("192.168.50.100"))
        XCTAssertEqual(r.dhcpLast, IPAddress("192.168.50.150"))
    }

    func testGatewayArgumentErrors() {
        assertRefused(["--bypass", "10.0.0.1"], "need --lan IFACE")
        assertRefused(["--lan-subnet", "10.0.0.1/24"], "need --lan IFACE")
        assertRefused(["--lan", "skwvpn0"], "the tunnel")
        assertRefused(["--lan", "lo"], "loopback")
        assertRefused(["--lan", "an-interface-name-too-long"], "is not an interface name")
        assertRefused(["--lan", "eth 1"], "is not an interface name")
        assertRefused(["--lan", "eth1", "--lan-subnet", "192.168.50.1"], "is not ADDR/LEN")
        assertRefused(["--lan", "eth1", "--lan-subnet", "192.168.50.0/24"], "network or broadcast")
        assertRefused(["--lan", "eth1", "--lan-subnet", "192.168.50.255/24"], "network or broadcast")
        assertRefused(["--lan", "eth1", "--lan-subnet", "10.0.0.1/31"], "LEN 8...30")
        assertRefused(["--lan", "eth1", "--lan-subnet", "fd00::1/64"], "IPv4")
        assertRefused(["--lan", "eth1", "--bypass", "aa:bb:cc:dd:ee"], "neither a MAC")
        assertRefused(["--lan", "eth1", "--bypass", "192.168.50.7,"], "neither a MAC")
        assertRefused(["--lan", "eth1", "--bypass", "192.168.51.7"], "not a device address in the LAN 192.168.50.0/24")
        assertRefused(["--lan", "eth1", "--bypass", "192.168.50.1"], "not a device address")
        assertRefused(["--lan", "eth1", "--uplink", "eth1"], "both")
        assertRefused(["--lan", "eth1", "--dhcp-range", "192.168.50.9"], "FIRST-LAST")
        assertRefused(["--lan", "eth1", "--dhcp-range", "192.168.50.9-192.168.50.2"], "ascending")
        assertRefused(["--lan", "eth1", "--dhcp-range", "192.168.50.2-192.168.51.2"], "host addresses in 192.168.50.0/24")
        assertRefused(["--lan", "eth1", "--dhcp-range", "192.168.50.1-192.168.50.9"], "gateway's own address")
        assertRefused(["--lan"], "--lan needs a value")
    }

    func testGatewayRuleset() {
        let r = VPNFirewall.gatewayRuleset(lan: "br0", lanNetwork: IPPrefix("192.168.50.1/24")!, tun: "skwvpn0",
                                           bypassMACs: ["02:00:00:00:00:01"], bypassIPs: [IPAddress("192.168.50.9")!],
                                           dns: [IPAddress("203.0.113.53")!])
        XCTAssertTrue(r.hasPrefix("table inet skywire_gateway {}\ndelete table inet skywire_gateway\n"))
        XCTAssertTrue(r.contains("iifname \"br0\" ether saddr { 02:00:00:00:00:01 } meta mark set 0x53576777"))
        XCTAssertTrue(r.contains("iifname \"br0\" ip saddr { 192.168.50.9 } meta mark set 0x53576777"))
        XCTAssertTrue(r.contains("oifname != \"skwvpn0\" ip daddr { 203.0.113.53 } meta l4proto { tcp, udp } th dport 53 drop"))
        XCTAssertTrue(r.contains("oifname != \"br0\" ip saddr 192.168.50.0/24 masquerade"))
        // The forward chain: the tunnel and bypassing devices are let through, then everything
        // else from the LAN is dropped; only replies come back in.
        guard let start = r.firstRange(of: "chain forward") else { return XCTFail("no forward chain") }
        let forward = r[start.upperBound...]
        let order = ["iifname \"br0\" oifname \"skwvpn0\" counter name \"lan_up\" accept",
                     "iifname \"br0\" oifname != \"br0\" meta mark 0x53576777 counter name \"lan_bypass\" accept",
                     "iifname \"br0\" counter name \"lan_dropped\" drop",
                     "iifname \"skwvpn0\" oifname \"br0\" ct state established,related counter name \"lan_down\" accept",
                     "oifname \"br0\" drop"]
        var last = forward.startIndex
        for rule in order {
            guard let found = forward[last...].firstRange(of: rule) else { return XCTFail("missing or out of order: \(rule)") }
            last = found.upperBound
        }
        let plain = VPNFirewall.gatewayRuleset(lan: "br0", lanNetwork: IPPrefix("192.168.50.0/24")!, tun: "t",
                                               bypassMACs: [], bypassIPs: [], dns: [])
        XCTAssertFalse(plain.contains("meta mark set"))
        XCTAssertFalse(plain.contains("th dport 53"))
    }

    func testClientRulesetInGatewayRole() {
        let r = VPNFirewall.clientRuleset(tun: "skwvpn0", killSwitch: true, transportAddresses: [], lan: "br0",
                                          bypassMark: VPNFirewall.bypassMark)
        XCTAssertTrue(r.contains("oifname \"br0\" accept\n    drop"), r)
        XCTAssertTrue(r.contains("iifname \"skwvpn0\" oifname \"br0\" accept"))
        XCTAssertTrue(r.contains("iifname \"br0\" meta mark 0x53576777 accept"))
        let noBypass = VPNFirewall.clientRuleset(tun: "skwvpn0", killSwitch: true, transportAddresses: [], lan: "br0")
        XCTAssertFalse(noBypass.contains("meta mark"))
    }

    func testParseCountersAndLeases() {
        let text = """
        table inet skywire_gateway {
        \tcounter lan_up {
        \t\tpackets 12 bytes 3456
        \t}
        \tcounter lan_dropped {
        \t\tpackets 3 bytes 180
        \t}
        }
        """
        let c = VPNFirewall.parseCounters(text)
        XCTAssertEqual(c["lan_up"]?.packets, 12)
        XCTAssertEqual(c["lan_up"]?.bytes, 3456)
        XCTAssertEqual(c["lan_dropped"]?.packets, 3)
        XCTAssertNil(c["lan_down"])
        let leases = VPNGateway.parseLeases("1764000000 02:00:00:00:50:02 192.168.50.115 tv 01:02:00:00:00:50:02\n1764000100 02:00:00:00:50:03 192.168.50.116 * *\ngarbage\n")
        XCTAssertEqual(leases, [
            .init(expires: 1_764_000_000, mac: "02:00:00:00:50:02", ip: IPAddress("192.168.50.115")!, hostname: "tv"),
            .init(expires: 1_764_000_100, mac: "02:00:00:00:50:03", ip: IPAddress("192.168.50.116")!, hostname: nil),
        ])
    }

    func testNeighboursAndClients() {
        let arp = """
        IP address       HW type     Flags       HW address            Mask     Device
        192.168.50.20    0x1         0x2         02:AA:00:00:00:20     *        br0
        192.168.50.21    0x1         0x0         00:00:00:00:00:00     *        br0
        198.51.100.254   0x1         0x2         02:00:00:00:00:fe     *        eth0
        192.168.50.115   0x1         0x2         02:00:00:00:50:02     *        br0
        """
        let n = VPNGateway.parseNeighbours(arp, interface: "br0")
        XCTAssertEqual(n.map(\.ip), [IPAddress("192.168.50.20")!, IPAddress("192.168.50.115")!])
        XCTAssertEqual(n.first?.mac, "02:aa:00:00:00:20")
        let lease = VPNGateway.Lease(expires: 5, mac: "02:00:00:00:50:02", ip: IPAddress("192.168.50.115")!, hostname: "tv")
        let c = VPNGateway.clients(leases: [lease], neighbours: n)
        XCTAssertEqual(c, [
            .init(mac: "02:00:00:00:50:02", ip: IPAddress("192.168.50.115")!, hostname: "tv", leaseExpires: 5),
            .init(mac: "02:aa:00:00:00:20", ip: IPAddress("192.168.50.20")!, hostname: nil, leaseExpires: nil),
        ])
    }

    func testDNSMasqArguments() throws {
        let o = try XCTUnwrap(try parse(["--lan", "br0", "--lan-subnet", "192.168.50.1/24"]).gateway)
        let g = VPNGateway(options: o, tun: "skwvpn0", stateDirectory: "/var/lib/skywire", logger: Logger(label: "t"))
        let a = g.dnsmasqArguments(dns: [IPAddress("203.0.113.53")!, IPAddress("198.51.100.53")!])
        for want in ["--no-resolv", "--no-hosts", "--interface=br0", "--bind-interfaces", "--except-interface=lo",
                     "--dhcp-range=192.168.50.2,192.168.50.254,255.255.255.0,12h",
                     "--dhcp-option=option:router,192.168.50.1", "--dhcp-option=option:dns-server,192.168.50.1",
                     "--dhcp-leasefile=/var/lib/skywire/gateway-dnsmasq.leases",
                     "--server=203.0.113.53", "--server=198.51.100.53"] {
            XCTAssertTrue(a.contains(want), "missing \(want) in \(a)")
        }
        XCTAssertEqual(a.filter { $0.hasPrefix("--server") }.count, 2, "\(a)")
    }

    /// IPv6 for the LAN: router advertisements of the LAN's ULA /64 only while the tunnel
    /// carries IPv6; the fence lets the LAN's IPv6 into the tunnel only, NAT66.
    func testLANIPv6() throws {
        let o = try XCTUnwrap(try parse(["--lan", "br0"]).gateway)
        let g = VPNGateway(options: o, tun: "skwvpn0", stateDirectory: "/var/lib/skywire", logger: Logger(label: "t"))
        XCTAssertFalse(g.dnsmasqArguments(dns: [IPAddress("203.0.113.53")!]).contains("--enable-ra"))
        XCTAssertNil(g.lanAddress6)
        g.lock.withLock { g.lan6 = IPPrefix("fd12:3456:7890::/64")! }
        let a = g.dnsmasqArguments(dns: [IPAddress("203.0.113.53")!], lan6: IPPrefix("fd12:3456:7890::/64")!)
        XCTAssertTrue(a.contains("--enable-ra") && a.contains("--dhcp-range=fd12:3456:7890::,ra-only,64,12h"), "\(a)")
        XCTAssertEqual(g.lanAddress6, IPPrefix("fd12:3456:7890::1/64"))

        let fenced = VPNFirewall.gatewayRuleset(lan: "br0", lanNetwork: IPPrefix("192.168.50.0/24")!, tun: "t",
                                                bypassMACs: [], bypassIPs: [], dns: [])
        XCTAssertTrue(fenced.contains("iifname \"br0\" meta nfproto ipv6 counter name \"lan_dropped\" drop"))
        XCTAssertFalse(fenced.contains("ip6 saddr"))
        let open = VPNFirewall.gatewayRuleset(lan: "br0", lanNetwork: IPPrefix("192.168.50.0/24")!, tun: "t",
                                              bypassMACs: [], bypassIPs: [], dns: [], lan6: IPPrefix("fd12:3456:7890::/64")!)
        XCTAssertTrue(open.contains("iifname \"br0\" meta nfproto ipv6 ip6 saddr != fd12:3456:7890::/64 counter name \"lan_dropped\" drop"))
        XCTAssertTrue(open.contains("iifname \"br0\" meta nfproto ipv6 oifname != \"t\" counter name \"lan_dropped\" drop"))
        XCTAssertTrue(open.contains("oifname \"t\" ip6 saddr fd12:3456:7890::/64 masquerade"))
        XCTAssertFalse(open.contains("\n    \n"), "no empty rule")
        // The client's forward chain drops IPv6 only without a lease.
        XCTAssertTrue(VPNFirewall.clientRuleset(tun: "t", killSwitch: false, transportAddresses: [], lan: "br0")
            .contains("chain forward {\n    type filter hook forward priority filter - 1; policy accept;\n    meta nfproto ipv6 drop"))
        XCTAssertFalse(VPNFirewall.clientRuleset(tun: "t", killSwitch: false, transportAddresses: [], lan: "br0", ipv6: true)
            .contains("meta nfproto ipv6 drop"))
    }

    func testDNSFenceUpdate() {
        let dns = [IPAddress("203.0.113.54")!, IPAddress("198.51.100.53")!]
        XCTAssertEqual(VPNFirewall.gatewayDNSFence(tun: "skwvpn0", dns: dns), """
            flush chain inet skywire_gateway output
            add rule inet skywire_gateway output oifname != "skwvpn0" ip daddr { 203.0.113.54, 198.51.100.53 } meta l4proto { tcp, udp } th dport 53 drop

            """)
        // The full ruleset's output chain carries the same rule.
        let full = VPNFirewall.gatewayRuleset(lan: "br0", lanNetwork: IPPrefix("192.168.50.0/24")!, tun: "skwvpn0",
                                              bypassMACs: [], bypassIPs: [], dns: dns)
        XCTAssertTrue(full.contains("    " + VPNFirewall.dnsFenceRules(tun: "skwvpn0", dns: dns)[0] + "\n"), full)
        XCTAssertEqual(VPNFirewall.gatewayDNSFence(tun: "skwvpn0", dns: []), "flush chain inet skywire_gateway output\n")
    }

    /// 1 s doubling to 30 s between failures in a row; a long run starts over; the outage is
    /// reported once at its start and once at its end.
    func testDNSMasqRestartSchedule() {
        XCTAssertEqual((1...8).map { DNSMasqSupervision.delayMillis(failures: $0) },
                       [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
        XCTAssertEqual(DNSMasqSupervision.delayMillis(failures: 10_000), 30000)

        var s = DNSMasqSupervision(startedAt: 0)
        XCTAssertFalse(s.checkRunning(at: 10_000), "no outage yet")
        var r = s.exited(at: 10_000, how: "killed by signal 9")
        XCTAssertTrue(r.first)
        XCTAssertEqual(r.delayMillis, 1000)
        XCTAssertEqual(s.lastExit, "killed by signal 9")
        XCTAssertFalse(s.restartDue(at: 10_999))
        XCTAssertTrue(s.restartDue(at: 11_000))
        s.restarted(at: 11_000)
        XCTAssertEqual(s.restarts, 1)
        XCTAssertFalse(s.restartDue(at: 99_000), "nothing due while one runs")
        // Exits at once again: the same outage, 2 s, then a failed spawn, 4 s.
        r = s.exited(at: 11_100, how: "exit 2")
        XCTAssertFalse(r.first)
        XCTAssertEqual(r.delayMillis, 2000)
        XCTAssertFalse(s.checkRunning(at: 12_000), "not running: waiting to restart")
        s.restarted(at: 13_100)
        XCTAssertEqual(s.exited(at: 13_200, how: "exit 3").delayMillis, 4000)
        XCTAssertEqual(s.startFailed(at: 17_200, error: "posix_spawn: ENOENT"), 8000)
        XCTAssertEqual(s.lastExit, "posix_spawn: ENOENT")
        s.restarted(at: 25_200)
        XCTAssertEqual(s.restarts, 3)
        XCTAssertFalse(s.checkRunning(at: 25_300), "too early to count as serving")
        XCTAssertEqual(s.downSince, 10_000)
        XCTAssertTrue(s.checkRunning(at: 25_700), "recovered")
        XCTAssertFalse(s.checkRunning(at: 26_000), "recovery reported once")
        XCTAssertNil(s.downSince)
        // A crash soon after recovery keeps climbing; one after a long run starts over at 1 s.
        r = s.exited(at: 30_000, how: "killed by signal 11")
        XCTAssertTrue(r.first)
        XCTAssertEqual(r.delayMillis, 16000)
        s.restarted(at: 46_000)
        XCTAssertTrue(s.checkRunning(at: 47_000))
        r = s.exited(at: 46_000 + DNSMasqSupervision.stableMillis, how: "killed by signal 9")
        XCTAssertTrue(r.first)
        XCTAssertEqual(r.delayMillis, 1000)
        XCTAssertEqual(s.restarts, 4)
    }

    func testWaitStatusWords() {
        XCTAssertEqual(Subprocess.describe(waitStatus: 0), "exit 0")
        XCTAssertEqual(Subprocess.describe(waitStatus: 2 << 8), "exit 2")
        XCTAssertEqual(Subprocess.describe(waitStatus: 9), "killed by signal 9")
        XCTAssertEqual(Subprocess.describe(waitStatus: 0x80 | 11), "killed by signal 11")  // core dumped
    }

    /// A real dnsmasq on a LAN interface in a private namespace, the supervisor driven by hand:
    /// killed, it is restarted after the back-off and the state file names the new one; new DNS
    /// servers reach the fence and a dnsmasq started with them; after `teardown` nothing is
    /// restarted.
    func testSupervisorRestartsDNSMasqAndTakesNewServers() throws {
        try XCTSkipUnless(VPNGateway.dnsmasqCandidates.contains { access($0, X_OK) == 0 }, "needs dnsmasq")
        let dir = "/tmp/skwt-gwsup-\(getpid())"
        defer {
            for f in [VPNGateway.stateFileName, "gateway-dnsmasq.leases", "gateway-dnsmasq.log", "gateway-dnsmasq.pid"] { _ = try? FileIO.remove(dir + "/" + f) }
            _ = rmdir(dir)
        }
        try inPrivateNetworkNamespace {
            let lan = try TunDevice(name: "skwgwlan1")
            defer { lan.close() }
            let o = try VPNGatewayOptions.from(lan: lan.name, subnet: "192.168.50.1/24", bypass: [], uplink: nil, range: nil)!
            let g = VPNGateway(options: o, tun: "skwvpn0", stateDirectory: dir, logger: Logger(label: "t"))
            defer { g.teardown(keepFence: false) }
            try g.installFence()
            let first = [IPAddress("203.0.113.53")!]
            try NFTables.apply(VPNFirewall.gatewayDNSFence(tun: "skwvpn0", dns: first))
            try g.startDNSMasq(dns: first, watch: false)
            let pid1 = try XCTUnwrap(g.lock.withLock { g.dnsmasqPID })
            XCTAssertTrue(g.status.dhcpRunning)

            // Killed: reaped and scheduled (bounded wait for the kernel to deliver the kill).
            XCTAssertEqual(kill(pid1, SIGKILL), 0)
            let t0 = VPNGateway.nowMillis()
            for _ in 0..<100 where g.lock.withLock({ g.dnsmasqPID }) != nil {
                XCTAssertTrue(g.superviseOnce(now: t0))
                usleep(20_000)
            }
            XCTAssertNil(g.lock.withLock { g.dnsmasqPID })
            var st = g.status
            XCTAssertFalse(st.dhcpRunning)
            XCTAssertTrue(st.dhcpRestarting)
            XCTAssertEqual(st.dhcpLastExit, "killed by signal 9")
            XCTAssertEqual(st.dhcpRestarts, 0)
            XCTAssertTrue(g.superviseOnce(now: t0 + 999))
            XCTAssertNil(g.lock.withLock { g.dnsmasqPID }, "not before the back-off")
            XCTAssertTrue(g.superviseOnce(now: t0 + 1000))
            let pid2 = try XCTUnwrap(g.lock.withLock { g.dnsmasqPID })
            XCTAssertNotEqual(pid1, pid2)
            XCTAssertEqual(Subprocess.processName(pid2), "dnsmasq")
            XCTAssertEqual(VPNStateFile(directory: dir, name: VPNGateway.stateFileName).load().filter { $0.key == "dnsmasq_pid" }.map(\.value),
                           ["\(pid2)"], "the state file names the new dnsmasq only")
            usleep(600_000)
            XCTAssertTrue(g.superviseOnce(now: t0 + 1600))
            XCTAssertEqual(g.lock.withLock { g.dnsmasqPID }, pid2, "it kept running")
            XCTAssertNil(g.lock.withLock { g.supervision.downSince }, "recovered")
            st = g.status
            XCTAssertTrue(st.dhcpRunning)
            XCTAssertFalse(st.dhcpRestarting)
            XCTAssertEqual(st.dhcpRestarts, 1)

            // New upstreams: the fence names them, dnsmasq runs again with them (not counted as a
            // restart), the state file names the new one.
            let second = [IPAddress("203.0.113.54")!]
            try g.updateDNS(second)
            XCTAssertEqual(g.status.dns, second)
            let table = try XCTUnwrap(try NFTables.listTable(family: "inet", name: VPNFirewall.gatewayTable))
            XCTAssertTrue(table.contains("203.0.113.54") && !table.contains("203.0.113.53"), table)
            XCTAssertTrue(table.contains("lan_dropped"), "the rest of the table stays")
            XCTAssertNil(Subprocess.processName(pid2), "the old dnsmasq is gone")
            let pid3 = try XCTUnwrap(g.lock.withLock { g.dnsmasqPID })
            XCTAssertEqual(VPNStateFile(directory: dir, name: VPNGateway.stateFileName).load().filter { $0.key == "dnsmasq_pid" }.map(\.value),
                           ["\(pid3)"])
            var log = ""
            for _ in 0..<100 {
                log = String(decoding: (try? FileIO.read(dir + "/gateway-dnsmasq.log")) ?? nil ?? [], as: UTF8.self)
                if log.contains("dnsmasq[\(pid3)]: using nameserver 203.0.113.54#53") { break }
                usleep(20_000)
            }
            XCTAssertTrue(log.contains("dnsmasq[\(pid3)]: using nameserver 203.0.113.54#53"), "no new server: \(log)")
            try g.updateDNS(second)
            XCTAssertEqual(g.lock.withLock { g.dnsmasqPID }, pid3, "the same servers change nothing")
            usleep(600_000)
            XCTAssertTrue(g.superviseOnce(now: VPNGateway.nowMillis()))
            XCTAssertEqual(g.lock.withLock { g.dnsmasqPID }, pid3)
            XCTAssertEqual(g.status.dhcpRestarts, 1)
            XCTAssertTrue(g.status.dhcpRunning)

            // Stopped: dnsmasq ends and the supervisor restarts nothing.
            g.teardown(keepFence: false)
            XCTAssertNil(Subprocess.processName(pid3))
            XCTAssertFalse(g.superviseOnce(now: t0 + 100_000))
            XCTAssertNil(g.lock.withLock { g.dnsmasqPID })
            XCTAssertFalse(g.status.dhcpRunning)
            XCTAssertFalse(g.status.dhcpRestarting)
        }
    }

    /// The ruleset loads in nft with every option, its counters read back, and the fence
    /// outlives a shutdown-style cleanup but not a full one (ip_forward restored then).
    func testFenceInstallAndCleanup() throws {
        let dir = "/tmp/skwt-gwstate-\(getpid())"
        defer { _ = try? FileIO.remove(dir + "/" + VPNGateway.stateFileName); _ = rmdir(dir) }
        try inPrivateNetworkNamespace {
            let nl = try RouteNetlink()
            let lan = try TunDevice(name: "skwgwlan0")
            try nl.setLink(lan.name, up: true)
            let o = try VPNGatewayOptions.from(lan: lan.name, subnet: "192.168.50.1/24", bypass: ["02:00:00:00:00:01,192.168.50.9"],
                                               uplink: nil, range: nil)!
            let g = VPNGateway(options: o, tun: "skwvpn0", stateDirectory: dir, logger: Logger(label: "t"))
            try Sysctl.write("net.ipv4.ip_forward", "0")
            try g.installFence()
            try g.record("ip_forward", "0")
            try Sysctl.write("net.ipv4.ip_forward", "1")
            let listing = try XCTUnwrap(try NFTables.listCounters(family: "inet", table: VPNFirewall.gatewayTable))
            XCTAssertEqual(Set(VPNFirewall.parseCounters(listing).keys), Set(VPNFirewall.lanCounters))
            XCTAssertTrue(g.status.fence)

            g.teardown(keepFence: true)
            XCTAssertNotNil(try NFTables.listTable(family: "inet", name: VPNFirewall.gatewayTable))
            XCTAssertEqual(VPNStateFile(directory: dir, name: VPNGateway.stateFileName).load().map(\.key), ["nft_table", "ip_forward"])
            // A second fence install (visor restart) keeps one table and the recorded original.
            try g.installFence()
            XCTAssertEqual(VPNStateFile(directory: dir, name: VPNGateway.stateFileName).load().map(\.key), ["nft_table", "ip_forward"])

            g.teardown(keepFence: false)
            XCTAssertNil(try NFTables.listTable(family: "inet", name: VPNFirewall.gatewayTable))
            XCTAssertEqual(try Sysctl.read("net.ipv4.ip_forward"), "0")
            XCTAssertTrue(VPNStateFile(directory: dir, name: VPNGateway.stateFileName).load().isEmpty)
            lan.close()
        }
    }

    func testFenceRefusesAMissingLAN() throws {
        let dir = "/tmp/skwt-gwstate2-\(getpid())"
        try inPrivateNetworkNamespace {
            let o = try VPNGatewayOptions.from(lan: "skwnolan0", subnet: nil, bypass: [], uplink: nil, range: nil)!
            let g = VPNGateway(options: o, tun: "skwvpn0", stateDirectory: dir, logger: Logger(label: "t"))
            XCTAssertThrowsError(try g.installFence()) { e in XCTAssertTrue("\(e)".contains("no interface \"skwnolan0\"")) }
            XCTAssertNil(try NFTables.listTable(family: "inet", name: VPNFirewall.gatewayTable))
            XCTAssertFalse(FileIO.exists(dir + "/" + VPNGateway.stateFileName))
        }
    }
}
