/// The host's uplink as the kernel's events describe it, kept from `NetworkEvent`s (a dump, then
/// the monitor's changes): pure state, no I/O. `uplink` is what a visor's transports depend on:
/// the default routes of the main table (gateway and interface), whether those interfaces are up
/// with carrier, and their addresses. A change of it (`apply` returning true) is what should make
/// the visor rebind, re-punch, redial and refresh its discovery entry; changes elsewhere (a TUN
/// coming up, an address on another LAN) are not.
public struct UplinkState: Sendable, Equatable {
    public struct Link: Sendable, Equatable {
        public var name: String
        public var up: Bool
        public var running: Bool
    }

    /// One default route's way out.
    public struct Route: Sendable, Hashable, Comparable, CustomStringConvertible {
        public var gateway: IPAddress?
        public var interface: Int32
        public init(gateway: IPAddress?, interface: Int32) {
            self.gateway = gateway
            self.interface = interface
        }
        public static func < (a: Route, b: Route) -> Bool {
            if a.interface != b.interface { return a.interface < b.interface }
            switch (a.gateway, b.gateway) {
            case (nil, nil), (_?, nil): return false
            case (nil, _?): return true
            case (let x?, let y?): return x < y
            }
        }
        public var description: String { "\(gateway.map { "via \($0) " } ?? "")dev \(interface)" }
    }

    /// What the transports depend on; compared before and after each event.
    public struct Uplink: Sendable, Equatable, CustomStringConvertible {
        public var routes: [Route] = []
        /// Per route interface: up with carrier.
        public var carrier: [Int32: Bool] = [:]
        /// Per route interface: its addresses, sorted.
        public var addresses: [Int32: [IPPrefix]] = [:]

        public init() {}

        public var description: String {
            guard !routes.isEmpty else { return "no default route" }
            return routes.map { r in
                let addrs = addresses[r.interface, default: []].map(\.description).joined(separator: ",")
                return "\(r)\(carrier[r.interface] == true ? "" : " (no carrier)") [\(addrs)]"
            }.joined(separator: "; ")
        }
    }

    public private(set) var links: [Int32: Link] = [:]
    public private(set) var addresses: [Int32: Set<IPPrefix>] = [:]
    public private(set) var defaultRoutes: Set<Route> = []

    /// Limits, so that a flood of events (thousands of links or addresses) costs bounded memory.
    public static let maxLinks = 4096
    public static let maxAddressesPerLink = 256
    public static let maxDefaultRoutes = 64

    public init() {}

    /// The uplink now.
    public var uplink: Uplink {
        var u = Uplink()
        u.routes = defaultRoutes.sorted()
        for index in Set(u.routes.map(\.interface)) {
            u.carrier[index] = links[index].map { $0.up && $0.running } ?? false
            u.addresses[index] = addresses[index, default: []].sorted { ($0.address, $0.length) < ($1.address, $1.length) }
        }
        return u
    }

    /// Applies one event; true when the uplink changed.
    @discardableResult
    public mutating func apply(_ event: NetworkEvent) -> Bool {
        let before = uplink
        update(event)
        return uplink != before
    }

    /// Applies several events (a dump); true when the uplink changed. The uplink is compared
    /// once, not per event.
    @discardableResult
    public mutating func apply(_ events: [NetworkEvent]) -> Bool {
        let before = uplink
        for e in events { update(e) }
        return uplink != before
    }

    private mutating func update(_ event: NetworkEvent) {
        switch event {
        case .link(let index, let name, let up, let running):
            if links[index] != nil || links.count < Self.maxLinks {
                links[index] = Link(name: name, up: up, running: running)
            }
            // Taking a link down flushes its IPv4 routes without an RTM_DELROUTE for each
            // (fib_sync_down_dev): forget its default routes too, as the kernel did.
            if !up { defaultRoutes = defaultRoutes.filter { $0.interface != index } }
        case .linkRemoved(let index, _):
            links[index] = nil
            addresses[index] = nil
            defaultRoutes = defaultRoutes.filter { $0.interface != index }
        case .address(let added, let index, let prefix):
            if added {
                if addresses[index, default: []].count < Self.maxAddressesPerLink { addresses[index, default: []].insert(prefix) }
            } else {
                addresses[index]?.remove(prefix)
            }
        case .route(let added, let destination, let gateway, let interface, let table):
            guard destination.length == 0, table == NetworkEvent.mainTable else { break }
            let route = Route(gateway: gateway, interface: interface)
            if !added { defaultRoutes.remove(route) } else if defaultRoutes.count < Self.maxDefaultRoutes { defaultRoutes.insert(route) }
        }
    }
}
