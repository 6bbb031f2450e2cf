import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif
import SkywireSystem

/// Queues datagrams in a preallocated arena and sends them with one sendmmsg(2) per batch:
/// no allocation per packet. Callers write each packet's bytes straight into its slot. Runs of
/// equal-sized datagrams to one address go as one UDP GSO message (UDP_SEGMENT,
/// `skw_udp_send_gso`) until the kernel refuses it once, as `DatagramBatch` sends the VPN's.
///
/// A failed datagram is dropped and counted, never fatal: a firewall's EPERM (nftables drop
/// in OUTPUT), ENETUNREACH or a full socket buffer (EAGAIN) only loses that packet; the
/// protocol above retransmits. Not thread-safe: one owning thread (an event loop).
public final class UDPBatchSender {
    public static let slotSize = 2048
    public let batchSize: Int
    private let socket: UDPSocket
    private let arena: UnsafeMutableRawBufferPointer
    private var lengths: [UInt16]
    private var addresses: [sockaddr_storage]
    private var addressLengths: [socklen_t]
    private var count = 0
    public private(set) var sent: UInt64 = 0
    public private(set) var dropped: UInt64 = 0
    public private(set) var lastError: SystemError?
    /// UDP GSO until the kernel refuses it once (EIO/EINVAL: no checksum offload on the route,
    /// or a segment above the path MTU).
    public private(set) var segmentationOffload = true

    /// Sends on `socket`; once it is closed, every datagram is dropped (`UDPSocket.closedError`).
    public init(socket: UDPSocket) {
        self.socket = socket
        self.batchSize = Int(skw_max_batch())
        self.arena = .allocate(byteCount: batchSize * Self.slotSize, alignment: 16)
        self.lengths = [UInt16](repeating: 0, count: batchSize)
        self.addresses = [sockaddr_storage](repeating: sockaddr_storage(), count: batchSize)
        self.addressLengths = [socklen_t](repeating: 0, count: batchSize)
    }

    deinit { arena.deallocate() }

    /// Writes one datagram into the next slot: `fill` gets the slot and returns the length
    /// (0 drops it); `address` copies the destination into the given storage and returns
    /// its length. Sends the batch first when it is full.
    public func enqueue(address: (UnsafeMutablePointer<sockaddr_storage>) -> socklen_t,
                        fill: (UnsafeMutableRawBufferPointer) -> Int) {
        if count == batchSize { flush() }
        let slot = UnsafeMutableRawBufferPointer(rebasing: arena[(count * Self.slotSize)..<((count + 1) * Self.slotSize)])
        let n = fill(slot)
        guard n > 0, n <= Self.slotSize else { return }
        lengths[count] = UInt16(n)
        addressLengths[count] = addresses.withUnsafeMutableBufferPointer { address($0.baseAddress! + count) }
        count += 1
    }

    /// Sends every queued datagram (sendmmsg, retried on EINTR; failed datagrams dropped).
    public func flush() {
        guard count > 0 else { return }
        var tally = UDPSendTally(segmentationOffload: segmentationOffload)
        lengths.withUnsafeBufferPointer { lens in
            addresses.withUnsafeBufferPointer { addrs in
                addressLengths.withUnsafeBufferPointer { alens in
                    socket.sendSlots(arena: arena, slotSize: Self.slotSize, lengths: lens, addresses: addrs,
                                     addressLengths: alens, count: count, tally: &tally)
                }
            }
        }
        sent += tally.sent
        dropped += tally.dropped
        segmentationOffload = tally.segmentationOffload
        if let e = tally.lastError { lastError = e as? SystemError ?? lastError }
        count = 0
    }
}
