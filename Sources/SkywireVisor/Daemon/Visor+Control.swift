import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSocks
import SkywireSystem
import SkywireTransport
import SkywireVPN

extension Visor {
    /// Dispatches one control request (docs/cli.md lists the methods).
    func handle(_ request: ControlRequest) async -> ControlResponse {
        do {
            let result = try await dispatch(request.method, request.params)
            return ControlResponse(id: request.id, result: result)
        } catch let e as ControlError {
            return ControlResponse(id: request.id, error: e)
        } catch let e as AppError {
            return ControlResponse(id: request.id, error: ControlError(e))
        } catch let e as TransportError {
            let code: ControlError.Code
            switch e.kind {
            case .badAddress: code = .badRequest
            case .notFound: code = .notFound
            case .timeout: code = .timeout
            case .unreachable, .handshake, .closed: code = .failed
            }
            return ControlResponse(id: request.id, error: ControlError(code, e.message))
        } catch {
            return ControlResponse(id: request.id, error: ControlError(.failed, "\(error)"))
        }
    }

    private func dispatch(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        switch method {
        case "visor.info":
            return .object([
                "pk": .string(options.transport.identity.publicKey.hex),
                "version": .string(SkywireVersion.string),
                "uptime_seconds": .int(uptimeSeconds),
                "stcpr_addr": transports.stcprListenAddress.map { .string($0) } ?? .null,
                "sudph_addr": transports.sudphListenAddress.map { .string($0) } ?? .null,
                "dmsg_relays": .array(transports.relaysReachableThrough.map { .string($0.hex) }),
                "transports": .array(transports.list().map(\.controlValue)),
                "apps": .array(await apps.snapshotOffPool()),
            ])
        case "visor.ping":
            return try await ping(params)
        case "tp.add":
            let pk = try Self.publicKey(params.requiredString("pk"))
            var type: TransportType? = nil
            if let name = try params.optionalString("type") {
                guard let t = TransportType(rawValue: name) else {
                    throw ControlError(.badRequest, "unknown transport type \"\(name)\" (stcpr, sudph or dmsg)")
                }
                type = t
            }
            // Without --addr: the peers table, else discovery (punched sudph, then stcpr, then dmsg
            // through the relay servers, when no type is given).
            if let addr = try params.optionalString("addr") {
                return try await transports.add(remote: pk, type: type ?? .stcpr, address: addr).controlValue
            }
            return try await transports.connect(remote: pk, type: type).controlValue
        case "tp.ls":
            return .array(transports.list().map(\.controlValue))
        case "tp.rm":
            try transports.remove(params.requiredString("target"))
            return .object([:])
        case "proxy.start":
            let pk = try Self.publicKey(params.requiredString("pk"))
            let timeout = try params.optionalInt("timeout") ?? 20
            let options: SkysocksClientOptions
            do { options = try SkysocksClientOptions(server: pk.hex, addr: params.optionalString("addr")) } catch {
                throw ControlError(.badRequest, "skysocks-client: \(error)")
            }
            try await ensureTransport(to: pk, timeout: timeout)
            try await apps.start(AppName.skysocksClient.rawValue, options: .skysocksClient(options),
                                 shownArguments: options.arguments)
            return await apps.snapshotOffPool().first { $0["name"]?.stringValue == AppName.skysocksClient.rawValue } ?? .null
        case "proxy.stop":
            try await apps.stop(AppName.skysocksClient.rawValue)
            return .object([:])
        case "proxy.status":
            return await apps.snapshotOffPool().first { $0["name"]?.stringValue == AppName.skysocksClient.rawValue } ?? .null
        case "vpn.start", "vpn.stop", "vpn.status", "vpn.server.start", "vpn.server.stop", "vpn.server.status":
            return try await vpnControl(method, params)
        case let m where m.hasPrefix("skynet.") || m.hasPrefix("resolver."):
            return try await skynetControl(method, params)
        case let m where m.hasPrefix("skychat."):
            return try await skychatControl(method, params)
        case "ui.token", "ui.password", "discovery.services":
            return try await uiControl(method, params)
        case "apps.ls":
            return .array(await apps.snapshotOffPool())
        case "apps.start":
            let args = try params["args"].map { v -> [String] in
                guard let a = v.arrayValue, let strings = Optional(a.compactMap(\.stringValue)), strings.count == a.count else {
                    throw ControlError(.badRequest, "parameter \"args\" must be an array of strings")
                }
                return strings
            }
            try await apps.start(params.requiredString("name"), args: args)
            return .object([:])
        case "apps.stop":
            try await apps.stop(params.requiredString("name"))
            return .object([:])
        default:
            throw ControlError(.badRequest, "unknown method \"\(method)\"")
        }
    }

    /// `vpn.*` methods (docs/cli.md): start/stop/status of vpn-client and vpn-server.
    private func vpnControl(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        let client = AppName.vpnClient.rawValue, server = AppName.vpnServer.rawValue
        func row(_ name: String) async -> ControlValue {
            await apps.snapshotOffPool().first { $0["name"]?.stringValue == name } ?? .null
        }
        switch method {
        case "vpn.start":
            let pk = try Self.publicKey(params.requiredString("pk"))
            let timeout = try params.optionalInt("timeout") ?? 20
            // The edge: the parameters become typed options here, and bad ones are refused
            // before a transport is dialled.
            let arguments = try Self.vpnClientArguments(server: pk, params)
            if try params.optionalBool("existing_tp") ?? false {
                guard transports.list().contains(where: { $0.remoteKey == pk && $0.state == .up }) else {
                    throw ControlError(.notFound, "no transport to \(pk.hex) is up (--existing-tp)")
                }
            } else {
                try await ensureTransport(to: pk, timeout: timeout)
            }
            try refuseRelayOnlyPath(to: pk, allowRelay: params.optionalBool("allow_relay") ?? false)
            // A refusal by the server's whitelist arrives as AppError code `forbidden` (handle).
            try await apps.start(client, options: .vpnClient(arguments), shownArguments: arguments.arguments)
            return await row(client)
        case "vpn.stop":
            do {
                try await apps.stop(client)
            } catch {
                // Not running: a visor that died with the VPN up left routes, the kill switch
                // and DNS as they were; stop restores them from the state file (docs/vpn.md §5).
                let (directory, logger) = (options.stateDirectory, logger)
                guard await BlockingPool.shared.runOrInline({ VPNClient.restoreLeftovers(stateDirectory: directory, logger: logger) }) else {
                    throw error
                }
            }
            return .object([:])
        case "vpn.status":
            return await row(client)
        case "vpn.server.start":
            let arguments: VPNServerArguments
            do {
                arguments = try VPNServerArguments(
                    whitelist: params.optionalString("whitelist").map { [$0] } ?? [], secure: params.optionalBool("secure") ?? true,
                    netifc: params.optionalString("netifc"), dns: params.optionalString("dns"),
                    dns6: params.optionalString("dns6"), ipv6Prefix: params.optionalString("ipv6_prefix"))
            } catch let e as VPNArgumentError {
                throw ControlError(.badRequest, "vpn-server: \(e)")
            }
            try await apps.start(server, options: .vpnServer(arguments), shownArguments: arguments.arguments)
            return await row(server)
        case "vpn.server.stop":
            try await apps.stop(server)
            return .object([:])
        default:
            return await row(server)
        }
    }

    /// `vpn.start`'s parameters (docs/cli.md) as typed options; bad ones are `bad_request`.
    static func vpnClientArguments(server pk: PublicKey, _ params: [String: ControlValue]) throws -> VPNClientArguments {
        do {
            return try VPNClientArguments(
                server: pk, killSwitch: params.optionalBool("killswitch") ?? false,
                dns: params.optionalString("dns").map(VPNClientArguments.dnsServers) ?? [],
                lan: params.optionalString("lan"), lanSubnet: params.optionalString("lan_subnet"),
                bypass: params.optionalString("bypass").map { [$0] } ?? [], uplink: params.optionalString("uplink"),
                dhcpRange: params.optionalString("dhcp_range"))
        } catch let e as VPNArgumentError {
            throw ControlError(.badRequest, "vpn-client: \(e)")
        }
    }

    /// Makes sure a transport to `pk` is up, dialling one if needed: from the peers table, else
    /// from the addresses discovery has for `pk` (`TransportManager.connect`). `timeout` bounds
    /// the lookup, punch and dials together; on expiry the attempt is abandoned with an error
    /// naming the timeout.
    func ensureTransport(to pk: PublicKey, timeout: Int64) async throws {
        guard (1...3600).contains(timeout) else { throw ControlError(.badRequest, "timeout must be in 1...3600 s, not \(timeout)") }
        if transports.list().contains(where: { $0.remoteKey == pk && $0.state == .up }) { return }
        _ = try await transports.connect(remote: pk, within: timeout)
    }

    /// The VPN stays on direct transports (as Skywire's: "routed over STCPR or SUDPH transports,
    /// not through DMSG relays"): with only a dmsg transport up to `pk`, `vpn.start` fails unless
    /// the user opted in (`--allow-relay`).
    func refuseRelayOnlyPath(to pk: PublicKey, allowRelay: Bool) throws {
        if let refusal = Self.relayOnlyRefusal(to: pk, transports: transports.list(), allowRelay: allowRelay) {
            throw ControlError(.failed, refusal)
        }
    }

    /// The refusal's text when the transports up to `pk` are all dmsg and the relay is not
    /// allowed; nil otherwise.
    static func relayOnlyRefusal(to pk: PublicKey, transports: [TransportInfo], allowRelay: Bool) -> String? {
        let up = transports.filter { $0.remoteKey == pk && $0.state == .up }
        guard !allowRelay, !up.isEmpty, !up.contains(where: { $0.type.isDirect }) else { return nil }
        return "the only transport to \(pk.hex) goes through a dmsg relay: the VPN is routed over stcpr or sudph, "
            + "not through dmsg relays (pass --allow-relay to use the relay anyway)"
    }

    static func publicKey(_ hex: String) throws -> PublicKey {
        do {
            return try PublicKey(hex: hex)
        } catch {
            throw ControlError(.badRequest, "\"\(hex)\" is not a public key (64 lowercase hex characters)")
        }
    }
}

extension TransportInfo {
    /// The stable JSON form of `tp ls --json` (docs/cli.md).
    public var controlValue: ControlValue {
        var o: [String: ControlValue] = [
            "id": .string(id), "type": .string(type.rawValue), "remote_pk": .string(remoteKey.hex),
            "remote_addr": .string(remoteAddress), "initiator": .bool(initiator), "wanted": .bool(wanted),
            "state": .string(state.rawValue), "bytes_sent": .int(Int64(clamping: bytesSent)),
            "bytes_received": .int(Int64(clamping: bytesReceived)), "streams": .int(Int64(streams)),
        ]
        o["established_unix"] = establishedAt.map { .int($0) } ?? .null
        o["last_error"] = lastError.map { .string($0) } ?? .null
        o["retry_in_seconds"] = retryInSeconds.map { .int($0) } ?? .null
        o["rtt_ms"] = rttMillis.map { .double($0) } ?? .null
        o["relay_pk"] = relayKey.map { .string($0.hex) } ?? .null
        o["relay_addr"] = relayAddress.map { .string($0) } ?? .null
        return .object(o)
    }
}
