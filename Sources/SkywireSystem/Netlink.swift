import CNetlink
import CNetlinkRoute
#if canImport(Glibc)
import Glibc
#endif

/// A libnl failure: the operation and `nl_geterror`'s text for the (negative) NLE_* code.
public struct NetlinkError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32
    public let message: String

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
        message = String(cString: nl_geterror(code))
    }

    /// NLE_EXIST: the object (address, route) already exists.
    public var alreadyExists: Bool { -abs(code) == -NLE_EXIST }
    /// NLE_OBJ_NOTFOUND / NLE_NODEV: nothing to delete.
    public var notFound: Bool { -abs(code) == -NLE_OBJ_NOTFOUND || -abs(code) == -NLE_NODEV }

    public var description: String { "\(operation): \(message)" }
}

@inline(__always)
func nlCheck(_ operation: @autoclosure () -> String, _ rc: Int32) throws {
    if rc < 0 { throw NetlinkError(operation(), code: rc) }
}

/// A libnl `struct nl_addr`, released with `nl_addr_put` in deinit.
final class NLAddress {
    let raw: OpaquePointer

    /// `nl_addr_build` + `nl_addr_set_prefixlen`.
    init(_ prefix: IPPrefix) throws {
        let family = prefix.family == .v4 ? AF_INET : AF_INET6
        guard let a = prefix.address.bytes.withUnsafeBytes({ nl_addr_build(family, $0.baseAddress, $0.count) }) else {
            throw NetlinkError("nl_addr_build(\(prefix))", code: -NLE_NOMEM)
        }
        raw = a
        nl_addr_set_prefixlen(raw, Int32(prefix.length))
    }

    convenience init(_ address: IPAddress) throws {
        try self.init(IPPrefix(address, address.bitCount)!)
    }

    deinit { nl_addr_put(raw) }

    /// Reads a borrowed `nl_addr` (not retained) into an `IPPrefix`; nil for other families.
    static func prefix(of a: OpaquePointer?, family: Int32) -> IPPrefix? {
        let width = family == AF_INET ? IPAddress.v4Length : (family == AF_INET6 ? IPAddress.v6Length : 0)
        guard width > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: width)
        var length = 0
        if let a {
            let n = Int(nl_addr_get_len(a))
            if n == width, let p = nl_addr_get_binary_addr(a) {
                bytes = Array(UnsafeRawBufferPointer(start: p, count: n))
            }
            length = Int(nl_addr_get_prefixlen(a))
        }
        return IPPrefix(IPAddress(bytes: bytes)!, length)
    }
}

/// Owns one libnl object (`rtnl_link`, `rtnl_addr`, `rtnl_route`, `rtnl_rule`) and drops our
/// reference with its `*_put` function in deinit.
final class NLObject {
    let raw: OpaquePointer
    private let release: (OpaquePointer) -> Void

    /// nil (NLE_NOMEM) when the allocator returned NULL.
    init(_ raw: OpaquePointer?, _ what: String, release: @escaping (OpaquePointer) -> Void) throws {
        guard let raw else { throw NetlinkError(what, code: -NLE_NOMEM) }
        self.raw = raw
        self.release = release
    }

    deinit { release(raw) }

    /// Runs `body` with the pointer while keeping the owner alive.
    func use<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try withExtendedLifetime(self) { try body(raw) }
    }
}

/// A libnl cache (`nl_cache_free` in deinit) and iteration over its objects.
final class NLCache {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
    deinit { nl_cache_free(raw) }

    func forEach(_ body: (OpaquePointer) throws -> Void) rethrows {
        var obj = nl_cache_get_first(raw)
        while let o = obj {
            try body(o)
            obj = nl_cache_get_next(o)
        }
    }
}

/// One interface address (`ip addr`).
public struct InterfaceAddress: Sendable, Hashable {
    public var interfaceIndex: Int32
    public var interfaceName: String
    public var prefix: IPPrefix

    public init(interfaceIndex: Int32, interfaceName: String, prefix: IPPrefix) {
        self.interfaceIndex = interfaceIndex
        self.interfaceName = interfaceName
        self.prefix = prefix
    }
}

/// One route of the kernel's table (`ip route`), first next hop only.
public struct RouteEntry: Sendable, Hashable {
    public var destination: IPPrefix
    public var gateway: IPAddress?
    public var interfaceIndex: Int32
    public var interfaceName: String
    public var table: UInt32
    public var metric: UInt32
    /// RTN_* route type (1 = unicast).
    public var type: UInt8

    public init(destination: IPPrefix, gateway: IPAddress?, interfaceIndex: Int32, interfaceName: String,
                table: UInt32, metric: UInt32, type: UInt8) {
        self.destination = destination
        self.gateway = gateway
        self.interfaceIndex = interfaceIndex
        self.interfaceName = interfaceName
        self.table = table
        self.metric = metric
        self.type = type
    }
}

/// A route to add or remove.
public struct RouteSpec: Sendable, Hashable, CustomStringConvertible {
    public var destination: IPPrefix
    public var interface: String?
    public var gateway: IPAddress?
    public var table: UInt32
    public var metric: UInt32?
    /// RT_SCOPE_*; nil lets libnl pick (`rtnl_route_guess_scope`: link without a gateway,
    /// universe with one).
    public var scope: UInt8?

    /// RT_TABLE_MAIN.
    public static let mainTable: UInt32 = 254
    /// RT_SCOPE_UNIVERSE and RT_SCOPE_LINK.
    public static let scopeUniverse: UInt8 = 0
    public static let scopeLink: UInt8 = 253

    public init(destination: IPPrefix, interface: String? = nil, gateway: IPAddress? = nil,
                table: UInt32 = RouteSpec.mainTable, metric: UInt32? = nil, scope: UInt8? = nil) {
        self.destination = destination
        self.interface = interface
        self.gateway = gateway
        self.table = table
        self.metric = metric
        self.scope = scope
    }

    public var description: String {
        var s = "\(destination)"
        if let gateway { s += " via \(gateway)" }
        if let interface { s += " dev \(interface)" }
        if table != Self.mainTable { s += " table \(table)" }
        if let metric { s += " metric \(metric)" }
        if let scope { s += " scope \(scope == Self.scopeLink ? "link" : scope == Self.scopeUniverse ? "global" : "\(scope)")" }
        return s
    }
}

/// A policy routing rule (`ip rule`): traffic matching `fwmark` (all traffic when nil) looks up `table`.
public struct RuleSpec: Sendable, Hashable {
    public var family: IPAddress.Family
    public var priority: UInt32
    public var table: UInt32
    public var fwmark: UInt32?

    public init(family: IPAddress.Family, priority: UInt32, table: UInt32, fwmark: UInt32? = nil) {
        self.family = family
        self.priority = priority
        self.table = table
        self.fwmark = fwmark
    }
}

/// An rtnetlink socket through libnl-route-3 (`nl_socket_alloc` + `nl_connect(NETLINK_ROUTE)`,
/// `nl_socket_free` in deinit). Not thread-safe: one owner uses it at a time.
public final class RouteNetlink {
    let socket: OpaquePointer

    static let rtprotStatic: UInt8 = 4       // RTPROT_STATIC
    public static let rtnUnicast: UInt8 = 1  // RTN_UNICAST
    static let ifaUFlagsNoPrefixRoute: UInt32 = 0x200  // IFA_F_NOPREFIXROUTE
    static let frActToTable: UInt8 = 1       // FR_ACT_TO_TBL

    public init() throws {
        guard let s = nl_socket_alloc() else { throw NetlinkError("nl_socket_alloc", code: -NLE_NOMEM) }
        socket = s
        let rc = nl_connect(socket, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(socket)
            throw NetlinkError("nl_connect(NETLINK_ROUTE)", code: rc)
        }
    }

    deinit { nl_socket_free(socket) }

    // MARK: Links

    /// The interface index of `name` (`rtnl_link_name2i` without a cache: if_nametoindex).
    public func interfaceIndex(_ name: String) throws -> Int32 {
        let i = if_nametoindex(name)
        guard i > 0 else { throw NetlinkError("interface \(name)", code: -NLE_NODEV) }
        return Int32(i)
    }

    public static func interfaceName(_ index: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        guard if_indextoname(UInt32(index), &buf) != nil else { return "if\(index)" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sets a link up or down and/or its MTU (`rtnl_link_get_kernel` + `rtnl_link_change`).
    public func setLink(_ name: String, up: Bool? = nil, mtu: UInt32? = nil) throws {
        var current: OpaquePointer?
        try nlCheck("rtnl_link_get_kernel(\(name))", rtnl_link_get_kernel(socket, 0, name, &current))
        let orig = try NLObject(current, "rtnl_link_get_kernel(\(name))", release: rtnl_link_put)
        let change = try NLObject(rtnl_link_alloc(), "rtnl_link_alloc", release: rtnl_link_put)
        try change.use { c in
            if let up {
                if up { rtnl_link_set_flags(c, UInt32(IFF_UP)) } else { rtnl_link_unset_flags(c, UInt32(IFF_UP)) }
            }
            if let mtu { rtnl_link_set_mtu(c, mtu) }
            try nlCheck("rtnl_link_change(\(name))", orig.use { rtnl_link_change(socket, $0, c, 0) })
        }
    }

    /// Whether an interface exists.
    public func linkExists(_ name: String) -> Bool { if_nametoindex(name) > 0 }

    /// Deletes a link by name (`rtnl_link_delete`); a missing link is not an error.
    public func deleteLink(_ name: String) throws {
        guard linkExists(name) else { return }
        let link = try NLObject(rtnl_link_alloc(), "rtnl_link_alloc", release: rtnl_link_put)
        let rc = link.use { l in
            rtnl_link_set_name(l, name)
            return rtnl_link_delete(socket, l)
        }
        if rc < 0 {
            let e = NetlinkError("rtnl_link_delete(\(name))", code: rc)
            if !e.notFound { throw e }
        }
    }

    // MARK: Addresses

    private func makeAddress(_ prefix: IPPrefix, interface: String) throws -> NLObject {
        let index = try interfaceIndex(interface)
        let addr = try NLObject(rtnl_addr_alloc(), "rtnl_addr_alloc", release: rtnl_addr_put)
        let local = try NLAddress(prefix)
        try addr.use { a in
            rtnl_addr_set_ifindex(a, index)
            // rtnl_addr_set_local takes its own reference to `local`.
            try nlCheck("rtnl_addr_set_local(\(prefix))", withExtendedLifetime(local) { rtnl_addr_set_local(a, local.raw) })
            rtnl_addr_set_prefixlen(a, Int32(prefix.length))
        }
        return addr
    }

    /// `ip addr add PREFIX dev IFACE` (`rtnl_addr_add`); IPv4 or IPv6.
    public func addAddress(_ prefix: IPPrefix, interface: String) throws {
        let addr = try makeAddress(prefix, interface: interface)
        try nlCheck("rtnl_addr_add(\(prefix) dev \(interface))", addr.use { rtnl_addr_add(socket, $0, 0) })
    }

    /// `ip addr del PREFIX dev IFACE` (`rtnl_addr_delete`).
    public func removeAddress(_ prefix: IPPrefix, interface: String) throws {
        let addr = try makeAddress(prefix, interface: interface)
        try nlCheck("rtnl_addr_delete(\(prefix) dev \(interface))", addr.use { rtnl_addr_delete(socket, $0, 0) })
    }

    /// Every address of every interface (`rtnl_addr_alloc_cache`).
    public func addresses() throws -> [InterfaceAddress] {
        var c: OpaquePointer?
        try nlCheck("rtnl_addr_alloc_cache", rtnl_addr_alloc_cache(socket, &c))
        guard let raw = c else { return [] }
        let cache = NLCache(raw)
        var out: [InterfaceAddress] = []
        cache.forEach { obj in
            let family = rtnl_addr_get_family(obj)
            guard var prefix = NLAddress.prefix(of: rtnl_addr_get_local(obj), family: family) else { return }
            prefix = IPPrefix(prefix.address, Int(rtnl_addr_get_prefixlen(obj))) ?? prefix
            let index = rtnl_addr_get_ifindex(obj)
            out.append(InterfaceAddress(interfaceIndex: index, interfaceName: Self.interfaceName(index), prefix: prefix))
        }
        return out
    }

    // MARK: Routes

    private func makeRoute(_ spec: RouteSpec) throws -> NLObject {
        let route = try NLObject(rtnl_route_alloc(), "rtnl_route_alloc", release: rtnl_route_put)
        let family = spec.destination.family == .v4 ? AF_INET : AF_INET6
        let dst = try NLAddress(spec.destination.network)
        let index = try spec.interface.map { try interfaceIndex($0) }
        let gateway = try spec.gateway.map { try NLAddress($0) }
        try route.use { r in
            rtnl_route_set_family(r, UInt8(family))
            rtnl_route_set_table(r, spec.table)
            rtnl_route_set_protocol(r, Self.rtprotStatic)
            rtnl_route_set_type(r, Self.rtnUnicast)
            if let metric = spec.metric { rtnl_route_set_priority(r, metric) }
            if let scope = spec.scope { rtnl_route_set_scope(r, scope) }
            try nlCheck("rtnl_route_set_dst(\(spec.destination))", withExtendedLifetime(dst) { rtnl_route_set_dst(r, dst.raw) })
            if index != nil || gateway != nil {
                guard let nh = rtnl_route_nh_alloc() else { throw NetlinkError("rtnl_route_nh_alloc", code: -NLE_NOMEM) }
                if let index { rtnl_route_nh_set_ifindex(nh, index) }
                if let gateway {
                    withExtendedLifetime(gateway) { rtnl_route_nh_set_gateway(nh, gateway.raw) }  // takes its own reference
                }
                rtnl_route_add_nexthop(r, nh)  // the route owns (and frees) the next hop from here on
            }
        }
        return route
    }

    /// `ip route add SPEC` (`rtnl_route_add` with NLM_F_EXCL: an existing route is an error).
    public func addRoute(_ spec: RouteSpec) throws {
        let route = try makeRoute(spec)
        try nlCheck("rtnl_route_add(\(spec))", route.use { rtnl_route_add(socket, $0, NLM_F_EXCL) })
    }

    /// `ip route del SPEC` (`rtnl_route_delete`): matches the destination, table, protocol
    /// (static), next hop and, when given, metric and scope.
    public func removeRoute(_ spec: RouteSpec) throws {
        let route = try makeRoute(spec)
        try nlCheck("rtnl_route_delete(\(spec))", route.use { rtnl_route_delete(socket, $0, 0) })
    }

    /// The routes of one family, every table (`rtnl_route_alloc_cache`).
    public func routes(family: IPAddress.Family) throws -> [RouteEntry] {
        let af = family == .v4 ? AF_INET : AF_INET6
        var c: OpaquePointer?
        try nlCheck("rtnl_route_alloc_cache", rtnl_route_alloc_cache(socket, af, 0, &c))
        guard let raw = c else { return [] }
        let cache = NLCache(raw)
        var out: [RouteEntry] = []
        cache.forEach { r in
            guard let dst = NLAddress.prefix(of: rtnl_route_get_dst(r), family: af) else { return }
            var gateway: IPAddress?
            var index: Int32 = 0
            if rtnl_route_get_nnexthops(r) > 0, let nh = rtnl_route_nexthop_n(r, 0) {
                index = rtnl_route_nh_get_ifindex(nh)
                if let g = rtnl_route_nh_get_gateway(nh), let p = NLAddress.prefix(of: g, family: af) {
                    gateway = p.address
                }
            }
            out.append(RouteEntry(destination: dst, gateway: gateway, interfaceIndex: index,
                                  interfaceName: index > 0 ? Self.interfaceName(index) : "",
                                  table: rtnl_route_get_table(r), metric: rtnl_route_get_priority(r),
                                  type: rtnl_route_get_type(r)))
        }
        return out
    }

    /// Default routes (`0.0.0.0/0` or `::/0`, unicast) of the main table.
    public func defaultRoutes(family: IPAddress.Family = .v4) throws -> [RouteEntry] {
        try routes(family: family).filter {
            $0.destination.length == 0 && $0.table == RouteSpec.mainTable && $0.type == Self.rtnUnicast
        }
    }

    // MARK: Rules

    private func makeRule(_ spec: RuleSpec) throws -> NLObject {
        let rule = try NLObject(rtnl_rule_alloc(), "rtnl_rule_alloc", release: rtnl_rule_put)
        rule.use { r in
            rtnl_rule_set_family(r, spec.family == .v4 ? AF_INET : AF_INET6)
            rtnl_rule_set_prio(r, spec.priority)
            rtnl_rule_set_table(r, spec.table)
            rtnl_rule_set_action(r, Self.frActToTable)
            if let mark = spec.fwmark {
                rtnl_rule_set_mark(r, mark)
                rtnl_rule_set_mask(r, UInt32.max)
            }
        }
        return rule
    }

    /// `ip rule add fwmark M lookup T priority P` (`rtnl_rule_add`).
    public func addRule(_ spec: RuleSpec) throws {
        let rule = try makeRule(spec)
        try nlCheck("rtnl_rule_add(priority \(spec.priority))", rule.use { rtnl_rule_add(socket, $0, NLM_F_EXCL) })
    }

    /// `ip rule del ...` (`rtnl_rule_delete`).
    public func removeRule(_ spec: RuleSpec) throws {
        let rule = try makeRule(spec)
        try nlCheck("rtnl_rule_delete(priority \(spec.priority))", rule.use { rtnl_rule_delete(socket, $0, 0) })
    }
}

extension RouteEntry {
    /// The most specific main-table unicast route containing `address` (lowest metric on a
    /// tie), skipping routes on `excludingInterface`: how the kernel would reach it without us.
    public static func bestRoute(to address: IPAddress, in routes: [RouteEntry],
                                 excludingInterface: String? = nil) -> RouteEntry? {
        routes.filter {
            $0.table == RouteSpec.mainTable && $0.type == RouteNetlink.rtnUnicast
                && $0.destination.contains(address) && $0.interfaceName != excludingInterface
        }.min { a, b in
            a.destination.length != b.destination.length ? a.destination.length > b.destination.length : a.metric < b.metric
        }
    }
}
