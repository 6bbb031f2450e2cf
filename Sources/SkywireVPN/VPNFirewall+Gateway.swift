import SkywireSystem

/// The gateway role's table (docs/gateway.md §3): the LAN kill switch, per-device bypass, NAT
/// into the tunnel and the LAN counters `vpn status` reads.
extension VPNFirewall {
    public static let gatewayTable = "skywire_gateway"
    /// Packet mark of bypassing devices; the policy rule sends marked packets to `bypassTable`.
    public static let bypassMark: UInt32 = 0x5357_6777
    public static let bypassTable: UInt32 = 6777
    public static let bypassRulePriority: UInt32 = 6777
    /// Named counters of the gateway table.
    public static let lanCounters = ["lan_up", "lan_down", "lan_bypass", "lan_dropped"]

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    /// The gateway table. Everything the LAN sends that is forwarded anywhere but into `tun` is
    /// dropped unless it comes from a bypassing device; the rules name interfaces, not
    /// indexes, so they hold while `tun` does not exist (reconnecting, visor stopped or dead)
    /// and stay in the kernel until the gateway is stopped explicitly. The LAN's forwarded
    /// traffic is masqueraded (into the tunnel: to the leased tunnel address). With `dns`, the
    /// gateway itself reaches those servers (its dnsmasq's upstreams) only through `tun`. IPv6
    /// from the LAN is dropped, except into `tun` from the LAN's `lan6` /64 while the tunnel
    /// carries IPv6 (NAT66 to the gateway's IPv6 tunnel address).
    public static func gatewayRuleset(lan: String, lanNetwork: IPPrefix, tun: String, bypassMACs: [String],
                                      bypassIPs: [IPAddress], dns: [IPAddress], lan6: IPPrefix? = nil) -> String {
        let l = quoted(lan), t = quoted(tun)
        var prerouting = ["type filter hook prerouting priority mangle; policy accept;"]
        if !bypassMACs.isEmpty {
            prerouting.append("iifname \(l) ether saddr \(set(bypassMACs)) meta mark set \(hex(bypassMark))")
        }
        if !bypassIPs.isEmpty {
            prerouting.append("iifname \(l) ip saddr \(set(bypassIPs.map(\.description))) meta mark set \(hex(bypassMark))")
        }
        let forward = [
            "type filter hook forward priority \(priority); policy accept;",
            "iifname \(l) oifname \(t) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            "iifname \(t) oifname \(l) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            lan6.map { "iifname \(l) meta nfproto ipv6 ip6 saddr != \($0) counter name \"lan_dropped\" drop" }
                ?? "iifname \(l) meta nfproto ipv6 counter name \"lan_dropped\" drop",
            lan6.map { _ in "iifname \(l) meta nfproto ipv6 oifname != \(t) counter name \"lan_dropped\" drop" } ?? "",
            "iifname \(l) oifname \(t) counter name \"lan_up\" accept",
            "iifname \(l) oifname != \(l) meta mark \(hex(bypassMark)) counter name \"lan_bypass\" accept",
            "iifname \(l) counter name \"lan_dropped\" drop",
            "iifname \(t) oifname \(l) ct state established,related counter name \"lan_down\" accept",
            "oifname \(l) ct state established,related counter name \"lan_bypass\" accept",
            "oifname \(l) drop",
        ].filter { !$0.isEmpty }
        let output = ["type filter hook output priority \(priority); policy accept;"] + dnsFenceRules(tun: tun, dns: dns)
        var s = recreate(gatewayTable)
        s += "table \(family) \(gatewayTable) {\n"
        for c in lanCounters { s += "  counter \(c) {}\n" }
        s += "  chain prerouting {\n" + prerouting.map { "    \($0)\n" }.joined() + "  }\n"
        s += "  chain forward {\n" + forward.map { "    \($0)\n" }.joined() + "  }\n"
        s += "  chain output {\n" + output.map { "    \($0)\n" }.joined() + "  }\n"
        s += "  chain postrouting {\n"
        s += "    type nat hook postrouting priority srcnat; policy accept;\n"
        s += "    oifname != \(l) ip saddr \(lanNetwork.network) masquerade\n"
        if let lan6 { s += "    oifname \(t) ip6 saddr \(lan6) masquerade\n" }
        s += "  }\n}\n"
        return s
    }

    /// The output chain's rules: the gateway reaches the DNS servers `dns` only through `tun`.
    static func dnsFenceRules(tun: String, dns: [IPAddress]) -> [String] {
        let v4 = dns.filter { $0.family == .v4 }.map(\.description)
        guard !v4.isEmpty else { return [] }
        return ["oifname != \(quoted(tun)) ip daddr \(set(v4)) meta l4proto { tcp, udp } th dport 53 drop"]
    }

    /// New DNS servers (after a reconnect): the output chain's rules replaced in one transaction,
    /// the rest of the table (and its counters) untouched.
    public static func gatewayDNSFence(tun: String, dns: [IPAddress]) -> String {
        var s = "flush chain \(family) \(gatewayTable) output\n"
        for rule in dnsFenceRules(tun: tun, dns: dns) { s += "add rule \(family) \(gatewayTable) output \(rule)\n" }
        return s
    }

    /// Reads the named counters of the gateway table from `nft list counters` text
    /// (`counter NAME { packets P bytes B }`); missing counters are absent from the result.
    public static func parseCounters(_ text: String) -> [String: (packets: UInt64, bytes: UInt64)] {
        var out: [String: (packets: UInt64, bytes: UInt64)] = [:]
        var name: String?
        var packets: UInt64?
        for raw in text.split(separator: "\n") {
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = words.first else { continue }
            if first == "counter", words.count >= 2 {
                name = words[1]
                packets = nil
            }
            var i = 0
            while i + 1 < words.count {
                if words[i] == "packets" { packets = UInt64(words[i + 1]) }
                if words[i] == "bytes", let n = name, let b = UInt64(words[i + 1]) {
                    out[n] = (packets ?? 0, b)
                    name = nil
                }
                i += 1
            }
        }
        return out
    }
}
