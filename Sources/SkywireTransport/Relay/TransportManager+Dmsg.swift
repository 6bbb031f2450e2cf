import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireDmsg
import SkywireIO

extension TransportManager {
    /// Starts a session with each relay server (`transport.dmsg_servers`, else those discovery
    /// lists), redialled forever while the manager runs; transports of type `dmsg` go through
    /// them. Does nothing for an empty list or when already started.
    public func startRelays(_ servers: [DmsgServerAddress]) throws {
        guard !servers.isEmpty else { return }
        let identity = settings.identity
        guard let factory = lock.withLock({ relaySessionFactory }) ?? Self.defaultRelaySessionFactory else {
            throw TransportError(.unreachable, "this build has no dmsg relay client")
        }
        let pool = RelayPool(identity: identity, logger: logger, factory: factory) { [weak self] claimed, pipe, relay, loop in
            self?.acceptRelayStream(pipe, claimed: claimed, relay: relay, on: loop) ?? false
        }
        let started: Bool = lock.withLock {
            guard relayPool == nil, !stopped else { return false }
            relayPool = pool
            return true
        }
        guard started else { return }
        try pool.start(servers: servers) { [weak self] key in
            guard let self else { throw TransportError(.closed, "transport manager gone") }
            return try self.datapathLoop(for: key)
        }
        logger.info("dmsg relay servers", metadata: ["servers": "\(servers.map { "\($0.publicKey.short)@\($0.address)" })"])
    }

    /// How many of the relay servers discovery lists a visor keeps a session with.
    public static let relaysFromDiscovery = DmsgRelayChoice.defaultCount

    /// `relays` ordered for `client` by rendezvous hashing (`DmsgRelayChoice`, docs/dmsg.md): a
    /// visor takes the first `relaysFromDiscovery` that resolve; the clients spread over the
    /// relays, and each keeps its relays when others come and go.
    public static func chooseRelays(for client: PublicKey, among relays: [PublicKey]) -> [PublicKey] {
        DmsgRelayChoice.pick(client: client, relays: relays, count: relays.count)
    }

    /// Relay servers whose session is up: the visor is reachable through them (its discovery
    /// entry lists them).
    public var relaysReachableThrough: [PublicKey] {
        lock.withLock { relayPool }?.reachableThrough ?? []
    }

    /// Opens a relay stream to `entry`'s key and runs the stcpr initiator inside it (PROTOCOL.md
    /// §3 end to end: the relay forwards ciphertext and cannot impersonate the peer).
    func dialDmsg(_ entry: TransportEntry) {
        guard let pool = lock.withLock({ relayPool }) else {
            entry.linkClosed(reason: "no dmsg relay servers")
            return
        }
        guard let identity = identityForDial(entry) else { return }
        let timeout = TimeAmount.seconds(settings.handshakeTimeout)
        let logger = self.logger
        let resolver = self.resolver
        Task { [weak entry] in
            guard let remote = entry?.remote else { return }
            let opened: (pipe: LinkPipe, relay: DmsgServerAddress, loop: EpollEventLoop)
            do {
                opened = try await pool.open(to: remote, peerRelays: await Self.peerRelays(remote, resolver: resolver, logger: logger),
                                             resolveRelay: { try await Self.relayAddress(of: $0, resolver: resolver) })
            } catch {
                entry?.linkClosed(reason: "\(error)")
                return
            }
            let transfer = LoopTransfer(value: opened.pipe)
            let (loop, relay) = (opened.loop, opened.relay)
            loop.execute { [weak entry] in
                guard let entry else { transfer.value.close(); return }
                let hooks = RawStcprLink.Hooks(
                    established: { [weak entry] _, link in
                        entry?.established(link: link, on: loop, remoteAddress: Self.relayAddress(relay.publicKey), relay: relay)
                    },
                    closed: { [weak entry] reason in entry?.linkClosed(reason: reason) })
                do {
                    _ = try RawStcprLink(loop: loop, pipe: transfer.value, identity: identity, expectedRemote: remote,
                                         timestamp: entry.handshakeTimestamp(), handshakeTimeout: timeout,
                                         logger: logger, hooks: hooks)
                } catch {
                    transfer.value.close()
                    entry.linkClosed(reason: "\(error)")
                }
            }
        }
    }

    /// The relays `remote` lists in discovery (none without a resolver or entry: the dial then
    /// tries our own relays only).
    static func peerRelays(_ remote: PublicKey, resolver: PeerResolver?, logger: Logger) async -> [PublicKey] {
        guard let resolver else { return [] }
        do { return try await resolver.resolve(remote).dmsg } catch {
            logger.debug("dmsg: no relays of \(remote.short) from \(resolver.name): \(error)")
            return []
        }
    }

    /// Where relay `key` takes sessions: the first stcpr address of its transport entry (docs/dmsg.md).
    static func relayAddress(of key: PublicKey, resolver: PeerResolver?) async throws -> HostPort {
        guard let resolver else { throw TransportError(.unreachable, "no discovery to look up relay \(key.short)'s address") }
        guard let address = try await resolver.resolve(key).stcpr.first else {
            throw TransportError(.unreachable, "relay \(key.short)'s entry in \(resolver.name) has no stcpr address")
        }
        return address
    }

    /// Makes the sessions with relay servers when no test put a double in `relaySessionFactory`:
    /// the dmsg relay client (`DmsgClientSession`).
    static var defaultRelaySessionFactory: RelaySessionFactory? { DmsgRelaySession.make }

    /// Our static keys for a dial of `entry`; nil, with the entry told why, when they do not convert.
    func identityForDial(_ entry: TransportEntry) -> NoiseStaticIdentity? {
        do {
            return try noiseIdentity()
        } catch {
            entry.linkClosed(reason: "\(error)")
            return nil
        }
    }

    /// `remote_addr` of a dmsg transport in `tp ls`.
    static func relayAddress(_ relay: PublicKey) -> String { "relay \(relay.short)" }

    /// A stream someone opened to us through `relay`: the stcpr responder runs in it with the
    /// listener's admission (mac1 before any DH, the unconfirmed-handshake cap, replayed stamps:
    /// `stcprGate`); the transport exists once the initiator confirms, as the key it proved
    /// (`claimed`, the relay's word, is only logged). On `loop`.
    func acceptRelayStream(_ pipe: LinkPipe, claimed: PublicKey, relay: DmsgServerAddress, on loop: EpollEventLoop) -> Bool {
        guard !lock.withLock({ stopped }) else { return false }
        var entry: TransportEntry?
        let hooks = RawStcprLink.Hooks(
            established: { [weak self] pk, link in
                guard let self else { return nil }
                if pk != claimed {
                    self.logger.info("dmsg: stream through \(relay.publicKey.short) said to come from \(claimed.short) authenticated as \(pk.short)")
                }
                let created = TransportEntry(manager: self, id: self.newID(), remote: pk, type: .dmsg,
                                             host: TransportEntry.relayHost, port: 0, initiator: false, wanted: false)
                guard self.registerInbound(created) else { return nil }
                entry = created
                return created.established(link: link, on: loop, remoteAddress: Self.relayAddress(relay.publicKey), relay: relay)
            },
            closed: { reason in entry?.linkClosed(reason: reason) },
            gate: stcprGate)
        do {
            let deadline = min(TimeAmount.seconds(settings.handshakeTimeout), StcprListener.handshakeDeadline)
            _ = try RawStcprLink(loop: loop, pipe: pipe, identity: noiseIdentity(), expectedRemote: nil,
                                 handshakeTimeout: deadline, logger: logger, hooks: hooks)
            return true
        } catch {
            logger.warning("dmsg: cannot serve an incoming relay stream: \(error)")
            return false
        }
    }
}
