import CMnl
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A NETLINK_ROUTE socket subscribed to link, address and route changes (rtnetlink(7) groups
/// RTMGRP_LINK, RTMGRP_IPV4/IPV6_IFADDR, RTMGRP_IPV4/IPV6_ROUTE), opened with libmnl
/// (`mnl_socket_open2`, closed with `mnl_socket_close` in deinit). Non-blocking: the owner waits
/// for `descriptor` to be readable (epoll or `wait`) and calls `receive`. One owner at a time:
/// calls are serialised by `lock`.
public final class NetworkMonitor: Sendable {
    /// What one `receive` found.
    public enum Received: Sendable, Equatable {
        case events([NetworkEvent])
        /// Nothing queued.
        case wouldBlock
        /// The kernel dropped messages (ENOBUFS: the socket buffer overflowed): state built from
        /// events is stale and must be read again (`dump`).
        case overrun
    }

    /// Bytes per recv: MNL_SOCKET_BUFFER_SIZE (at most 8 KiB, the page size when smaller), as
    /// libmnl recommends; the kernel never splits a message across datagrams.
    public static let receiveBufferSize = 8192
    /// Groups subscribed to: link state, IPv4/IPv6 addresses and routes.
    public static let groups = UInt32(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)

    // @unchecked-free: the C socket is only touched under `lock`.
    private let lock: Mutex<Handle>

    private final class Handle: @unchecked Sendable {
        // @unchecked Sendable: used only inside `NetworkMonitor.lock`.
        let socket: OpaquePointer
        var buffer = [UInt8](repeating: 0, count: NetworkMonitor.receiveBufferSize)
        var sequence: UInt32 = 1
        init(_ socket: OpaquePointer) { self.socket = socket }
        deinit { mnl_socket_close(socket) }
    }

    /// The socket's descriptor (`mnl_socket_get_fd`), for epoll; owned by this monitor.
    public let descriptor: Int32

    /// Opens and binds the socket. `groups` 0 opens a socket for `dump` only.
    public init(groups: UInt32 = NetworkMonitor.groups) throws {
        guard let socket = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)) else {
            throw SystemError(call: "mnl_socket_open2(NETLINK_ROUTE)", errno: errno)
        }
        let handle = Handle(socket)
        try syscall("mnl_socket_bind(NETLINK_ROUTE, groups \(groups))") { mnl_socket_bind(socket, groups, pid_t(MNL_SOCKET_AUTOPID)) }
        descriptor = mnl_socket_get_fd(socket)
        lock = Mutex(handle)
    }

    /// Reads one datagram (`mnl_socket_recvfrom`) and decodes its messages.
    public func receive() throws -> Received {
        try lock.withLock { h in
            let n = h.buffer.withUnsafeMutableBytes { b in mnl_socket_recvfrom(h.socket, b.baseAddress, b.count) }
            if n < 0 {
                let e = errno
                if e == EINTR || e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
                if e == ENOBUFS { return .overrun }
                throw SystemError(call: "mnl_socket_recvfrom(NETLINK_ROUTE)", errno: e)
            }
            return .events(h.buffer.withUnsafeBytes { NetworkEvent.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) })
        }
    }

    /// Waits up to `timeoutMs` (-1: forever) for the socket to be readable (poll(2)); true when it is.
    public func wait(timeoutMs: Int32) throws -> Bool {
        var p = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return try syscall("poll(netlink)") { poll(&p, 1, timeoutMs) } > 0
    }

    /// Every link, address and route now: three dump requests (RTM_GETLINK, RTM_GETADDR,
    /// RTM_GETROUTE with NLM_F_DUMP), answered as the matching RTM_NEW* messages, decoded as
    /// events. Use a monitor opened with `groups: 0` (so no change notification is mixed in), or
    /// read changes only after this returns. Bounded: at most `maxDatagrams` answers per request.
    public func dump(maxDatagrams: Int = 4096) throws -> [NetworkEvent] {
        try lock.withLock { h in
            var all: [NetworkEvent] = []
            for type in [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE] {
                h.sequence &+= 1
                let seq = h.sequence
                // struct rtgenmsg after the header: the family (AF_UNSPEC: both).
                var request = [UInt8](repeating: 0, count: NetworkMonitor.receiveBufferSize)
                let length = request.withUnsafeMutableBytes { b -> Int in
                    guard let nlh = mnl_nlmsg_put_header(b.baseAddress) else { return 0 }
                    nlh.pointee.nlmsg_type = UInt16(type)
                    nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
                    nlh.pointee.nlmsg_seq = seq
                    guard let extra = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<rtgenmsg>.size) else { return 0 }
                    extra.storeBytes(of: UInt8(AF_UNSPEC), as: UInt8.self)
                    return Int(nlh.pointee.nlmsg_len)
                }
                try request.withUnsafeBytes { b in
                    _ = try syscall("mnl_socket_sendto(dump \(type))") { mnl_socket_sendto(h.socket, b.baseAddress, length) }
                }
                var done = false
                for _ in 0..<maxDatagrams where !done {
                    var p = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                    guard try syscall("poll(netlink dump)") { poll(&p, 1, NetworkMonitor.dumpReplyTimeoutMs) } > 0 else {
                        throw SystemError(call: "netlink dump \(type): no answer in \(NetworkMonitor.dumpReplyTimeoutMs) ms", errno: ETIMEDOUT)
                    }
                    let n = try h.buffer.withUnsafeMutableBytes { b in
                        try syscall("mnl_socket_recvfrom(dump \(type))") { mnl_socket_recvfrom(h.socket, b.baseAddress, b.count) }
                    }
                    h.buffer.withUnsafeBytes { b in
                        let datagram = UnsafeRawBufferPointer(rebasing: b[0..<n])
                        all += NetworkEvent.parse(datagram)
                        done = NetworkEvent.containsDone(datagram)
                    }
                }
                guard done else { throw SystemError(call: "netlink dump \(type): more than \(maxDatagrams) answers", errno: EOVERFLOW) }
            }
            return all
        }
    }

    /// How long a dump waits for each answer datagram.
    static let dumpReplyTimeoutMs: Int32 = 2000
}

extension NetworkEvent {
    /// Whether the datagram holds NLMSG_DONE or NLMSG_ERROR (the end of a dump's answer).
    static func containsDone(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard let base = datagram.baseAddress else { return false }
        var left = Int32(clamping: datagram.count)
        var message: UnsafePointer<nlmsghdr>? = base.assumingMemoryBound(to: nlmsghdr.self)
        while let nlh = message, fits(nlh, left) {
            let type = Int32(nlh.pointee.nlmsg_type)
            if type == NLMSG_DONE || type == NLMSG_ERROR { return true }
            message = UnsafePointer(mnl_nlmsg_next(nlh, &left))
        }
        return false
    }
}
