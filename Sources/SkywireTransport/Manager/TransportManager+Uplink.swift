import NIOCore
import SkywireSystem

extension TransportManager {
    /// How long a transport probed after an uplink change may stay silent before it is closed
    /// and redialled (a sudph peer answers within one round trip once it learns our new address).
    public static let uplinkProbeTimeout = TimeAmount.seconds(3)

    /// What `uplinkChanged` did, for the visor's one info line per change.
    public struct UplinkReaction: Sendable, Equatable {
        /// Transports closed and redialled at once: their local address left the uplink, or
        /// they were waiting for a backoff redial.
        public var redialled = 0
        /// Transports probed (closed and redialled if silent for `uplinkProbeTimeout`).
        public var probed = 0
        /// The rendezvous BIND was asked to go out again (when one is bound).
        public var rebind = false
    }

    /// Reacts to a change of the uplink (docs/architecture.md, "Network changes"), whatever
    /// the transport type (and the dmsg relay sessions, `RelayPool.uplinkChanged`): transports bound to an address in `change.vanished` are closed and
    /// redialled without backoff, the others probed at once, those waiting in backoff redialled
    /// now; the sudph socket BINDs again at the rendezvous (re-punch: the service learns the new
    /// address). Nothing when the change leaves no usable uplink (the next change does it).
    public func uplinkChanged(_ change: UplinkChange) -> UplinkReaction {
        var reaction = UplinkReaction()
        guard !change.isOffline else { return reaction }
        let vanished = Set(change.vanished)
        let probe = change.asks(.probeTransports)
        let (all, endpoint, pool) = lock.withLock { (Array(entries.values), sudph, relayPool) }
        if let pool {
            // dmsg relay sessions follow the uplink like transports (their TCP local address).
            let relays = pool.uplinkChanged(vanished: vanished, probe: probe, timeout: Self.uplinkProbeTimeout)
            reaction.redialled += relays.redialled
            reaction.probed += relays.probed
        }
        for entry in all {
            let info = entry.info
            if info.state == .backoff || info.state == .up {
                entry.uplinkChanged(vanished: vanished, probe: probe, probeTimeout: Self.uplinkProbeTimeout)
                if info.state == .backoff { reaction.redialled += 1 } else if probe { reaction.probed += 1 }
            }
        }
        if let endpoint {
            if let bound = endpoint.localAddress?.ipAddress.flatMap(IPAddress.init), vanished.contains(bound) {
                logger.warning("sudph: the socket is bound to \(bound), which left the uplink; bind transport.listen to 0.0.0.0 to follow network changes")
            }
            if change.asks(.refreshDiscovery) {
                endpoint.rebindRendezvous()
                reaction.rebind = true
            }
        }
        return reaction
    }
}
