import Logging
import SkywireSystem

/// Moving routes copied from the old uplink to the new one (docs/architecture.md, "Network
/// changes"): the client's host route to the exit, the gateway's bypass default. Each move is
/// recorded in the state file before it happens (the new route) and unrecorded after (the old
/// one), so that a crash in between still leaves nothing behind.
enum UplinkRouteMove {
    /// The route `old` (a copy of the path to `destination`) should become now: how the kernel
    /// reaches `address` without our own copy (`old` itself) and without the tunnel; nil when it
    /// has no route (offline) or when that route is the host route itself (not ours to copy).
    static func replacement(for old: RouteSpec, reaching address: IPAddress, in routes: [RouteEntry],
                            tunnel: String) -> RouteSpec? {
        let others = routes.filter { !($0.destination == old.destination && $0.table == old.table) }
        guard let path = RouteEntry.bestRoute(to: address, in: others, excludingInterface: tunnel) else { return nil }
        return RouteSpec(destination: old.destination, interface: path.interfaceName, gateway: path.gateway,
                         table: old.table, scope: path.gateway == nil ? RouteSpec.scopeLink : RouteSpec.scopeUniverse)
    }

    /// Replaces `old` by `new`: `new` recorded, `old` removed and unrecorded, `new` added (the
    /// kernel refuses a second route to the same destination and metric with EEXIST, so the old
    /// one goes first; a route already there after that is not ours and not recorded). A crash
    /// at any point leaves a state file that removes whatever of the two is in the kernel.
    /// Throws the first netlink error.
    static func move(from old: RouteSpec, to new: RouteSpec, with nl: RouteNetlink,
                     record: (String, String) throws -> Void, unrecord: (String, String) throws -> Void) throws {
        try record("route", new.stateValue)
        do { try nl.removeRoute(old) } catch let e as NetlinkError where e.notFound {}
        try unrecord("route", old.stateValue)
        do { try nl.addRoute(new) } catch let e as NetlinkError where e.alreadyExists { try unrecord("route", new.stateValue) }
    }

    /// Whether two route specs take the same way out (interface and gateway).
    static func sameWay(_ a: RouteSpec, _ b: RouteSpec) -> Bool {
        a.interface == b.interface && a.gateway == b.gateway
    }
}

extension VPNClient {
    /// After an uplink change, how long reconnect attempts skip the backoff, and their interval.
    static let uplinkRetryWindow: Duration = .seconds(10)
    static let uplinkRetryInterval: Duration = .milliseconds(250)

    /// Moves each host route to the exit (recorded `route` entries) to the path the kernel now
    /// takes without it; the gateway role re-copies its bypass default; for a while a lost
    /// session reconnects every 250 ms instead of backing off. Blocking (netlink): on the
    /// blocking pool. Returns what was done, for the visor's log line.
    public func uplinkChanged() -> [String] {
        var done: [String] = []
        // The session is likely lost with the old uplink's transport: reconnect without backoff
        // while the transport is redialled.
        lock.withLock { fastRetryUntil = .now + Self.uplinkRetryWindow }
        let hostRoutes = lock.withLock { stateEntries.filter { $0.key == "route" }.compactMap { RouteSpec(stateValue: $0.value) } }
        do {
            let nl = try RouteNetlink()
            for old in hostRoutes {
                let ip = old.destination.address
                let routes = try nl.routes(family: ip.family)
                guard let new = UplinkRouteMove.replacement(for: old, reaching: ip, in: routes, tunnel: Self.tunName) else {
                    done.append("no route to the exit \(ip) now; host route kept")
                    continue
                }
                // Still the same way and still in the kernel: nothing to do.
                if UplinkRouteMove.sameWay(old, new),
                   routes.contains(where: { $0.destination == old.destination && $0.interfaceName == old.interface && $0.gateway == old.gateway }) {
                    continue
                }
                try UplinkRouteMove.move(from: old, to: new, with: nl, record: record, unrecord: unrecord)
                done.append("host route to the exit moved: \(old) → \(new)")
            }
        } catch {
            logger.error("vpn-client: cannot move the host route to the exit", metadata: ["error": "\(error)"])
            done.append("moving the host route to the exit failed: \(error)")
        }
        if let gateway { done += gateway.uplinkChanged() }
        if !done.isEmpty { logger.info("vpn-client: uplink changed", metadata: ["done": "\(done.joined(separator: "; "))"]) }
        return done
    }
}

extension VPNGateway {
    /// Re-copies the uplink's default route into the bypass table (recorded `route` entries
    /// there) when it changed. Blocking (netlink).
    func uplinkChanged() -> [String] {
        let copies = lock.withLock { entries.filter { $0.key == "route" }.compactMap { RouteSpec(stateValue: $0.value) } }
        guard !copies.isEmpty else { return [] }
        do {
            let nl = try RouteNetlink()
            guard let now = try bypassUplinkRoute(nl) else { return ["bypass: no default route on the uplink now; kept"] }
            var done: [String] = []
            for old in copies where !UplinkRouteMove.sameWay(old, now) {
                try UplinkRouteMove.move(from: old, to: now, with: nl, record: record, unrecord: unrecord)
                done.append("bypass default moved: \(old) → \(now)")
            }
            return done
        } catch {
            logger.error("gateway: cannot re-copy the bypass default route", metadata: ["error": "\(error)"])
            return ["re-copying the bypass default failed: \(error)"]
        }
    }
}
