import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif

/// A Linux TUN interface (`IFF_TUN | IFF_NO_PI`): each read returns one IP packet and each
/// write injects one. Opened with `skw_tun_open` (TUNSETIFF); the interface lives as long as
/// the descriptor (it is not made persistent), so closing it removes the interface and every
/// address and route on it.
public final class TunDevice: @unchecked Sendable {
    // @unchecked Sendable: `descriptor` changes only in `close()`, which the owner calls after
    // its reader thread has stopped; read(2)/write(2)/poll(2) on one descriptor are thread-safe.
    public let name: String
    public let descriptor: OwnedDescriptor
    /// True when opened with IFF_VNET_HDR and TSO (TUNSETOFFLOAD): every read starts with a
    /// struct virtio_net_hdr and may return a GSO super-packet of up to 64 KiB; every write
    /// must start with one.
    public let offloads: Bool
    /// sizeof(struct virtio_net_hdr) when `offloads`, else 0.
    public var headerSize: Int { offloads ? Int(skw_vnet_hdr_size) : 0 }

    /// Room for the largest packet a TUN returns (64 KiB, the IPv4 total-length limit).
    public static let maxPacketSize = 65535

    /// Opens (creates) the TUN interface `name` (at most IFNAMSIZ−1 bytes; "%d" lets the kernel
    /// pick a number). Blocking unless `nonBlocking`. With `offloads` it asks for IFF_VNET_HDR
    /// and TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6, and falls back to plain packets when the kernel refuses.
    public init(name: String, nonBlocking: Bool = false, offloads: Bool = false) throws {
        let size = skw_ifnamsiz()
        guard !name.isEmpty, name.utf8.count < size else {
            throw SystemError(call: "TUNSETIFF(\(name)): interface names are 1...\(size - 1) bytes", errno: EINVAL)
        }
        var buffer = [CChar](repeating: 0, count: size)
        for (i, b) in name.utf8.enumerated() { buffer[i] = CChar(bitPattern: b) }
        var fd: Int32 = -1
        var withOffloads = false
        if offloads {
            do {
                fd = try syscall("open(/dev/net/tun)+TUNSETIFF(\(name), IFF_VNET_HDR)") { skw_tun_open(&buffer, size, 1, 0) }
                try syscall("TUNSETOFFLOAD(\(name))") { skw_tun_set_offload(fd, skw_tun_f_csum() | skw_tun_f_tso4() | skw_tun_f_tso6()) }
                withOffloads = true
            } catch {
                if fd >= 0 { _ = Glibc.close(fd) }
                fd = -1
            }
        }
        if fd < 0 {
            fd = try syscall("open(/dev/net/tun)+TUNSETIFF(\(name))") { skw_tun_open(&buffer, size, 0, 0) }
        }
        self.offloads = withOffloads
        descriptor = OwnedDescriptor(taking: fd)
        self.name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if nonBlocking { try descriptor.setNonBlocking() }
    }

    /// Reads one packet into `buffer`, blocking until one arrives (or EAGAIN when non-blocking,
    /// reported as `.wouldBlock`). Returns its length.
    @inline(__always)
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> IOResult<Int> {
        try syscallNonBlocking("read(\(name))") { Glibc.read(descriptor.raw, buffer.baseAddress, buffer.count) }
    }

    /// Writes one IP packet (after a zero virtio_net_hdr when `offloads`: no GSO, checksums
    /// complete). A full queue (`.wouldBlock`) means the packet is dropped.
    @inline(__always)
    @discardableResult
    public func write(_ packet: UnsafeRawBufferPointer) throws -> IOResult<Int> {
        if offloads {
            return try syscallNonBlocking("writev(\(name))") {
                withUnsafeTemporaryAllocation(byteCount: Int(skw_vnet_hdr_size), alignment: 8) { header in
                    header.initializeMemory(as: UInt8.self, repeating: 0)
                    return skw_writev2(descriptor.raw, header.baseAddress, header.count, packet.baseAddress, packet.count)
                }
            }
        }
        return try syscallNonBlocking("write(\(name))") { Glibc.write(descriptor.raw, packet.baseAddress, packet.count) }
    }

    /// Writes a virtio_net_hdr (`header`, `headerSize` bytes) and a packet (maybe a GSO
    /// super-packet) as one; only when `offloads`.
    @inline(__always)
    @discardableResult
    public func write(header: UnsafeRawBufferPointer, packet: UnsafeRawBufferPointer) throws -> IOResult<Int> {
        try syscallNonBlocking("writev(\(name))") {
            skw_writev2(descriptor.raw, header.baseAddress, header.count, packet.baseAddress, packet.count)
        }
    }

    /// Waits until a packet can be read or `waker` fires; false on timeout or wake-up.
    /// `timeoutMillis` −1 waits forever.
    /// The two pollfds live on the stack: a TUN reader calls this each time it drains the TUN.
    public func waitReadable(waker: EventWaker?, timeoutMillis: Int32) throws -> Bool {
        var fds = (pollfd(fd: descriptor.raw, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: waker?.descriptor.raw ?? -1, events: Int16(POLLIN), revents: 0))
        let count: nfds_t = waker == nil ? 1 : 2
        let n = try withUnsafeMutablePointer(to: &fds) { tuple in
            try tuple.withMemoryRebound(to: pollfd.self, capacity: 2) { p in
                try syscall("poll(\(name))") { poll(p, count, timeoutMillis) }
            }
        }
        if n > 0, count > 1, fds.1.revents != 0 { return false }
        return n > 0 && fds.0.revents & Int16(POLLIN) != 0
    }

    /// Closes the descriptor; the kernel removes the interface.
    public func close() { descriptor.close() }
}

/// An eventfd(2) that wakes a thread blocked in `poll`, e.g. a TUN reader being stopped.
public final class EventWaker: @unchecked Sendable {
    // @unchecked Sendable: the descriptor is immutable until deinit; eventfd writes are atomic.
    public let descriptor: OwnedDescriptor

    public init() throws {
        descriptor = OwnedDescriptor(taking: try syscall("eventfd") { skw_eventfd() })
    }

    /// Makes the descriptor readable (it stays so: a woken reader is expected to exit).
    public func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(descriptor.raw, $0.baseAddress, $0.count) }
    }
}
