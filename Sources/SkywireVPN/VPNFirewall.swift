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
    /// Replies come back only for tracked connections; clients never reach each other; IPv6
    /// from clients is dropped (not carried). TCP MSS is clamped to the route MTU both ways.
    public static func serverRuleset(tun: String, exit: String, secure: Bool, pools: [IPPrefix],
                                     dns: [IPAddress] = []) -> String {
        let t = quoted(tun), x = quoted(exit)
        var forward = [
            "type filter hook forward priority \(priority); policy accept;",
            "iifname \(t) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            "oifname \(t) tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
            "iifname \(t) oifname \(t) drop",
            "iifname \(t) meta nfproto ipv6 drop",
        ]
        if secure {
            forward.append("iifname \(t) ip daddr \(set(securedNetworks)) drop")
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
        var input = ["type filter hook input priority \(priority); policy accept;",
                     "iifname \(t) meta nfproto ipv6 drop"]
        if secure {
            input.append("iifname \(t) ct state established,related accept")
            input.append("iifname \(t) fib daddr . iif type local icmp type echo-request accept")
            let v4 = dns.filter { $0.family == .v4 }.map(\.description)
            if !v4.isEmpty { input.append("iifname \(t) ip daddr \(set(v4)) meta l4proto { tcp, udp } th dport 53 accept") }
            input.append("iifname \(t) drop")
        }
        s += "  chain input {\n" + input.map { "    \($0)\n" }.joined() + "  }\n"
        let sources = set(pools.map(\.description))
        let out = secure ? "oifname \(x)" : "oifname != \(t)"
        s += "  chain postrouting {\n"
        s += "    type nat hook postrouting priority srcnat; policy accept;\n"
        s += "    \(out) ip saddr \(sources) masquerade\n"
        s += "  }\n}\n"
        return s
    }

    /// The client's ruleset: IPv6 leaves only through loopback while the VPN is up; with
    /// `killSwitch`, IPv4 leaves only through loopback, `tun`, or to the exit's transport
    /// addresses (TCP/UDP), in output and forward alike. In the gateway role (`lan`), the
    /// gateway's own answers to the LAN (DHCP, DNS) and traffic the gateway table lets through
    /// (tunnel replies, bypassing devices marked `bypassMark`) pass too: that table fences the LAN.
    public static func clientRuleset(tun: String, killSwitch: Bool, transportAddresses: [IPAddress],
                                     lan: String? = nil, bypassMark: UInt32? = nil) -> String {
        let t = quoted(tun)
        var output = ["type filter hook output priority \(priority); policy accept;", "oifname \"lo\" accept"]
        let v4 = transportAddresses.filter { $0.family == .v4 }.map(\.description)
        let v6 = transportAddresses.filter { $0.family == .v6 }.map(\.description)
        if !v6.isEmpty { output.append("ip6 daddr \(set(v6)) meta l4proto { tcp, udp } accept") }
        output.append("meta nfproto ipv6 drop")
        var forward = ["type filter hook forward priority \(priority); policy accept;", "meta nfproto ipv6 drop"]
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
