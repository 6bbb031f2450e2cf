import CSkywireShim
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// This host's own addresses (those of every interface, and their IPv4 broadcast addresses, as
/// getifaddrs(3) lists them), kept current without polling: a NETLINK_ROUTE socket subscribed to
/// address changes (`skw_netlink_address_events`) is drained with one non-blocking recv(2) per
/// lookup, and the addresses are listed again only after the kernel reported a change. The kernel
/// queues that report before the request that changed an address (`ip addr add`) returns, so an
/// address added at any time is known to every later lookup. Without the socket (it could not be
/// opened), every lookup lists the addresses. Any thread: the state is behind `state`'s mutex.
public final class HostAddresses: Sendable {
    /// The process's instance: addresses of the network namespace it is first used in.
    public static let shared = HostAddresses()

    /// Bytes read per recv(2) from the event socket (an address message is ~100 bytes; their
    /// content does not matter, the socket is only drained).
    static let drainChunk = 8192

    private struct State {
        var events: OwnedDescriptor?
        var addresses: Set<IPAddress> = []
        /// Set when a change was reported (or nothing listed yet): list before the next answer.
        var stale = true
        /// getifaddrs(3) calls that succeeded.
        var listings = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Whether `address` is one of this host's addresses. Fails closed: true while the addresses
    /// have never been listed (getifaddrs failing, e.g. with no descriptor left).
    public func contains(_ address: IPAddress) -> Bool {
        state.withLock { state in
            Self.refresh(&state)
            return state.listings == 0 || state.addresses.contains(address)
        }
    }

    /// The addresses as of now.
    public var current: Set<IPAddress> {
        state.withLock { state in
            Self.refresh(&state)
            return state.addresses
        }
    }

    /// How many times the addresses were listed (each a netlink dump inside getifaddrs(3)).
    public var listings: Int { state.withLock { $0.listings } }

    private static func refresh(_ state: inout State) {
        if state.events == nil {
            let fd = skw_netlink_address_events()
            if fd >= 0 {
                state.events = OwnedDescriptor(taking: fd)
                state.stale = true
            }
        }
        if let events = state.events {
            switch drain(events.raw) {
            case .quiet: break
            case .changed: state.stale = true
            case .broken:
                events.close()
                state.events = nil
            }
        }
        // Listed after the drain: a change during the listing is reported to the next lookup.
        guard state.stale || state.events == nil, let listed = try? list() else { return }
        state.addresses = listed
        state.listings += 1
        state.stale = false
    }

    private enum Drain { case quiet, changed, broken }

    /// Reads every queued change report; an overflow (ENOBUFS: reports were lost) counts as a change.
    private static func drain(_ fd: Int32) -> Drain {
        withUnsafeTemporaryAllocation(byteCount: drainChunk, alignment: MemoryLayout<UInt64>.alignment) { buffer in
            var changed = false
            while true {
                do {
                    let outcome = try syscallNonBlocking("recv(NETLINK_ROUTE)") {
                        recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                    }
                    switch outcome {
                    case .wouldBlock: return changed ? .changed : .quiet
                    case .processed(let count): if count == 0 { return .broken }
                    }
                    changed = true
                } catch let error as SystemError where error.errno == ENOBUFS {
                    changed = true
                } catch {
                    return .broken
                }
            }
        }
    }

    /// getifaddrs(3): every interface address, and the broadcast address of IFF_BROADCAST ones.
    static func list() throws -> Set<IPAddress> {
        var head: UnsafeMutablePointer<ifaddrs>?
        try syscall("getifaddrs") { getifaddrs(&head) }
        defer { freeifaddrs(head) }
        var out = Set<IPAddress>()
        var cursor = head
        while let entry = cursor {
            if let address = IPAddress(socketAddress: entry.pointee.ifa_addr) { out.insert(address) }
            if entry.pointee.ifa_flags & UInt32(IFF_BROADCAST) != 0,
               let broadcast = IPAddress(socketAddress: entry.pointee.ifa_ifu.ifu_broadaddr) {
                out.insert(broadcast)
            }
            cursor = entry.pointee.ifa_next
        }
        return out
    }
}

extension IPAddress {
    /// The address of an AF_INET or AF_INET6 `sockaddr`; nil for other families and null.
    init?(socketAddress: UnsafeMutablePointer<sockaddr>?) {
        guard let socketAddress else { return nil }
        switch Int32(socketAddress.pointee.sa_family) {
        case AF_INET:
            let v4 = UnsafeRawPointer(socketAddress).load(as: sockaddr_in.self)
            self.init(v4: UInt32(bigEndian: v4.sin_addr.s_addr))
        case AF_INET6:
            var v6 = UnsafeRawPointer(socketAddress).load(as: sockaddr_in6.self).sin6_addr
            self.init(bytes: withUnsafeBytes(of: &v6) { Array($0) })
        default:
            return nil
        }
    }
}
