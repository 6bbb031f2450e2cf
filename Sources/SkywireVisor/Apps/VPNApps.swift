import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireTransport
import SkywireVPN

/// `vpn-server` (port 44): the VPN exit (docs/vpn.md).
final class VPNServerVisorApp: VisorApp {
    private let server: VPNServer
    let whitelist: AppWhitelist?

    init(context: AppContext, arguments parsed: VPNServerArguments) {
        whitelist = parsed.whitelist
        server = VPNServer(arguments: parsed, transports: context.transports, localPort: context.port,
                           stateDirectory: context.stateDirectory, logger: context.logger)
    }

    func start() async throws {
        // nft, netlink and the TUN set-up block: on the blocking pool.
        do { try await BlockingPool.shared.run { [server] in try server.start() } } catch { throw AppError("vpn-server: \(error)") }
    }

    func stop() async { await BlockingPool.shared.runOrInline { [server] in server.stop() } }

    func accept(stream: AppStream) -> Bool {
        server.accept(stream: stream)
        return true
    }

    func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16) {
        server.receive(datagram: datagram, from: from)
    }

    func status() -> AppStatusReport {
        let s = server.status
        let clients: [ControlValue] = s.clients.map { c in
            .object(["pk": .string(c.key.hex), "tunnel_ip": .string(c.clientAddress.description),
                     "server_tunnel_ip": .string(c.serverAddress.description),
                     "tunnel_ip6": c.clientAddress6.map { .string($0.description) } ?? .null,
                     "bytes_in": .int(Int64(clamping: c.bytesIn)), "bytes_out": .int(Int64(clamping: c.bytesOut)),
                     "connected_unix": .int(c.connectedSince)])
        }
        return AppStatusReport(
            detail: "\(s.clients.count) client(s) via \(s.exitInterface)\(s.secure ? ", secure" : "")",
            fields: ["exit_interface": .string(s.exitInterface), "interface": .string(s.tun), "secure": .bool(s.secure),
                     "whitelist": .array(s.whitelist.sortedKeys.map { .string($0.hex) }), "clients": .array(clients),
                     "total_sessions": .int(Int64(s.totalSessions)), "refused": .int(Int64(s.refused)),
                     "hello_timeouts": .int(Int64(s.helloTimeouts))])
    }
}

/// `vpn-client` (port 43): routes this host's traffic through a `vpn-server` (docs/vpn.md).
final class VPNClientVisorApp: VisorApp {
    private let client: VPNClient

    init(context: AppContext, arguments parsed: VPNClientArguments) {
        client = VPNClient(arguments: parsed, transports: context.transports, localPort: context.port,
                           stateDirectory: context.stateDirectory, logger: context.logger)
    }

    func start() async throws {
        do { try await client.start() } catch { throw AppError(Self.code(of: error), "vpn-client: \(error)") }
    }

    func stop() async { await client.stop() }

    /// A refusal by the server's whitelist is `forbidden` (the control socket's code); any other
    /// failure, an ERROR answer included, is `failed`.
    static func code(of error: Error) -> AppError.Code {
        (error as? VPNError)?.kind == .forbidden ? .forbidden : .failed
    }

    func uplinkChanged(_ change: UplinkChange) async -> [String] {
        await BlockingPool.shared.runOrInline { [client] in client.uplinkChanged() }
    }

    /// A visor shutdown keeps the gateway's LAN kill switch (a no-op difference otherwise).
    func shutdown() async { await client.stop(keepLANFence: true) }

    func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16) {
        client.receive(datagram: datagram, from: from)
    }

    func status() -> AppStatusReport {
        let s = client.status
        var f: [String: ControlValue] = [
            "server_pk": .string(s.server.hex), "state": .string(s.state.rawValue),
            "bytes_up": .int(Int64(clamping: s.bytesUp)), "bytes_down": .int(Int64(clamping: s.bytesDown)),
            "killswitch": .bool(s.killSwitch), "dns": .array(s.dns.map { .string($0.description) }),
            "reconnects": .int(Int64(s.reconnects)), "interface": .string(VPNClient.tunName),
        ]
        f["tunnel_ip"] = s.clientAddress.map { .string($0.description) } ?? .null
        f["server_tunnel_ip"] = s.serverAddress.map { .string($0.description) } ?? .null
        f["tunnel_ip6"] = s.clientAddress6.map { .string($0.description) } ?? .null
        f["ipv6_blocked"] = s.ipv6Blocked.map { .string($0) } ?? .null
        f["server_addr"] = s.serverTransportAddress.map { .string($0.description) } ?? .null
        f["mtu"] = s.mtu.map { .int(Int64($0)) } ?? .null
        f["last_handshake_unix"] = s.lastHandshake.map { .int($0) } ?? .null
        f["transport"] = s.transportType.map { .string($0) } ?? .null
        f["last_error"] = s.lastError.map { .string($0) } ?? .null
        f["lan"] = s.gateway.map(Self.lanFields) ?? .null
        return AppStatusReport(detail: "\(s.state.rawValue) via \(s.server.short) as \(s.clientAddress?.description ?? "-")",
                               fields: f)
    }

    /// `info.lan` in the gateway role (docs/gateway.md §6).
    static func lanFields(_ g: VPNGateway.Status) -> ControlValue {
        let bypassIPs = Set(g.bypassIPs), bypassMACs = Set(g.bypassMACs)
        let clients: [ControlValue] = g.clients.map { c in
            .object(["mac": .string(c.mac), "ip": .string(c.ip.description), "hostname": c.hostname.map { .string($0) } ?? .null,
                     "lease_expires_unix": c.leaseExpires.map { .int($0) } ?? .null,
                     "source": .string(c.leaseExpires == nil ? "neighbour" : "dhcp"),
                     "bypass": .bool(bypassIPs.contains(c.ip) || bypassMACs.contains(c.mac.lowercased()))])
        }
        return .object([
            "interface": .string(g.lan), "address": .string(g.lanAddress.description),
            "dhcp": .string(g.dhcpRunning ? "running" : g.dhcpRestarting ? "restarting" : "stopped"),
            "dhcp_restarts": .int(Int64(g.dhcpRestarts)), "dhcp_last_exit": g.dhcpLastExit.map { .string($0) } ?? .null,
            "dns": .array(g.dns.map { .string($0.description) }),
            "clients": .array(clients), "killswitch": .bool(g.fence),
            "bypass": .array(g.bypassMACs.map { .string($0) } + g.bypassIPs.map { .string($0.description) }),
            "bytes_up": .int(Int64(clamping: g.bytesUp)), "bytes_down": .int(Int64(clamping: g.bytesDown)),
            "bytes_bypass": .int(Int64(clamping: g.bytesBypass)), "dropped_packets": .int(Int64(clamping: g.droppedPackets)),
        ])
    }
}
