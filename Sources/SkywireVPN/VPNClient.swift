import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto
import SkywireSystem
import SkywireTransport
#if canImport(Glibc)
import Glibc
#endif

/// The `vpn-client` engine (docs/vpn.md): handshake on a control stream to the server's
/// port, then a TUN with the leased address, `0.0.0.0/1` + `128.0.0.0/1` through it (with an
/// IPv6 lease its IPv6 address and `::/1` + `8000::/1` too), a host route to the exit's
/// transport address via the original path, IPv6 without a lease (and with the kill switch
/// everything else) blocked in nftables, DNS pointed at the tunnel. The system stays
/// configured while the session reconnects and is restored on `stop`.
public final class VPNClient: DatagramSink, @unchecked Sendable {
    // @unchecked Sendable: every `var` is guarded by `lock`; the lets are immutable or atomics
    // (the per-packet state: `tunnelAddress`, `tunRef`, the byte counters, `stopFlag`); the
    // `coalescer` locks itself (the transports' loops call the `DatagramSink` methods).
    public static let tunName = "skwvpn0"
    public static let serverPort: UInt16 = 44
    static let stateFileName = "vpn-client.state"
    static let halves = [IPPrefix("0.0.0.0/1")!, IPPrefix("128.0.0.0/1")!]
    static let halves6 = [IPPrefix("::/1")!, IPPrefix("8000::/1")!]
    static let handshakeTimeout: TimeAmount = .seconds(10)
    /// How long SERVER_OK waits for its IPV6_LEASE (sent in the same write by exits that carry
    /// IPv6) before the session goes on without IPv6 (an older exit).
    static let ipv6Grace: TimeAmount = .seconds(1)
    static let reconnectInitial: Int64 = 1
    static let reconnectMax: Int64 = 10

    public enum State: String, Sendable { case connecting, connected, reconnecting, stopped }

    let arguments: VPNClientArguments
    let transports: TransportManager
    let localPort: UInt16
    let serverPort: UInt16
    let logger: Logger
    let stateDirectory: String
    let state: VPNStateFile
    /// The LAN side in the gateway role (docs/gateway.md).
    let gateway: VPNGateway?

    let lock = NIOLock()
    private var current: State = .stopped
    private var stopping = false
    private var stream: StreamBox?
    private var answer: VPNServerOK?
    /// The client tunnel address (host order) while a session is up, 0 between sessions.
    private let tunnelAddress = ManagedAtomic<UInt32>(0)
    /// The client's IPv6 tunnel address (host-order halves) while a session with an IPv6
    /// lease is up, (0, 0) otherwise.
    let tunnelAddress6High = ManagedAtomic<UInt64>(0)
    let tunnelAddress6Low = ManagedAtomic<UInt64>(0)
    /// What the firewall was applied with (kept to re-apply it when IPv6 comes or goes).
    private var firewallAddresses: [IPAddress] = []
    /// The TUN, set once by `configure`.
    private let tunRef = ManagedAtomicLazyReference<TunDevice>()
    private let stopFlag = ManagedAtomic<Bool>(false)
    private let bytesUpCounter = ManagedAtomic<UInt64>(0)
    private let bytesDownCounter = ManagedAtomic<UInt64>(0)
    private var tun: TunDevice?
    private var waker: EventWaker?
    private var reader: SystemThread?
    private var serverTransportAddress: IPAddress?
    /// Merges TCP segments from the server for the TUN (the `DatagramSink` calls, from the
    /// transports' event loops).
    private let coalescer = SharedTCPCoalescer()
    var stateEntries: [(key: String, value: String)] = []
    private var lastHandshake: Int64?
    private var lastError: String?
    private var reconnects = 0
    private var reconnectTask: Task<Void, Never>?
    /// Until then reconnect attempts come every `uplinkRetryInterval` instead of backing off
    /// (the uplink just changed: the transport is being redialled, VPNRoutes+Uplink.swift).
    var fastRetryUntil: ContinuousClock.Instant?

    public init(arguments: VPNClientArguments, transports: TransportManager, localPort: UInt16,
                serverPort: UInt16 = VPNClient.serverPort, stateDirectory: String, logger: Logger) {
        self.arguments = arguments
        self.transports = transports
        self.localPort = localPort
        self.serverPort = serverPort
        self.logger = logger
        self.stateDirectory = stateDirectory
        state = VPNStateFile(directory: stateDirectory, name: Self.stateFileName)
        gateway = arguments.gateway.map { VPNGateway(options: $0, tun: Self.tunName, stateDirectory: stateDirectory, logger: logger) }
    }

    // MARK: Start and stop

    /// Cleans up after a crashed run, performs the first handshake (a refusal throws and
    /// changes nothing), then configures the system.
    public func start() async throws {
        // System changes (nft, netlink, resolvectl, dnsmasq) and joins run on the blocking pool.
        await BlockingPool.shared.runOrInline { [self] in Self.cleanLeftovers(state, logger: logger) }
        lock.withLock {
            current = .connecting
            stopping = false
        }
        var opened: StreamBox?
        do {
            // The LAN is fenced before anything else; without the gateway role, what an
            // earlier gateway run left is removed (the role was turned off).
            try await BlockingPool.shared.run { [self] in
                if let gateway { try gateway.installFence() }
                else { VPNGateway.cleanLeftovers(directory: stateDirectory, keepFence: false, logger: logger) }
            }
            let box: StreamBox, ok: VPNServerOK
            do {
                (box, ok) = try await handshake()
            } catch let e where gateway != nil && Self.isTransient(e) {
                // A gateway whose exit is unreachable (down at boot) keeps its LAN fenced and
                // keeps trying, so the LAN comes back by itself (docs/gateway.md §3.2).
                lock.withLock {
                    current = .reconnecting
                    lastError = "\(e)"
                }
                logger.warning("vpn-client (gateway): exit unreachable; retrying in the background", metadata: ["error": "\(e)"])
                startReconnecting()
                return
            }
            opened = box
            try await BlockingPool.shared.run { [self] in try configure(ok) }
            lock.withLock {
                stream = box
                answer = ok
                current = .connected
                lastHandshake = Int64(time(nil))
            }
            logger.info("vpn-client connected", metadata: ["server": "\(arguments.server.short)",
                                                           "addr": "\(ok.clientAddress)", "mtu": "\(ok.mtu)"])
        } catch {
            if let opened { opened.stream.eventLoop.execute { opened.stream.finish() } }
            await stop(keepLANFence: gateway != nil)
            lock.withLock { lastError = "\(error)" }
            throw error
        }
    }

    /// Ends the session and restores routes, DNS and nftables exactly; with `keepLANFence`
    /// (visor shutdown, failed start) the gateway's LAN kill switch stays in the kernel.
    public func stop(keepLANFence: Bool = false) async {
        let (box, task, device, w, r): (StreamBox?, Task<Void, Never>?, TunDevice?, EventWaker?, SystemThread?) = lock.withLock {
            stopping = true
            stopFlag.store(true, ordering: .relaxed)
            current = .stopped
            tunnelAddress.store(0, ordering: .relaxed)
            setTunnelAddress6(nil)
            defer {
                stream = nil
                reconnectTask = nil
                tun = nil
                reader = nil
                waker = nil
            }
            return (stream, reconnectTask, tun, waker, reader)
        }
        task?.cancel()
        // A gateway's reconnect task may be configuring the system for its first session.
        if gateway != nil { await task?.value }
        transports.setDatagramSink(nil, port: localPort)
        if let box { box.stream.eventLoop.execute { box.stream.finish() } }
        w?.wake()
        await BlockingPool.shared.runOrInline { [self] in
            r?.join()
            device?.close()
            Self.cleanLeftovers(state, logger: logger)
            gateway?.teardown(keepFence: keepLANFence)
        }
    }

    /// The `/32` (`/128`) host route to the exit's transport address `ip` that keeps it outside
    /// the tunnel, copied from the route the kernel uses without us: the same gateway and
    /// device, or the device alone for an exit on the client's own link (scope link).
    static func hostRoute(to ip: IPAddress, via path: RouteEntry) -> RouteSpec {
        RouteSpec(destination: IPPrefix(ip, ip.bitCount)!, interface: path.interfaceName, gateway: path.gateway,
                  scope: path.gateway == nil ? RouteSpec.scopeLink : RouteSpec.scopeUniverse)
    }

    /// `vpn stop` while the app is not running (the visor died with the VPN up and was started
    /// again): undoes what the crashed run recorded, the gateway role's LAN side included.
    /// False when there was nothing to undo.
    public static func restoreLeftovers(stateDirectory: String, logger: Logger) -> Bool {
        let state = VPNStateFile(directory: stateDirectory, name: stateFileName)
        let client = !state.load().isEmpty
        if client { cleanLeftovers(state, logger: logger) }
        let lan = VPNGateway.cleanLeftovers(directory: stateDirectory, keepFence: false, logger: logger) > 0
        if client || lan { logger.info("vpn-client: undid what a crashed run left", metadata: ["state_dir": "\(stateDirectory)"]) }
        return client || lan
    }

    /// Undoes what the state file records: nft table, host route, DNS.
    static func cleanLeftovers(_ state: VPNStateFile, logger: Logger) {
        let entries = state.load()
        guard !entries.isEmpty else { return }
        let nl = try? RouteNetlink()
        for (key, value) in entries.reversed() {
            do {
                switch key {
                case "nft_table":
                    try NFTables.deleteTable(family: VPNFirewall.family, name: value)
                case "route":
                    if let spec = RouteSpec(stateValue: value), let nl {
                        do { try nl.removeRoute(spec) } catch let e as NetlinkError where e.notFound {}
                    }
                case "tun":
                    try nl?.deleteLink(value)
                default:
                    _ = try VPNDNS.restore(key: key, value: value)
                }
            } catch {
                logger.warning("vpn-client: cleanup step failed", metadata: ["step": "\(key)=\(value)", "error": "\(error)"])
            }
        }
        state.remove()
    }

    /// Drops the last `key=value` entry again (the change it announced did not happen).
    func unrecord(_ key: String, _ value: String) throws {
        let entries: [(key: String, value: String)] = lock.withLock {
            if let i = stateEntries.lastIndex(where: { $0.key == key && $0.value == value }) { stateEntries.remove(at: i) }
            return stateEntries
        }
        try state.save(entries)
    }

    func record(_ key: String, _ value: String) throws {
        let entries: [(key: String, value: String)] = lock.withLock {
            stateEntries.append((key, value))
            return stateEntries
        }
        try state.save(entries)
    }

    // MARK: Handshake

    /// Opens the control stream and waits for the server's answer.
    private func handshake() async throws -> (StreamBox, VPNServerOK) {
        let nl = try? RouteNetlink()
        let addresses = (try? nl?.addresses()) ?? []
        let networks = Self.localNetworks(addresses: addresses, routes: (try? nl?.routes(family: .v4)) ?? [])
            + Self.localNetworks6(addresses: addresses)
        let stream = try await transports.openStream(to: arguments.server, port: serverPort, sourcePort: localPort,
                                                     timeout: Self.handshakeTimeout).get()
        let box = StreamBox(stream)
        let loop = stream.eventLoop
        let promise = loop.makePromise(of: VPNServerOK.self)
        loop.execute { [self] in
            let handler = ClientControlHandler(handshake: VPNClientHandshake(localNetworks: networks), promise: promise) { [weak self] in
                self?.sessionEnded(box)
            }
            box.stream.setDelegate(handler)
            var out = ByteBufferAllocator().buffer(capacity: 64)
            out.writeBytes(handler.handshake.helloBytes)
            box.stream.write(out)
            let timer = loop.scheduleTask(in: Self.handshakeTimeout) {
                handler.fail(VPNError("the server did not answer within \(Self.handshakeTimeout.nanoseconds / 1_000_000_000) s"))
                box.stream.reset(.appClosed)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        return (box, try await promise.futureResult.get())
    }

    /// The IPv4 networks this host has, reported in CLIENT_HELLO (the server's pool avoids
    /// them) and checked against SERVER_OK (`VPNServerOK.clash`): interface addresses first
    /// (not loopback, not the tunnel), then the destinations of main-table unicast routes that
    /// are not default routes and not on the tunnel (a LAN behind a router, another VPN).
    static func localNetworks(addresses: [InterfaceAddress], routes: [RouteEntry]) -> [IPPrefix] {
        var out = addresses
            .filter { $0.prefix.family == .v4 && $0.interfaceName != tunName && $0.interfaceName != "lo" }
            .map(\.prefix)
        for r in routes where r.destination.family == .v4 && r.destination.length > 0 && r.table == RouteSpec.mainTable
            && r.type == RouteNetlink.rtnUnicast && r.interfaceName != tunName && !out.contains(where: { $0.network == r.destination.network }) {
            out.append(r.destination)
        }
        return out
    }

    /// The IPv6 networks of this host's interfaces (not loopback, not the tunnel, not
    /// link-local) the IPv6 lease is checked against (`VPNIPv6Lease.clash`).
    static func localNetworks6(addresses: [InterfaceAddress]) -> [IPPrefix] {
        addresses.filter {
            $0.prefix.family == .v6 && $0.interfaceName != tunName && $0.interfaceName != "lo"
                && $0.prefix.address.nonPublicRange?.kind != .linkLocal
        }.map(\.prefix)
    }

    // MARK: System configuration

    /// First successful handshake: TUN, address, routes, firewall, DNS; each recorded first.
    private func configure(_ ok: VPNServerOK) throws {
        let nl = try RouteNetlink()
        let toServer = transports.list().filter { $0.remoteKey == arguments.server }
        guard let live = toServer.first(where: { $0.state == .up }),
              let serverIP = IPAddress(Self.host(of: live.relayAddress ?? live.remoteAddress)) else {
            throw VPNError("no live transport to \(arguments.server.hex) to route around the tunnel")
        }
        // Every address the exit's transports use (stcpr and sudph may differ; a dmsg transport,
        // with --allow-relay: the relay server's) bypasses the tunnel.
        var serverIPs = [serverIP]
        for t in toServer {
            if let ip = IPAddress(Self.host(of: t.relayAddress ?? t.remoteAddress)), !serverIPs.contains(ip) { serverIPs.append(ip) }
        }
        // A host route that is already there (same destination, device and gateway) is not
        // ours: it is neither added, recorded nor removed.
        var hostRoutes: [RouteSpec] = []
        for ip in serverIPs {
            let routes = try nl.routes(family: ip.family)
            if let path = RouteEntry.bestRoute(to: ip, in: routes, excludingInterface: Self.tunName) {
                let host = Self.hostRoute(to: ip, via: path)
                if !(path.destination == host.destination && path.gateway == host.gateway) { hostRoutes.append(host) }
            }
        }

        let dns = arguments.dns.isEmpty ? ok.dns + (ok.ipv6.lease?.dns ?? []) : arguments.dns
        if gateway != nil && dns.isEmpty {
            throw VPNError("the gateway needs DNS servers to forward the LAN's queries to: give --dns IP or run the exit with --dns")
        }
        try record("nft_table", VPNFirewall.clientTable)
        lock.withLock { firewallAddresses = serverIPs }
        try applyFirewall(ipv6: ok.ipv6.lease != nil)
        let device = try TunDevice(name: Self.tunName, nonBlocking: true, offloads: VPNOffloads.enabled)
        try nl.setLink(device.name, up: true, mtu: UInt32(ok.mtu))
        try nl.addAddress(ok.clientAddress, interface: device.name)
        for host in hostRoutes {
            // Recorded before it is added, exactly as added (scope included), so that a crash
            // right after the add still leaves a state file that removes it; a route that
            // turns out to exist already (added meanwhile) is not ours and not recorded.
            try record("route", host.stateValue)
            do {
                try nl.addRoute(host)
            } catch let e as NetlinkError where e.alreadyExists {
                try unrecord("route", host.stateValue)
            }
        }
        for half in Self.halves {
            try nl.addRoute(RouteSpec(destination: half, interface: device.name))
        }
        if let lease6 = ok.ipv6.lease { try addIPv6(lease6, interface: device.name, nl) }
        if !dns.isEmpty {
            try FileIO.makeDirectories(stateDirectory)
            try VPNDNS.apply(servers: dns, tun: device.name, stateDirectory: stateDirectory) { try record($0, $1) }
        }
        try gateway?.configure(dns: dns, ipv6: ok.ipv6.lease != nil)
        let w = try EventWaker()
        _ = tunRef.storeIfNilThenLoad(device)
        lock.withLock {
            tun = device
            waker = w
            serverTransportAddress = serverIP
            tunnelAddress.store(ok.clientAddress.address.v4Value ?? 0, ordering: .relaxed)
            setTunnelAddress6(ok.ipv6.lease)
        }
        transports.setDatagramSink(self, port: localPort)
        let mtu = Int(ok.mtu)
        let r = try SystemThread(name: "vpn-client-tun") { [self] in readLoop(device, w, mtu: mtu) }
        lock.withLock { reader = r }
    }

    /// A new lease after a reconnect with a different address: swap the TUN address.
    private func readdress(from old: VPNServerOK, to new: VPNServerOK) {
        guard old.clientAddress != new.clientAddress, let device = lock.withLock({ tun }) else { return }
        do {
            let nl = try RouteNetlink()
            try? nl.removeAddress(old.clientAddress, interface: device.name)
            try nl.addAddress(new.clientAddress, interface: device.name)
            // Deleting the old address can take the /1 routes with it only if they used it as
            // source; re-add them (existing ones are fine).
            for half in Self.halves {
                do { try nl.addRoute(RouteSpec(destination: half, interface: device.name)) }
                catch let e as NetlinkError where e.alreadyExists {}
            }
        } catch {
            logger.error("vpn-client: cannot change the tunnel address", metadata: ["error": "\(error)"])
        }
    }

    /// `ip -6 addr add LEASE dev TUN` and `::/1`, `8000::/1` through the TUN (existing ones are fine).
    private func addIPv6(_ lease: VPNIPv6Lease, interface: String, _ nl: RouteNetlink) throws {
        do { try nl.addAddress(lease.clientAddress, interface: interface) } catch let e as NetlinkError where e.alreadyExists {}
        for half in Self.halves6 {
            do { try nl.addRoute(RouteSpec(destination: half, interface: interface)) } catch let e as NetlinkError where e.alreadyExists {}
        }
    }

    /// The client ruleset with the recorded transport addresses; IPv6 carried or blocked.
    private func applyFirewall(ipv6: Bool) throws {
        let lan = arguments.gateway
        try NFTables.apply(VPNFirewall.clientRuleset(tun: Self.tunName, killSwitch: arguments.killSwitch,
                                                     transportAddresses: lock.withLock { firewallAddresses }, lan: lan?.lan,
                                                     bypassMark: lan?.hasBypass == true ? VPNFirewall.bypassMark : nil,
                                                     ipv6: ipv6))
    }

    /// Sets the IPv6 address the datapath accepts (nil: IPv6 dropped).
    private func setTunnelAddress6(_ lease: VPNIPv6Lease?) {
        let b = lease?.clientAddress.address.bytes ?? []
        let halves = b.count == IPAddress.v6Length
            ? (b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }, b[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) : (0, 0)
        tunnelAddress6High.store(halves.0, ordering: .relaxed)
        tunnelAddress6Low.store(halves.1, ordering: .relaxed)
    }

    /// A reconnect whose IPv6 lease differs: swap the address; when IPv6 comes or goes, the
    /// firewall follows (blocked without a lease).
    private func readdress6(from old: VPNServerOK, to new: VPNServerOK) {
        guard old.ipv6.lease != new.ipv6.lease, let device = lock.withLock({ tun }) else { return }
        do {
            let nl = try RouteNetlink()
            if let o = old.ipv6.lease { try? nl.removeAddress(o.clientAddress, interface: device.name) }
            if let n = new.ipv6.lease { try addIPv6(n, interface: device.name, nl) }
            if (old.ipv6.lease == nil) != (new.ipv6.lease == nil) { try applyFirewall(ipv6: new.ipv6.lease != nil) }
        } catch {
            logger.error("vpn-client: cannot change the IPv6 tunnel address", metadata: ["error": "\(error)"])
        }
    }

    /// The exit announced other DNS servers after a reconnect (and `--dns` does not override
    /// them): the system resolver and the gateway's dnsmasq and DNS fence use the new ones.
    private func updateDNS(from old: VPNServerOK, to new: VPNServerOK) {
        guard arguments.dns.isEmpty, old.dns != new.dns else { return }
        guard !new.dns.isEmpty else {
            logger.warning("vpn-client: the exit announces no DNS servers any more; keeping the previous ones",
                           metadata: ["dns": "\(old.dns.map(\.description).joined(separator: ","))"])
            return
        }
        let entries = lock.withLock { stateEntries }
        do {
            try VPNDNS.update(servers: new.dns, tun: Self.tunName, entries: entries)
        } catch {
            logger.error("vpn-client: cannot point the resolver at the new DNS servers", metadata: ["error": "\(error)"])
        }
        do {
            try gateway?.updateDNS(new.dns)
        } catch {
            logger.error("gateway: cannot switch dnsmasq to the new DNS servers", metadata: ["error": "\(error)"])
        }
    }

    static func host(of address: String) -> String {
        if address.hasPrefix("["), let end = address.firstIndex(of: "]") {
            return String(address[address.index(after: address.startIndex)..<end])
        }
        return String(address.split(separator: ":").first ?? "")
    }

    // MARK: Reconnecting

    /// The control stream ended: keep the system configured (traffic into the TUN is dropped,
    /// the kill switch stays) and redo the handshake until it succeeds or the app stops.
    private func sessionEnded(_ box: StreamBox) {
        let start: Bool = lock.withLock {
            guard !stopping, stream?.stream === box.stream else { return false }
            stream = nil
            current = .reconnecting
            tunnelAddress.store(0, ordering: .relaxed)
            setTunnelAddress6(nil)
            return reconnectTask == nil
        }
        guard start else { return }
        logger.info("vpn-client: session lost, reconnecting", metadata: ["server": "\(arguments.server.short)"])
        startReconnecting()
    }

    private func startReconnecting() {
        let task = Task { [weak self] in
            guard let self else { return }
            await self.reconnectLoop()
        }
        lock.withLock { reconnectTask = task }
    }

    /// Handshake failures worth retrying: anything but a refusal by the server.
    static func isTransient(_ error: Error) -> Bool {
        guard let e = error as? VPNError else { return true }
        return e.kind == .failed
    }

    /// The first session of a gateway that started without its exit: configure the system now;
    /// a failure undoes the client's changes (the LAN fence stays) and is retried.
    private func configureLate(_ ok: VPNServerOK, _ box: StreamBox) throws {
        // `stop()` waits for the reconnect task in the gateway role, so this does not race it.
        guard !lock.withLock({ stopping }) else {
            box.stream.eventLoop.execute { box.stream.finish() }
            throw VPNError("stopping")
        }
        do {
            try configure(ok)
        } catch {
            // configure() stores the TUN and starts its reader last: nothing of those to undo.
            box.stream.eventLoop.execute { box.stream.finish() }
            Self.cleanLeftovers(state, logger: logger)
            gateway?.teardown(keepFence: true)
            lock.withLock { stateEntries = [] }
            throw error
        }
    }

    private func reconnectLoop() async {
        var delay = Self.reconnectInitial
        while !Task.isCancelled && !lock.withLock({ stopping }) {
            let fast = lock.withLock { fastRetryUntil.map { ContinuousClock.now < $0 } ?? false }
            try? await Task.sleep(for: fast ? Self.uplinkRetryInterval : .seconds(delay))
            if Task.isCancelled || lock.withLock({ stopping }) { break }
            do {
                let (box, ok) = try await handshake()
                let old: VPNServerOK? = lock.withLock { answer }
                try await BlockingPool.shared.run { [self] in
                    if let old {
                        readdress(from: old, to: ok)
                        readdress6(from: old, to: ok)
                        updateDNS(from: old, to: ok)
                    } else {
                        try configureLate(ok, box)
                    }
                }
                let stillRunning: Bool = lock.withLock {
                    guard !stopping else { return false }
                    stream = box
                    answer = ok
                    current = .connected
                    tunnelAddress.store(ok.clientAddress.address.v4Value ?? 0, ordering: .relaxed)
                    setTunnelAddress6(ok.ipv6.lease)
                    lastHandshake = Int64(time(nil))
                    reconnects += 1
                    reconnectTask = nil
                    return true
                }
                if !stillRunning { box.stream.eventLoop.execute { box.stream.finish() } }
                logger.info("vpn-client reconnected", metadata: ["addr": "\(ok.clientAddress)"])
                return
            } catch {
                lock.withLock { lastError = "\(error)" }
                logger.debug("vpn-client: reconnect failed", metadata: ["error": "\(error)"])
                delay = min(delay * 2, Self.reconnectMax)
            }
        }
        lock.withLock { reconnectTask = nil }
    }

    // MARK: Datapath

    /// A packet from the server through the app router (one too large for the in-place path).
    public func receive(datagram: ByteBuffer, from key: PublicKey) {
        datagram.withUnsafeReadableBytes { receive(packet: $0, from: key) }
    }

    /// A packet from the server, in place (`DatagramSink`, on the transport's event loop):
    /// with TUN offloads, TCP segments are merged (`TCPCoalescer`) until the burst ends.
    public func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from key: PublicKey, sourcePort: UInt16) {
        receive(packet: UnsafeRawBufferPointer(payload), from: key, coalescer: coalescer)
    }

    public func datagramBatchEnded() {
        guard let device = tunRef.load(), device.offloads else { return }
        coalescer.flush { header, packet in Self.write(header, packet, to: device) }
    }

    /// Only IPv4 addressed to our tunnel address (IPv6 to our IPv6 one) is written to the TUN.
    @inline(__always)
    private func receive(packet: UnsafeRawBufferPointer, from key: PublicKey, coalescer: SharedTCPCoalescer? = nil) {
        guard key == arguments.server else { return }
        let address = tunnelAddress.load(ordering: .relaxed)
        guard address != 0, let device = tunRef.load() else { return }
        if IPv4Packet.isValid(packet) {
            guard IPv4Packet.destination(packet) == address else { return }
        } else {
            guard isOurs6(packet) else { return }
        }
        bytesDownCounter.wrappingIncrement(by: UInt64(packet.count), ordering: .relaxed)
        if let coalescer, device.offloads {
            coalescer.add(packet) { header, packet in Self.write(header, packet, to: device) }
        } else {
            _ = try? device.write(packet)
        }
    }

    /// One TUN write with its virtio_net_hdr.
    static func write(_ header: VirtioNetHeader, _ packet: UnsafeRawBufferPointer, to device: TunDevice) {
        withUnsafeTemporaryAllocation(byteCount: VirtioNetHeader.size, alignment: 8) { h in
            header.write(into: h)
            _ = try? device.write(header: UnsafeRawBufferPointer(h), packet: packet)
        }
    }

    /// The TUN reader: reads up to a batch of packets straight into the send arena
    /// (`DatagramBatch`), then sends them at once: one sendmmsg over sudph, one write over stcpr.
    private func readLoop(_ device: TunDevice, _ waker: EventWaker, mtu: Int) {
        // One peer per thread: over stcpr, wait for the link rather than drop (DatagramBatch).
        let batch = DatagramBatch(waitsForRoom: true)
        let reader = TunReader(device: device, mtu: mtu)
        let allocator = ByteBufferAllocator()
        let server = arguments.server
        var path: DatagramPath?
        while !stopFlag.load(ordering: .relaxed) {
            if path?.isOpen != true {
                path = transports.datagramPath(to: server, destinationPort: serverPort, sourcePort: localPort)
            }
            let reads: Int
            do {
                reads = try reader.drain(into: batch, maxReads: batch.capacity) { packet, inSlot in
                    guard IPv4Packet.isValid(packet) || isOurs6(packet, source: true) else { return }
                    // Between sessions packets are dropped, never sent around the tunnel.
                    guard tunnelAddress.load(ordering: .relaxed) != 0 else { return }
                    bytesUpCounter.wrappingIncrement(by: UInt64(packet.count), ordering: .relaxed)
                    if let path, inSlot {
                        batch.commit(length: packet.count, path: path)
                    } else {
                        var out = allocator.buffer(capacity: packet.count)
                        out.writeBytes(packet)
                        transports.sendDatagram(to: server, destinationPort: serverPort, sourcePort: localPort, payload: out)
                    }
                }
            } catch {
                logger.error("vpn-client: TUN read failed", metadata: ["error": "\(error)"])
                batch.flush()
                return
            }
            batch.flush()
            if reads == 0 {
                do { _ = try device.waitReadable(waker: waker, timeoutMillis: -1) } catch {
                    logger.error("vpn-client: TUN poll failed", metadata: ["error": "\(error)"])
                    return
                }
            }
        }
    }

    /// A valid IPv6 packet to (from, with `source`) our IPv6 tunnel address, while leased.
    @inline(__always)
    private func isOurs6(_ packet: UnsafeRawBufferPointer, source: Bool = false) -> Bool {
        let high = tunnelAddress6High.load(ordering: .relaxed)
        guard high != 0, IPv6Packet.isValid(packet) else { return false }
        let a = source ? IPv6Packet.source(packet) : IPv6Packet.destination(packet)
        return a.0 == high && a.1 == tunnelAddress6Low.load(ordering: .relaxed)
    }

    // MARK: Status

    public struct Status: Sendable {
        public var server: PublicKey
        public var state: State
        public var clientAddress: IPPrefix?
        public var serverAddress: IPAddress?
        public var serverTransportAddress: IPAddress?
        public var mtu: UInt16?
        public var bytesUp: UInt64
        public var bytesDown: UInt64
        public var lastHandshake: Int64?
        public var transportType: String?
        public var killSwitch: Bool
        /// The IPv6 tunnel address, or nil with the reason IPv6 is blocked in `ipv6Blocked`.
        public var clientAddress6: IPPrefix?
        public var ipv6Blocked: String?
        public var dns: [IPAddress]
        public var reconnects: Int
        public var lastError: String?
        /// The LAN side in the gateway role.
        public var gateway: VPNGateway.Status?
    }

    public var status: Status {
        let type = transports.list().first { $0.remoteKey == arguments.server && $0.state == .up }?.type.rawValue
        let lan = gateway?.status
        return lock.withLock {
            Status(server: arguments.server, state: current, clientAddress: answer?.clientAddress,
                   serverAddress: answer?.serverAddress, serverTransportAddress: serverTransportAddress, mtu: answer?.mtu,
                   bytesUp: bytesUpCounter.load(ordering: .relaxed),
                   bytesDown: bytesDownCounter.load(ordering: .relaxed), lastHandshake: lastHandshake, transportType: type,
                   killSwitch: arguments.killSwitch, clientAddress6: answer?.ipv6.lease?.clientAddress,
                   ipv6Blocked: answer.flatMap { if case .unavailable(let why) = $0.ipv6 { return why } else { return nil } },
                   dns: arguments.dns.isEmpty ? (answer.map { $0.dns + ($0.ipv6.lease?.dns ?? []) } ?? []) : arguments.dns,
                   reconnects: reconnects, lastError: lastError, gateway: lan)
        }
    }
}

/// Reads the server's answer on the client's control stream (callbacks on its event loop).
final class ClientControlHandler: AppStreamDelegate, @unchecked Sendable {
    // @unchecked Sendable: confined to the stream's event loop (every use runs there); the
    // delegate callbacks check it (preconditionInEventLoop).
    var handshake: VPNClientHandshake
    let promise: EventLoopPromise<VPNServerOK>
    let onSessionEnd: () -> Void
    var accepted = false
    var decided = false
    var ended = false

    init(handshake: VPNClientHandshake, promise: EventLoopPromise<VPNServerOK>, onSessionEnd: @escaping () -> Void) {
        self.handshake = handshake
        self.promise = promise
        self.onSessionEnd = onSessionEnd
    }

    /// Accepts without IPv6 when IPV6_LEASE does not follow SERVER_OK within `ipv6Grace`.
    private var ipv6Timer: Scheduled<Void>?

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        stream.eventLoop.preconditionInEventLoop()
        do {
            guard let outcome = try handshake.receive(data.readableBytesView) else {
                if handshake.waitingForIPv6 != nil && ipv6Timer == nil {
                    ipv6Timer = stream.eventLoop.scheduleTask(in: VPNClient.ipv6Grace) { [self] in
                        if let outcome = handshake.finishWithoutIPv6() { decide(outcome, stream) }
                    }
                }
                return
            }
            ipv6Timer?.cancel()
            decide(outcome, stream)
        } catch {
            ipv6Timer?.cancel()
            fail(error)
            stream.reset(.protocolError)
            end()
        }
    }

    private func decide(_ outcome: VPNClientHandshake.Outcome, _ stream: AppStream) {
        switch outcome {
        case .accepted(let ok):
            accepted = true
            decided = true
            promise.succeed(ok)
        case .forbidden(let reason):
            fail(VPNError(.forbidden, "forbidden: \(reason)"))
        case .failed(let reason):
            fail(VPNError(.refused, "the server refused: \(reason)"))
        case .unsafeLease(let reason):
            // The server holds a lease for us: reset so it frees it at once.
            fail(VPNError(reason))
            stream.reset(.refused)
            end()
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        stream.eventLoop.preconditionInEventLoop()
        fail(VPNError("the server closed the session"))
        stream.finish()
        end()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        stream.eventLoop.preconditionInEventLoop()
        fail(VPNError("the session stream was reset: \(code)"))
        end()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    /// Fails the handshake once; later calls (and failures after success) do nothing.
    func fail(_ error: Error) {
        guard !decided else { return }
        decided = true
        promise.fail(error)
    }

    private func end() {
        guard !ended else { return }
        ended = true
        if accepted { onSessionEnd() }
    }
}
