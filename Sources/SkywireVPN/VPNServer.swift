import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireSystem
import SkywireTransport
#if canImport(Glibc)
import Glibc
#endif

/// The `vpn-server` engine (docs/vpn.md): one TUN for every client, a /30 per client from
/// `VPNAddressPool`, masquerading and `--secure` drops in nftables, IP forwarding on.
/// Packets travel as mux datagrams; a client's control stream is its session.
public final class VPNServer: DatagramSink, @unchecked Sendable {
    // @unchecked Sendable: `sessions`, `byAddress`, `pool`, `running`, `tun`, `exitInterface`,
    // `reader`, `netlink` and the counters are guarded by `lock`; `arguments` and the other
    // lets are immutable; the `coalescer` locks itself (the transports' loops call the
    // `DatagramSink` methods).
    public static let tunName = "skwvpns0"
    public static let defaultMTU: UInt16 = 1400
    /// How long a control stream may stay open without a CLIENT_HELLO (or, once refused,
    /// without the client closing it) before the server resets it.
    public static let helloTimeout: TimeAmount = .seconds(10)
    /// At most one info line per this many seconds about hello timeouts (the rest at debug).
    static let helloTimeoutLogInterval: Int64 = 60
    static let stateFileName = "vpn-server.state"
    static let ipForwardKey = "net.ipv4.ip_forward"
    static let ip6ForwardKey = "net.ipv6.conf.all.forwarding"
    /// `accept_ra` 1 is ignored once forwarding is on; 2 keeps the exit's router
    /// advertisements (and so its IPv6 default route) coming (ip-sysctl.rst).
    static let acceptRAWithForwarding = "2"
    static let acceptRAKey = "accept_ra:"
    static func acceptRASysctl(_ interface: String) -> String { "net.ipv6.conf.\(interface).accept_ra" }
    static let noIPv6Uplink = "the exit has no IPv6 uplink (no default IPv6 route)"

    let arguments: VPNServerArguments
    let transports: TransportManager
    let localPort: UInt16
    let logger: Logger
    let state: VPNStateFile
    let mtu: UInt16
    let stateDirectory: String

    private let lock = NIOLock()
    /// The clients' IPv6 network, or why there is none (set by `start`).
    private var ipv6: Result<VPNIPv6Network, VPNError> = .failure(VPNError("not started"))
    private var sessions: [PublicKey: ServerSession] = [:]
    private var byAddress: [UInt32: ServerSession] = [:]
    private var pool = VPNAddressPool()
    private var running = false
    private var tun: TunDevice?
    private var waker: EventWaker?
    private var reader: SystemThread?
    private var netlink: RouteNetlink?
    private(set) var exitInterface = ""
    private var totalSessions = 0
    private var refused = 0
    private var helloTimeouts = 0
    private var lastHelloTimeoutLog: Int64 = 0

    public init(arguments: VPNServerArguments, transports: TransportManager, localPort: UInt16,
                stateDirectory: String, logger: Logger, mtu: UInt16 = VPNServer.defaultMTU) {
        self.arguments = arguments
        self.transports = transports
        self.localPort = localPort
        self.logger = logger
        self.mtu = mtu
        self.stateDirectory = stateDirectory
        state = VPNStateFile(directory: stateDirectory, name: Self.stateFileName)
    }

    // MARK: Start and stop

    /// Undoes a crashed run, picks the exit interface, opens the TUN, enables forwarding and
    /// installs the ruleset. On failure everything done so far is undone.
    public func start() throws {
        Self.cleanLeftovers(state, logger: logger)
        let nl = try RouteNetlink()
        let exit = try arguments.exitInterface ?? Self.detectExitInterface(nl)
        // A detected name goes into the nft script too: the same check as for -i.
        do { try VPNArgumentError.checkInterface(exit, option: "exit interface", reserved: [Self.tunName]) } catch {
            throw VPNError(error.message)
        }
        guard nl.linkExists(exit) else { throw VPNError("exit interface \(exit) does not exist") }
        let addresses = try nl.addresses()
        let originalForward = (try? Sysctl.read(Self.ipForwardKey)) ?? "0"
        var entries = [("nft_table", VPNFirewall.serverTable), ("ip_forward", originalForward)]
        var network6 = clientNetwork6()
        // IPv6 forwarding (and accept_ra 2 where it was 1) only where the kernel has IPv6 and this
        // process may write them; otherwise clients get no IPv6 (the lease says why), IPv4 goes on.
        if case .success = network6, let forward6 = try? Sysctl.read(Self.ip6ForwardKey) {
            let ra = try? Sysctl.read(Self.acceptRASysctl(exit))
            do {
                try Sysctl.checkWritable(Self.ip6ForwardKey)
                if ra == "1" { try Sysctl.checkWritable(Self.acceptRASysctl(exit)) }
                entries.append(("ip6_forward", forward6))
                if let ra, ra == "1" { entries.append((Self.acceptRAKey + exit, ra)) }
            } catch {
                logger.warning("vpn-server: no IPv6 for clients", metadata: ["error": "\(error)"])
                network6 = .failure(VPNError("the exit cannot enable IPv6 forwarding: \(error)"))
            }
        }
        try state.save(entries)
        do {
            let device = try TunDevice(name: Self.tunName, nonBlocking: true, offloads: VPNOffloads.enabled)
            try nl.setLink(device.name, up: true, mtu: UInt32(mtu))
            let ownV4 = addresses.filter { $0.prefix.family == .v4 && $0.interfaceName != device.name }
            let pool = VPNAddressPool(reserved: ownV4.map(\.prefix))
            var net6 = try? network6.get()
            if let n = net6 {
                do {
                    try nl.addAddress(n.serverPrefix, interface: device.name)
                } catch {
                    // IPv6 turned off on this host (disable_ipv6=1: the kernel refuses the address
                    // with EACCES): clients get no IPv6 (the lease says why), IPv4 goes on.
                    logger.warning("vpn-server: no IPv6 for clients", metadata: ["error": "\(error)"])
                    network6 = .failure(VPNError("the exit cannot address its TUN over IPv6: \(error)"))
                    net6 = nil
                }
            }
            try NFTables.apply(VPNFirewall.serverRuleset(
                tun: device.name, exit: exit, secure: arguments.secure, pools: pool.pools, dns: arguments.dns,
                ipv6: net6, lan6: Self.ownNetworks6(addresses, excluding: device.name), dns6: arguments.dns6))
            try Sysctl.write(Self.ipForwardKey, "1")
            for (key, _) in entries where key == "ip6_forward" || key.hasPrefix(Self.acceptRAKey) {
                let name = key == "ip6_forward" ? Self.ip6ForwardKey : Self.acceptRASysctl(String(key.dropFirst(Self.acceptRAKey.count)))
                try Sysctl.write(name, key == "ip6_forward" ? "1" : Self.acceptRAWithForwarding)
            }
            let waker = try EventWaker()
            lock.withLock {
                self.tun = device
                self.waker = waker
                self.netlink = nl
                self.pool = pool
                self.ipv6 = network6
                self.exitInterface = exit
                self.running = true
            }
            transports.setDatagramSink(self, port: localPort)
            let r = try SystemThread(name: "vpn-server-tun") { [self] in readLoop(device, waker) }
            lock.withLock { reader = r }
            logger.info("vpn-server up", metadata: ["tun": "\(device.name)", "exit": "\(exit)", "secure": "\(arguments.secure)",
                                                    "whitelist": "\(arguments.whitelist.summary)"])
        } catch {
            stop()
            throw error
        }
    }

    /// Ends every session and restores the system: TUN (with its addresses) removed, nft table
    /// deleted, `net.ipv4.ip_forward` back to its value before start.
    public func stop() {
        let (device, w, r, all): (TunDevice?, EventWaker?, SystemThread?, [ServerSession]) = lock.withLock {
            running = false
            defer {
                sessions.removeAll()
                byAddress.removeAll()
                tun = nil
                reader = nil
                netlink = nil
            }
            return (tun, waker, reader, Array(sessions.values))
        }
        for s in all {
            let box = StreamBox(s.stream)
            box.stream.eventLoop.execute { box.stream.finish() }
        }
        transports.setDatagramSink(nil, port: localPort)
        w?.wake()
        r?.join()
        device?.close()
        Self.cleanLeftovers(state, logger: logger)
    }

    /// Restores what the state file records (a previous run's nft table and ip_forward value).
    static func cleanLeftovers(_ state: VPNStateFile, logger: Logger) {
        let entries = state.load()
        guard !entries.isEmpty else { return }
        for (key, value) in entries {
            switch key {
            case "nft_table":
                do { try NFTables.deleteTable(family: VPNFirewall.family, name: value) } catch {
                    logger.warning("vpn-server: cannot delete nft table", metadata: ["error": "\(error)"])
                }
            case "ip_forward", "ip6_forward":
                do { try Sysctl.write(key == "ip_forward" ? ipForwardKey : ip6ForwardKey, value) } catch {
                    logger.warning("vpn-server: cannot restore \(key)", metadata: ["error": "\(error)"])
                }
            case let k where k.hasPrefix(acceptRAKey):
                do { try Sysctl.write(acceptRASysctl(String(k.dropFirst(acceptRAKey.count))), value) } catch {
                    logger.warning("vpn-server: cannot restore accept_ra", metadata: ["error": "\(error)"])
                }
            default: break
            }
        }
        state.remove()
    }

    /// The clients' IPv6 network: the routed `--ipv6-prefix`, else this exit's stored ULA /64.
    private func clientNetwork6() -> Result<VPNIPv6Network, VPNError> {
        if let p = arguments.ipv6Prefix, let n = VPNIPv6Network(prefix: p, routed: true) { return .success(n) }
        do {
            guard let n = VPNIPv6Network(prefix: try VPNIPv6Network.storedULA(directory: stateDirectory), routed: false) else {
                return .failure(VPNError("no ULA prefix"))
            }
            return .success(n)
        } catch {
            logger.warning("vpn-server: no IPv6 for clients", metadata: ["error": "\(error)"])
            return .failure(VPNError("the exit cannot make its IPv6 prefix: \(error)"))
        }
    }

    /// The exit's own IPv6 networks (global and ULA, not link-local), which `--secure` keeps
    /// clients from: the exit's IPv6 LAN.
    static func ownNetworks6(_ addresses: [InterfaceAddress], excluding tun: String) -> [IPPrefix] {
        var out: [IPPrefix] = []
        for a in addresses where a.prefix.family == .v6 && a.interfaceName != tun && a.interfaceName != "lo"
            && a.prefix.address.nonPublicRange?.kind != .linkLocal && !out.contains(a.prefix.network) {
            out.append(a.prefix.network)
        }
        return out
    }

    /// What IPV6_LEASE offers the client with IPv4 tunnel address `v4`: an address when the
    /// exit has its IPv6 network and an IPv6 default route now.
    private func offer6(v4: UInt32, network: Result<VPNIPv6Network, VPNError>, netlink: RouteNetlink) -> VPNIPv6Offer {
        switch network {
        case .failure(let e): return .unavailable(e.message)
        case .success(let n):
            guard let routes = try? netlink.defaultRoutes(family: .v6), !routes.isEmpty else { return .unavailable(Self.noIPv6Uplink) }
            return .leased(VPNIPv6Lease(clientAddress: n.clientAddress(v4: v4), serverAddress: n.serverAddress, dns: arguments.dns6))
        }
    }

    /// The interface of the main table's default route; refuses when there is none or several.
    static func detectExitInterface(_ nl: RouteNetlink) throws -> String {
        let names = Set(try nl.defaultRoutes().map(\.interfaceName).filter { !$0.isEmpty })
        guard names.count == 1, let only = names.first else {
            if names.isEmpty { throw VPNError("no default route: pass -i/--netifc IFACE to name the exit interface") }
            throw VPNError("several default routes (\(names.sorted().joined(separator: ", "))): pass -i/--netifc IFACE to pick the exit interface")
        }
        return only
    }

    // MARK: Sessions

    /// A client's control stream arrived (on its event loop). It must say CLIENT_HELLO within
    /// `helloTimeout` (`timeout` in tests), or it is reset and counted.
    public func accept(stream: AppStream, timeout: TimeAmount = VPNServer.helloTimeout) {
        let handler = ServerSessionHandler(server: self, stream: stream)
        stream.setDelegate(handler)
        handler.armDeadline(timeout)
    }

    /// A control stream reached its deadline (`timeout`) without a session: reset by its
    /// handler. One the server had not `answered` (no complete hello) is counted
    /// (`hello_timeouts`) and logged, at info at most once a minute.
    fileprivate func deadlinePassed(_ stream: AppStream, answered: Bool, timeout: TimeAmount) {
        let key = String(stream.remoteKeyHex.prefix(8))
        guard !answered else {
            logger.debug("vpn-server: refused client did not close its control stream; reset", metadata: ["pk": "\(key)"])
            return
        }
        let now = Int64(time(nil))
        let (count, loud): (Int, Bool) = lock.withLock {
            helloTimeouts += 1
            let loud = now - lastHelloTimeoutLog >= Self.helloTimeoutLogInterval
            if loud { lastHelloTimeoutLog = now }
            return (helloTimeouts, loud)
        }
        let seconds = "\(timeout.nanoseconds / 1_000_000_000)"
        if loud {
            logger.info("vpn-server: control stream without CLIENT_HELLO reset", metadata: ["pk": "\(key)", "after_s": "\(seconds)",
                                                                                        "hello_timeouts": "\(count)"])
        } else {
            logger.debug("vpn-server: control stream without CLIENT_HELLO reset", metadata: ["pk": "\(key)", "hello_timeouts": "\(count)"])
        }
    }

    /// CLIENT_HELLO received: refuse, or lease addresses and answer SERVER_OK.
    fileprivate func admit(_ handler: ServerSessionHandler, hello: VPNClientHello) -> VPNMessage {
        guard let key = try? PublicKey(hex: handler.stream.remoteKeyHex) else { return .error("bad client key") }
        if !arguments.whitelist.admits(key) {
            lock.withLock { refused += 1 }
            logger.info("vpn-server: refused (not whitelisted)", metadata: ["pk": "\(key.short)"])
            return .forbidden("\(key.hex) is not on this server's whitelist")
        }
        let result: Result<(VPNLease, VPNIPv6Offer), VPNError> = lock.withLock {
            guard running, let tun, let netlink else { return .failure(VPNError("server stopping")) }
            if let old = sessions.removeValue(forKey: key) { dropLocked(old, resetStream: true) }
            guard let lease = pool.allocate(avoiding: hello.networks) else {
                return .failure(VPNError("address pool exhausted"))
            }
            do {
                try netlink.addAddress(lease.serverPrefix, interface: tun.name)
            } catch {
                pool.release(lease)
                return .failure(VPNError("cannot add \(lease.serverPrefix) to \(tun.name): \(error)"))
            }
            let session = ServerSession(key: key, stream: handler.stream, lease: lease,
                                        clientPort: handler.stream.remotePort, since: Int64(time(nil)))
            handler.session = session
            sessions[key] = session
            byAddress[lease.client.v4Value!] = session
            totalSessions += 1
            let offer = offer6(v4: lease.client.v4Value!, network: ipv6, netlink: netlink)
            session.address6 = offer.lease?.clientAddress.address
            return .success((lease, offer))
        }
        switch result {
        case .failure(let e):
            logger.warning("vpn-server: cannot admit client", metadata: ["pk": "\(key.short)", "error": "\(e)"])
            return .error(e.message)
        case .success(let (lease, offer)):
            logger.info("vpn-server: client connected", metadata: ["pk": "\(key.short)", "addr": "\(lease.clientPrefix)",
                                                                   "addr6": "\(offer.lease?.clientAddress.description ?? "-")"])
            return .serverOK(VPNServerOK(clientAddress: lease.clientPrefix, serverAddress: lease.server, mtu: mtu,
                                         dns: arguments.dns, ipv6: offer))
        }
    }

    /// The session's stream ended.
    fileprivate func end(_ session: ServerSession) {
        lock.withLock {
            guard sessions[session.key] === session else { return }
            sessions.removeValue(forKey: session.key)
            dropLocked(session, resetStream: false)
        }
        logger.info("vpn-server: client disconnected", metadata: ["pk": "\(session.key.short)"])
    }

    /// Releases a session's lease and gateway address; `resetStream` when a new session of the
    /// same client replaces it (its old stream may still look open).
    private func dropLocked(_ s: ServerSession, resetStream: Bool) {
        byAddress.removeValue(forKey: s.lease.client.v4Value!)
        pool.release(s.lease)
        if let tun, let netlink {
            do { try netlink.removeAddress(s.lease.serverPrefix, interface: tun.name) } catch {
                logger.debug("vpn-server: removing address", metadata: ["error": "\(error)"])
            }
        }
        if resetStream {
            let box = StreamBox(s.stream)
            box.stream.eventLoop.execute { box.stream.reset(.appClosed) }
        }
    }

    // MARK: Datapath

    /// A packet from a client through the app router (one too large for the in-place path).
    public func receive(datagram: ByteBuffer, from key: PublicKey) {
        datagram.withUnsafeReadableBytes { receive(packet: $0, from: key) }
    }

    /// A packet from a client, in place (`DatagramSink`, on the transport's event loop):
    /// with TUN offloads, TCP segments are merged (`TCPCoalescer`) until the burst ends.
    public func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from key: PublicKey, sourcePort: UInt16) {
        receive(packet: UnsafeRawBufferPointer(payload), from: key, coalescer: coalescer)
    }

    public func datagramBatchEnded() {
        guard let device = lock.withLock({ tun }), device.offloads else { return }
        coalescer.flush { header, packet in VPNClient.write(header, packet, to: device) }
    }

    /// Checked (IPv4, source = the client's tunnel address) and written to the TUN.
    private func receive(packet: UnsafeRawBufferPointer, from key: PublicKey, coalescer: SharedTCPCoalescer? = nil) {
        let (device, ok): (TunDevice?, Bool) = lock.withLock {
            // By source address (a 4-byte hash), then the key: the same rule as looking the key
            // up first, without hashing 32 bytes per packet.
            // IPv6 only from a session that was leased an IPv6 address.
            guard let source = sessionKey(packet, source: true), let s = byAddress[source], s.key == key,
                  s.address6 != nil || IPv4Packet.isValid(packet)
            else { return (nil, false) }
            s.bytesIn &+= UInt64(packet.count)
            s.packetsIn &+= 1
            return (tun, true)
        }
        guard ok, let device else { return }
        if let coalescer, device.offloads {
            coalescer.add(packet) { header, packet in VPNClient.write(header, packet, to: device) }
        } else {
            _ = try? device.write(packet)
        }
    }

    /// Merges TCP segments from clients for the TUN (the `DatagramSink` calls).
    private let coalescer = SharedTCPCoalescer()

    /// How many packets to a client without a datagram path go the slow way before looking again.
    static let pathRetryPackets: UInt64 = 256

    /// The TUN reader: each packet goes to the client owning its destination address, read
    /// straight into the send arena and sent in batches (`DatagramBatch`) over its transport.
    private func readLoop(_ device: TunDevice, _ waker: EventWaker) {
        // Every client shares this thread: a full stcpr link drops, never stalls the others,
        // unless one client alone gets packets (`SoleClientPacing`): then it waits for room.
        let batch = DatagramBatch(waitsForRoom: false)
        var pacing = SoleClientPacing()
        let reader = TunReader(device: device, mtu: Int(mtu))
        let allocator = ByteBufferAllocator()
        while lock.withLock({ running }) {
            let reads: Int
            let now = MutexCondition.now
            do {
                reads = try reader.drain(into: batch, maxReads: batch.capacity) { packet, inSlot in
                    let n = packet.count
                    let target: (ServerSession, DatagramPath?, UInt64, UInt32)? = lock.withLock {
                        guard let d = sessionKey(packet, source: false), let s = byAddress[d] else { return nil }
                        s.bytesOut &+= UInt64(n)
                        s.packetsOut &+= 1
                        return (s, s.path, s.packetsOut, d)
                    }
                    guard let (session, cached, sent, key) = target else { return }
                    batch.waitsForRoom = pacing.note(key, now: now)
                    var path = cached
                    if path?.isOpen != true, cached != nil || sent % Self.pathRetryPackets == 1 {
                        path = transports.datagramPath(to: session.key, destinationPort: session.clientPort, sourcePort: localPort)
                        lock.withLock { session.path = path }
                    }
                    if let path, inSlot {
                        batch.commit(length: n, path: path)
                    } else {
                        var out = allocator.buffer(capacity: n)
                        out.writeBytes(packet)
                        transports.sendDatagram(to: session.key, destinationPort: session.clientPort, sourcePort: localPort,
                                                payload: out)
                    }
                }
            } catch {
                logger.error("vpn-server: TUN read failed", metadata: ["error": "\(error)"])
                batch.flush()
                return
            }
            batch.flush()
            if reads == 0 {
                do { _ = try device.waitReadable(waker: waker, timeoutMillis: -1) } catch {
                    logger.error("vpn-server: TUN poll failed", metadata: ["error": "\(error)"])
                    return
                }
            }
        }
    }

    /// The session key (the client's IPv4 tunnel address) of a valid IPv4 or IPv6 packet's
    /// source or destination; nil for anything else. Called with `lock` held.
    @inline(__always)
    private func sessionKey(_ packet: UnsafeRawBufferPointer, source: Bool) -> UInt32? {
        if IPv4Packet.isValid(packet) { return source ? IPv4Packet.source(packet) : IPv4Packet.destination(packet) }
        guard case .success(let n) = ipv6, IPv6Packet.isValid(packet) else { return nil }
        return n.key(source ? IPv6Packet.source(packet) : IPv6Packet.destination(packet))
    }

    // MARK: Status

    public struct ClientInfo: Sendable {
        public var key: PublicKey
        public var clientAddress: IPPrefix
        public var serverAddress: IPAddress
        /// The leased IPv6 address, if any.
        public var clientAddress6: IPAddress?
        public var bytesIn: UInt64
        public var bytesOut: UInt64
        public var connectedSince: Int64
    }

    public struct Status: Sendable {
        public var exitInterface: String
        public var tun: String
        public var secure: Bool
        public var whitelist: AppWhitelist
        public var clients: [ClientInfo]
        public var totalSessions: Int
        public var refused: Int
        /// Control streams reset for saying no CLIENT_HELLO within `helloTimeout`.
        public var helloTimeouts: Int
    }

    public var status: Status {
        lock.withLock {
            Status(exitInterface: exitInterface, tun: tun?.name ?? Self.tunName, secure: arguments.secure,
                   whitelist: arguments.whitelist,
                   clients: sessions.values.map {
                       ClientInfo(key: $0.key, clientAddress: $0.lease.clientPrefix, serverAddress: $0.lease.server,
                                  clientAddress6: $0.address6, bytesIn: $0.bytesIn, bytesOut: $0.bytesOut, connectedSince: $0.since)
                   }.sorted { $0.key.hex < $1.key.hex },
                   totalSessions: totalSessions, refused: refused, helloTimeouts: helloTimeouts)
        }
    }
}

/// One connected client. Mutable fields are guarded by the server's lock.
final class ServerSession: @unchecked Sendable {
    // @unchecked Sendable: counters are mutated under VPNServer.lock only; `stream` is used on its event loop.
    let key: PublicKey
    let stream: AppStream
    let lease: VPNLease
    let clientPort: UInt16
    let since: Int64
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0
    var packetsIn: UInt64 = 0
    var packetsOut: UInt64 = 0
    /// The leased IPv6 address (set once by `admit`, under VPNServer.lock).
    var address6: IPAddress?
    /// The datagram path to this client, refreshed by the TUN reader when it closes.
    var path: DatagramPath?

    init(key: PublicKey, stream: AppStream, lease: VPNLease, clientPort: UInt16, since: Int64) {
        self.key = key
        self.stream = stream
        self.lease = lease
        self.clientPort = clientPort
        self.since = since
    }
}

/// Drives one control stream on the server (all callbacks on the stream's event loop).
final class ServerSessionHandler: AppStreamDelegate, @unchecked Sendable {
    // @unchecked Sendable: confined to the stream's event loop (the delegate callbacks and the
    // deadline task run there; `session` is set by `admit`, called from `didReceive`); the
    // delegate callbacks check it (preconditionInEventLoop).
    weak var server: VPNServer?
    let stream: AppStream
    var handshake = VPNServerHandshake()
    var session: ServerSession?
    /// The session (if any) has been ended.
    var ended = false
    /// The server sent its answer (SERVER_OK, FORBIDDEN or ERROR).
    var answered = false
    /// The remote end closed or the stream was reset: nothing left to wait for.
    var closed = false
    /// Resets the stream unless a session started by then (`VPNServer.helloTimeout`).
    private var deadline: Scheduled<Void>?

    init(server: VPNServer, stream: AppStream) {
        self.server = server
        self.stream = stream
    }

    /// The timer holds the handler until it fires or is cancelled (at most `timeout`): a stream
    /// without a session by then (no hello, or refused and never closed) is reset.
    func armDeadline(_ timeout: TimeAmount) {
        deadline = stream.eventLoop.scheduleTask(in: timeout) { [self] in
            deadline = nil
            guard !closed, session == nil else { return }
            closed = true
            finishSession()
            stream.reset(.protocolError)
            server?.deadlinePassed(stream, answered: answered, timeout: timeout)
        }
    }

    private func cancelDeadline() {
        deadline?.cancel()
        deadline = nil
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        stream.eventLoop.preconditionInEventLoop()
        guard !ended, let server else { return }
        do {
            guard let hello = try handshake.receive(data.readableBytesView) else { return }
            let answer = server.admit(self, hello: hello)
            answered = true
            var out = ByteBufferAllocator().buffer(capacity: 64)
            out.writeBytes(answer.encoded())
            // IPV6_LEASE in the same write as SERVER_OK (docs/vpn.md §2.1).
            if case .serverOK(let ok) = answer { out.writeBytes(VPNMessage.ipv6Lease(ok.ipv6).encoded()) }
            stream.write(out)
            if case .serverOK = answer {
                cancelDeadline()
                return
            }
            // Refused: the deadline still resets the stream if the client never closes it.
            stream.finish()
        } catch {
            answered = true
            var out = ByteBufferAllocator().buffer(capacity: 64)
            out.writeBytes(VPNMessage.error("\(error)").encoded())
            stream.write(out)
            stream.finish()
            finishSession()
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        stream.eventLoop.preconditionInEventLoop()
        closed = true
        cancelDeadline()
        stream.finish()
        finishSession()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        stream.eventLoop.preconditionInEventLoop()
        closed = true
        cancelDeadline()
        finishSession()
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    private func finishSession() {
        guard !ended else { return }
        ended = true
        if let session { server?.end(session) }
    }
}

/// A user-facing VPN failure, with its kind for callers that act on it (retry or not, the
/// control socket's error code): never decided from the message text.
public struct VPNError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The server's whitelist refused this client (FORBIDDEN, docs/vpn.md).
        case forbidden
        /// The server answered ERROR: it will not take this client now (pool exhausted, stopping).
        case refused
        /// Anything else: no answer, a lost stream, a failed local setup.
        case failed
    }

    public let kind: Kind
    public let message: String
    public init(_ message: String) { self.init(.failed, message) }
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// Carries a stream to its own event loop.
struct StreamBox: @unchecked Sendable {
    // @unchecked Sendable: the stream is only touched on `stream.eventLoop`.
    let stream: AppStream
    init(_ stream: AppStream) { self.stream = stream }
}
