import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif
import SkywireSystem

/// The counters a batch send updates (`UDPBatchSender`, the sudph datapath).
public struct UDPSendTally {
    public var sent: UInt64 = 0
    public var dropped: UInt64 = 0
    public var lastError: Error?
    /// UDP GSO (UDP_SEGMENT) still in use; cleared for good when the kernel refuses it.
    public var segmentationOffload: Bool

    public init(segmentationOffload: Bool) { self.segmentationOffload = segmentationOffload }
}

extension UDPBatchSender {
    /// Sends the first `count` slots of `arena` with sendmmsg(2) (`skw_udp_send_gso`, runs of
    /// equal-sized datagrams as one UDP GSO message while `tally.segmentationOffload`). A datagram
    /// the socket refuses (EPERM from an nftables drop, ENETUNREACH) is dropped and the rest still
    /// go; EIO/EINVAL with GSO turns GSO off and retries; a full buffer drops the rest of the batch.
    public static func sendSlots(fd: Int32, arena: UnsafeMutableRawBufferPointer, slotSize: Int,
                                 lengths: UnsafeBufferPointer<UInt16>,
                                 addresses: UnsafeBufferPointer<sockaddr_storage>,
                                 addressLengths: UnsafeBufferPointer<socklen_t>,
                                 count: Int, tally: inout UDPSendTally) {
        var start = 0
        while start < count {
            let remaining = count - start
            let gso: Int32 = tally.segmentationOffload ? 1 : 0
            let result: IOResult<Int32>
            do {
                result = try syscallNonBlocking("sendmmsg") {
                    skw_udp_send_gso(fd, arena.baseAddress!.assumingMemoryBound(to: UInt8.self) + start * slotSize,
                                     slotSize, lengths.baseAddress! + start, addresses.baseAddress! + start,
                                     addressLengths.baseAddress! + start, UInt32(remaining), gso)
                }
            } catch let e as SystemError where gso != 0 && (e.errno == EIO || e.errno == EINVAL) {
                tally.lastError = e
                tally.segmentationOffload = false
                continue
            } catch {
                // The first datagram of the rest failed: drop it, go on with the others.
                tally.lastError = error
                tally.dropped += 1
                start += 1
                continue
            }
            switch result {
            case .processed(let n):
                tally.sent += UInt64(n)
                start += Int(n)
            case .wouldBlock:
                // Socket buffer full: UDP semantics, the rest of this batch is lost.
                tally.dropped += UInt64(remaining)
                start = count
            }
        }
    }
}
