import CMnl
#if canImport(Glibc)
import Glibc
#endif

/// One change the kernel reported on a NETLINK_ROUTE socket (rtnetlink(7)): an interface's state,
/// one of its addresses, or a route. What the visor needs to follow a change of uplink (Wi-Fi to
/// LTE, a new DHCP lease, a cable replugged); other message types are skipped.
public enum NetworkEvent: Sendable, Hashable, CustomStringConvertible {
    /// RTM_NEWLINK: `up` is IFF_UP (administratively up), `running` IFF_RUNNING (carrier).
    case link(index: Int32, name: String, up: Bool, running: Bool)
    /// RTM_DELLINK.
    case linkRemoved(index: Int32, name: String)
    /// RTM_NEWADDR / RTM_DELADDR (`added` false): the address with its prefix length.
    case address(added: Bool, index: Int32, prefix: IPPrefix)
    /// RTM_NEWROUTE / RTM_DELROUTE of a unicast route (`added` false). `gateway` is RTA_GATEWAY,
    /// `interface` RTA_OIF (0 when absent), `table` RTA_TABLE or rtm_table.
    case route(added: Bool, destination: IPPrefix, gateway: IPAddress?, interface: Int32, table: UInt32)

    public var description: String {
        switch self {
        case .link(let i, let n, let up, let running): "link \(n) (\(i)) \(up ? "up" : "down")\(running ? ", carrier" : "")"
        case .linkRemoved(let i, let n): "link \(n) (\(i)) removed"
        case .address(let added, let i, let p): "address \(p) \(added ? "added to" : "removed from") interface \(i)"
        case .route(let added, let d, let gw, let oif, let table):
            "route \(d)\(gw.map { " via \($0)" } ?? "") dev \(oif) table \(table) \(added ? "added" : "removed")"
        }
    }

    /// Route table numbers (rtnetlink(7) `rtm_table`): the one the default route lives in.
    public static let mainTable = UInt32(RT_TABLE_MAIN.rawValue)

    /// The events in one datagram read from a NETLINK_ROUTE socket: every message libmnl's
    /// `mnl_nlmsg_ok`/`mnl_nlmsg_next` walk finds, each decoded by its type. A truncated or
    /// malformed message ends the walk (what came before it is kept); unknown types are skipped.
    public static func parse(_ datagram: UnsafeRawBufferPointer) -> [NetworkEvent] {
        guard let base = datagram.baseAddress, datagram.count > 0 else { return [] }
        var events: [NetworkEvent] = []
        var left = Int32(clamping: datagram.count)
        var message: UnsafePointer<nlmsghdr>? = base.assumingMemoryBound(to: nlmsghdr.self)
        while let nlh = message, fits(nlh, left) {
            if let event = decode(nlh) { events.append(event) }
            message = UnsafePointer(mnl_nlmsg_next(nlh, &left))
        }
        return events
    }

    /// `mnl_nlmsg_ok`, and the length checked without its cast to int: a length field of 2^31 or
    /// more is negative there and would pass (libmnl 1.0.4).
    static func fits(_ nlh: UnsafePointer<nlmsghdr>, _ left: Int32) -> Bool {
        left >= Int32(MemoryLayout<nlmsghdr>.size) && Int(nlh.pointee.nlmsg_len) <= Int(left) && mnl_nlmsg_ok(nlh, left)
    }

    /// [UInt8] form of `parse` (tests, fuzzing).
    public static func parse(_ bytes: [UInt8]) -> [NetworkEvent] {
        guard !bytes.isEmpty else { return [] }
        return bytes.withUnsafeBytes { raw in
            // The walk reads headers in place: copy into memory aligned for nlmsghdr.
            let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count, alignment: MemoryLayout<nlmsghdr>.alignment)
            defer { aligned.deallocate() }
            aligned.copyMemory(from: raw)
            return parse(UnsafeRawBufferPointer(aligned))
        }
    }

    private static func decode(_ nlh: UnsafePointer<nlmsghdr>) -> NetworkEvent? {
        let type = Int(nlh.pointee.nlmsg_type)
        switch type {
        case Int(RTM_NEWLINK), Int(RTM_DELLINK):
            guard let info: ifinfomsg = header(nlh) else { return nil }
            var name = ""
            forEachAttribute(nlh, after: MemoryLayout<ifinfomsg>.size) { type, attr in
                if type == IFLA_IFNAME, let s = string(attr) { name = s }
            }
            if type == Int(RTM_DELLINK) { return .linkRemoved(index: info.ifi_index, name: name) }
            return .link(index: info.ifi_index, name: name, up: info.ifi_flags & UInt32(IFF_UP) != 0,
                         running: info.ifi_flags & UInt32(IFF_RUNNING) != 0)
        case Int(RTM_NEWADDR), Int(RTM_DELADDR):
            guard let ifa: ifaddrmsg = header(nlh) else { return nil }
            var local: IPAddress?, address: IPAddress?
            forEachAttribute(nlh, after: MemoryLayout<ifaddrmsg>.size) { type, attr in
                // IFA_LOCAL is the interface's own address on point-to-point links, where IFA_ADDRESS is the peer's.
                if type == IFA_LOCAL { local = ipAddress(attr) }
                if type == IFA_ADDRESS { address = ipAddress(attr) }
            }
            guard let a = local ?? address, let prefix = IPPrefix(a, Int(ifa.ifa_prefixlen)) else { return nil }
            return .address(added: type == Int(RTM_NEWADDR), index: Int32(bitPattern: ifa.ifa_index), prefix: prefix)
        case Int(RTM_NEWROUTE), Int(RTM_DELROUTE):
            guard let rtm: rtmsg = header(nlh), rtm.rtm_type == UInt8(RTN_UNICAST) else { return nil }
            let family: IPAddress.Family = rtm.rtm_family == UInt8(AF_INET6) ? .v6 : .v4
            guard rtm.rtm_family == UInt8(AF_INET) || rtm.rtm_family == UInt8(AF_INET6) else { return nil }
            var dst: IPAddress?, gateway: IPAddress?, oif: Int32 = 0, table = UInt32(rtm.rtm_table)
            forEachAttribute(nlh, after: MemoryLayout<rtmsg>.size) { type, attr in
                switch type {
                case Int(RTA_DST.rawValue): dst = ipAddress(attr)
                case Int(RTA_GATEWAY.rawValue): gateway = ipAddress(attr)
                case Int(RTA_OIF.rawValue) where mnl_attr_get_payload_len(attr) == 4: oif = Int32(bitPattern: mnl_attr_get_u32(attr))
                case Int(RTA_TABLE.rawValue) where mnl_attr_get_payload_len(attr) == 4: table = mnl_attr_get_u32(attr)
                default: break
                }
            }
            let any = family == .v4 ? IPAddress(v4: 0) : IPAddress(bytes: [UInt8](repeating: 0, count: 16))
            guard let destination = IPPrefix(dst ?? any ?? IPAddress(v4: 0), Int(rtm.rtm_dst_len)) else { return nil }
            return .route(added: type == Int(RTM_NEWROUTE), destination: destination, gateway: gateway, interface: oif, table: table)
        default:
            return nil
        }
    }

    /// The fixed header after the netlink header, when the message is long enough for it.
    private static func header<T>(_ nlh: UnsafePointer<nlmsghdr>) -> T? {
        guard Int(nlh.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<T>.size,  // MNL_NLMSG_HDRLEN: 16, already aligned
              let payload = mnl_nlmsg_get_payload(nlh) else { return nil }
        return UnsafeRawPointer(payload).loadUnaligned(as: T.self)
    }

    /// Calls `body` with each attribute after the fixed header of `headerSize` bytes, as
    /// `mnl_attr_for_each` does (`mnl_attr_ok` bounds each one by the message's length).
    private static func forEachAttribute(_ nlh: UnsafePointer<nlmsghdr>, after headerSize: Int,
                                         _ body: (Int, UnsafePointer<nlattr>) -> Void) {
        guard let first = mnl_nlmsg_get_payload_offset(nlh, headerSize) else { return }
        let end = UnsafeRawPointer(nlh) + Int(nlh.pointee.nlmsg_len)
        var attr: UnsafePointer<nlattr>? = UnsafePointer(first.assumingMemoryBound(to: nlattr.self))
        while let a = attr {
            let left = end - UnsafeRawPointer(a)
            guard left > 0, mnl_attr_ok(a, Int32(clamping: left)) else { return }
            body(Int(mnl_attr_get_type(a)), a)
            attr = UnsafePointer(mnl_attr_next(a))
        }
    }

    /// A 4- or 16-byte address attribute.
    private static func ipAddress(_ attr: UnsafePointer<nlattr>) -> IPAddress? {
        let n = Int(mnl_attr_get_payload_len(attr))
        guard n == 4 || n == 16, let p = mnl_attr_get_payload(attr) else { return nil }
        return IPAddress(bytes: Array(UnsafeRawBufferPointer(start: p, count: n)))
    }

    /// A NUL-terminated string attribute (`mnl_attr_validate(attr, MNL_TYPE_NUL_STRING)`).
    private static func string(_ attr: UnsafePointer<nlattr>) -> String? {
        guard mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0, let p = mnl_attr_get_str(attr) else { return nil }
        return String(cString: p)
    }
}
