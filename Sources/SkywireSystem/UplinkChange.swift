/// What a change of the uplink (`UplinkState.Uplink` before → after) asks the visor to do:
/// pure, no I/O (docs/architecture.md, "Network changes"). Nil from `between` when nothing the
/// transports depend on changed.
public struct UplinkChange: Sendable, Equatable, CustomStringConvertible {
    /// What the visor does about a change.
    public enum Action: String, Sendable, CaseIterable, Comparable {
        /// Close and redial at once the transports whose local address is in `vanished`.
        case redialVanished = "redial-vanished"
        /// Probe every transport now (a PING; closed and redialled when nothing answers): the
        /// path changed under them (sudph peers learn the new address from the first packet).
        case probeTransports = "probe"
        /// BIND at the rendezvous again and PUT the discovery entry now (re-punch, new address).
        case refreshDiscovery = "refresh-discovery"
        /// Move host routes copied from the old default route (the VPN client's route to the
        /// exit, the gateway's bypass default) to the new one.
        case moveRoutes = "move-routes"

        public static func < (a: Action, b: Action) -> Bool {
            (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
        }
    }

    public var before: UplinkState.Uplink
    public var after: UplinkState.Uplink
    /// Addresses on the uplink before that are on it no longer (a transport bound to one is dead).
    public var vanished: [IPAddress]
    /// Addresses on the uplink now that were not before.
    public var appeared: [IPAddress]
    /// The default routes' ways out (gateway, interface) changed.
    public var routesChanged: Bool
    /// An uplink interface lost or regained carrier.
    public var carrierChanged: Bool
    public var actions: [Action]

    /// fe80::/10 and 169.254.0.0/16 (NonPublicRange's link-local kind).
    static let linkLocal = (NonPublicRange.ipv4Ranges + NonPublicRange.ipv6Ranges).filter { $0.kind == .linkLocal }.map(\.prefix)

    /// The usable uplink addresses: those of default-route interfaces with carrier, link-local
    /// ones aside (they never carry a transport to the internet and come and go with IPv6 DAD).
    public static func usableAddresses(_ u: UplinkState.Uplink) -> Set<IPAddress> {
        var out = Set<IPAddress>()
        for (index, prefixes) in u.addresses where u.carrier[index] == true {
            for p in prefixes where !linkLocal.contains(where: { $0.contains(p.address) }) { out.insert(p.address) }
        }
        return out
    }

    /// The decision: nil when `before` and `after` agree on routes, carrier and addresses.
    /// Routes or carrier changed → probe, refresh discovery, move routes; an address left the
    /// uplink → also redial the transports bound to it; only new addresses → refresh discovery
    /// (and probe: the kernel may now pick the new source address).
    public static func between(_ before: UplinkState.Uplink, _ after: UplinkState.Uplink) -> UplinkChange? {
        guard before != after else { return nil }
        let old = usableAddresses(before), new = usableAddresses(after)
        let vanished = old.subtracting(new).sorted(), appeared = new.subtracting(old).sorted()
        let routesChanged = before.routes != after.routes
        let carrierChanged = Set(before.carrier.filter(\.value).keys) != Set(after.carrier.filter(\.value).keys)
        var actions: Set<Action> = []
        if !vanished.isEmpty { actions.insert(.redialVanished) }
        if routesChanged || carrierChanged || !vanished.isEmpty || !appeared.isEmpty {
            actions.formUnion([.probeTransports, .refreshDiscovery])
        }
        if routesChanged || carrierChanged { actions.insert(.moveRoutes) }
        guard !actions.isEmpty else { return nil }
        return UplinkChange(before: before, after: after, vanished: vanished, appeared: appeared,
                            routesChanged: routesChanged, carrierChanged: carrierChanged, actions: actions.sorted())
    }

    /// Whether the change asks for `action`.
    public func asks(_ action: Action) -> Bool { actions.contains(action) }

    /// No usable way out now (no default route with carrier): probing and redialling would
    /// only fail; the next change that brings one back does it.
    public var isOffline: Bool { !after.routes.contains { after.carrier[$0.interface] == true } }

    public var description: String {
        var parts = ["uplink \(before) → \(after)"]
        if !vanished.isEmpty { parts.append("gone: \(vanished.map(\.description).joined(separator: ","))") }
        if !appeared.isEmpty { parts.append("new: \(appeared.map(\.description).joined(separator: ","))") }
        return parts.joined(separator: "; ")
    }
}

/// The uplink the visor last acted on, and the changes to report as the kernel's state settles
/// (pure; `UplinkWatcher` feeds it). While there is no usable uplink the baseline stays the last
/// usable one, so that the change bringing one back is measured against it (the addresses that
/// vanished meanwhile are still named, and the transports bound to them redialled); coming back
/// to the same uplink after an outage still probes and refreshes (transports may have died).
public struct UplinkTracker: Sendable {
    public private(set) var baseline: UplinkState.Uplink
    public private(set) var offline = false

    public init(_ initial: UplinkState.Uplink) { baseline = initial }

    /// The change from the baseline to `now`, if any; moves the baseline unless `now` is offline.
    public mutating func settle(_ now: UplinkState.Uplink) -> UplinkChange? {
        var change = UplinkChange.between(baseline, now)
        if change == nil, offline, now == baseline {
            change = UplinkChange(before: baseline, after: now, vanished: [], appeared: [], routesChanged: false,
                                  carrierChanged: false, actions: [.probeTransports, .refreshDiscovery])
        }
        if change?.isOffline == true {
            offline = true
        } else {
            baseline = now
            offline = false
        }
        return change
    }
}
