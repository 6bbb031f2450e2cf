import SkywireSystem

/// The nftables rulesets of the VPN apps (docs/vpn.md §4). Each is one `nft -f -` transaction
/// that (re)creates a dedicated table, so applying it twice leaves one copy, and stopping is
/// `delete table`.
public enum VPNFirewall {
    public static let family = "inet"
    public static let serverTable = "skywire_vpn_server"
    public static let clientTable = "skywire_vpn_client"
    /// Hook priority: just before the usual `filter` tables.
    static let priority = "filter - 1"

    /// Destinations `--secure` keeps clients from: RFC 1918, shared address space (RFC 6598),
    /// link-local (RFC 3927), and loopback.
    public static let securedNetworks = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                         "169.254.0.0/16", "127.0.0.0/8"]
    /// The IPv6 ones: unique local (RFC 4193), link-local and loopback (RFC 4291 §2.5.3, §2.5.6),
    /// multicast, the unspecified address; the exit's own IPv6 networks are added.
    public static let securedNetworks6 = ["fc00::/7", "fe80::/10", "::1/128", "ff00::/8", "::/128"]
    /// Neighbour discovery (RFC 4861 §6, §7: hop limit 255, never forwarded): a client's kill
    /// switch lets it out so the exit's IPv6 transport address stays reachable.
    static let neighbourDiscovery = "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept"

    /// "create then delete" so the script is valid whether or not the table exists.
    static func recreate(_ table: String) -> String {
        "table \(family) \(table) {}\ndelete table \(family) \(table)\n"
    }

    static func quoted(_ interface: String) -> String { "\"\(interface)\"" }

    static func set(_ items: [String]) -> String { "{ " + items.joined(separator: ", ") + " }" }

    /// The exit's ruleset: clients (from `tun`) are masqueraded; with `secure` they reach only
    /// the exit interface and no private, link-local or loopback destination when forwarded, and
    /// the exit itself not at all (input chain): whatever listens there, on whichever address the
    /// exit has now or gets later. Let in from `tun` are only replies to connections the exit
    /// opened, ICMP echo to an address of `tun` itself (a client's tunnel gateway, so `ping`
    /// shows the tunnel is up), and DNS to the `dns` servers the exit announces (used only
    /// when one of them is an address of the exit, i.e. the exit runs that resolver).
    /// Replies come back only for tracked connections; clients never reach each other. IPv6
    /// from clients is carried when the exit has its clients' network `ipv6` (only from
    /// addresses of it; NATed to the exit's address unless routed; `secure` adds the IPv6
    /// non-public ranges and the exit's own networks `lan6`, and DNS to `dns6`), else dropped.
    /// TCP MSS is clamped to the route MTU both ways.
    public static func serverRuleset(tun: String, exit: String, secure: Bool, pools: [IPPrefix],
                                     dns: [IPAddress] = [], ipv6: VPNIPv6Network? = nil, lan6: [IPPrefix] = [],
                                     dns6: [IPAddress] = []) -> String {
        let t = quoted(tun), x = quoted(exit)
        var forward = [
            "type filter hook forward priority \(priority); policy accept;",
            "iifname \(t) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            "oifname \(t) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            "iifname \(t) oifname \(t) drop",
            ipv6.map { "iifname \(t) meta nfproto ipv6 ip6 saddr != \($0.prefix) drop" } ?? "iifname \(t) meta nfproto ipv6 drop",
        ]
        if secure {
            forward.append("iifname \(t) ip daddr \(set(securedNetworks)) drop")
            if ipv6 != nil { forward.append("iifname \(t) ip6 daddr \(set(securedNetworks6 + lan6.map(\.description))) drop") }
            forward.append("iifname \(t) oifname != \(x) drop")
        }
        forward += [
            "iifname \(t) accept",
            "oifname \(t) ct state established,related accept",
            "oifname \(t) drop",
        ]
        var s = recreate(serverTable)
        s += "table \(family) \(serverTable) {\n"
        s += "  chain forward {\n" + forward.map { "    \($0)\n" }.joined() + "  }\n"
        var input = ["type filter hook input priority \(priority); policy accept;"]
        if ipv6 == nil { input.append("iifname \(t) meta nfproto ipv6 drop") }
        if secure {
            input.append("iifname \(t) ct state established,related accept")
            input.append("iifname \(t) fib daddr . iif type local icmp type echo-request accept")
            if ipv6 != nil { input.append("iifname \(t) fib daddr . iif type local icmpv6 type echo-request accept") }
            let v4 = dns.filter { $0.family == .v4 }.map(\.description)
            if !v4.isEmpty { input.append("iifname \(t) ip daddr \(set(v4)) meta l4proto { tcp, udp } th dport 53 accept") }
            let v6 = dns6.filter { $0.family == .v6 }.map(\.description)
            if ipv6 != nil, !v6.isEmpty { input.append("iifname \(t) ip6 daddr \(set(v6)) meta l4proto { tcp, udp } th dport 53 accept") }
            input.append("iifname \(t) drop")
        }
        s += "  chain input {\n" + input.map { "    \($0)\n" }.joined() + "  }\n"
        let sources = set(pools.map(\.description))
        let out = secure ? "oifname \(x)" : "oifname != \(t)"
        s += "  chain postrouting {\n"
        s += "    type nat hook postrouting priority srcnat; policy accept;\n"
        s += "    \(out) ip saddr \(sources) masquerade\n"
        if let ipv6, !ipv6.routed { s += "    \(out) ip6 saddr \(ipv6.prefix) masquerade\n" }
        s += "  }\n}\n"
        return s
    }

    /// The client's ruleset: without an IPv6 lease (`ipv6` false) IPv6 leaves only through
    /// loopback while the VPN is up (and neighbour discovery, for an IPv6 transport); with
    /// `killSwitch`, IPv4 and IPv6 leave only through loopback, `tun`, or to the exit's transport
    /// addresses (TCP/UDP), in output and forward alike. In the gateway role (`lan`), the
    /// gateway's own answers to the LAN (DHCP, DNS) and traffic the gateway table lets through
    /// (tunnel replies, bypassing devices marked `bypassMark`) pass too: that table fences the LAN.
    public static func clientRuleset(tun: String, killSwitch: Bool, transportAddresses: [IPAddress],
                                     lan: String? = nil, bypassMark: UInt32? = nil, ipv6: Bool = false) -> String {
        let t = quoted(tun)
        var output = ["type filter hook output priority \(priority); policy accept;", "oifname \"lo\" accept"]
        let v4 = transportAddresses.filter { $0.family == .v4 }.map(\.description)
        let v6 = transportAddresses.filter { $0.family == .v6 }.map(\.description)
        if !v6.isEmpty { output.append("ip6 daddr \(set(v6)) meta l4proto { tcp, udp } accept") }
        output.append(neighbourDiscovery)
        if !ipv6 { output.append("meta nfproto ipv6 drop") }
        var forward = ["type filter hook forward priority \(priority); policy accept;"]
        if !ipv6 { forward.append("meta nfproto ipv6 drop") }
        if killSwitch {
            output.append("oifname \(t) accept")
            if !v4.isEmpty { output.append("ip daddr \(set(v4)) meta l4proto { tcp, udp } accept") }
            forward.append("oifname \(t) accept")
            if let lan {
                let l = quoted(lan)
                output.append("oifname \(l) accept")
                forward.append("iifname \(t) oifname \(l) accept")
                if let bypassMark {
                    forward.append("iifname \(l) meta mark \(hex(bypassMark)) accept")
                    forward.append("oifname \(l) ct state established,related accept")
                }
            }
            output.append("drop")
            forward.append("drop")
        }
        var s = recreate(clientTable)
        s += "table \(family) \(clientTable) {\n"
        s += "  chain output {\n" + output.map { "    \($0)\n" }.joined() + "  }\n"
        s += "  chain forward {\n" + forward.map { "    \($0)\n" }.joined() + "  }\n"
        s += "}\n"
        return s
    }
}
