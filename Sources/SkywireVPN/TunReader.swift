#if canImport(Glibc)
import Glibc
#endif
import SkywireSystem
import SkywireTransport

/// Reads a TUN straight into a `SudphDatagramBatch`. Plain TUNs are read into the batch's next
/// slot; with offloads (IFF_VNET_HDR + TSO) a read returns a virtio_net_hdr and maybe a TCP
/// GSO super-packet, which is segmented into slots (`TCPSegmenter`), and a packet that still
/// needs its checksum gets it. Not thread-safe: one reader thread.
final class TunReader {
    let device: TunDevice
    /// virtio_net_hdr + the largest super-packet, when `device.offloads`.
    private let scratch: UnsafeMutableRawBufferPointer?
    private(set) var superPackets: UInt64 = 0
    private(set) var dropped: UInt64 = 0

    init(device: TunDevice) {
        self.device = device
        scratch = device.offloads
            ? .allocate(byteCount: device.headerSize + TunDevice.maxPacketSize, alignment: 16) : nil
    }

    deinit { scratch?.deallocate() }

    /// Reads until the TUN would block or after `maxReads` reads. Every IPv4 packet (each segment
    /// of a super-packet) is in the batch's next slot when `dispatch` gets it; `dispatch` commits
    /// it to the batch or not. A full batch is flushed on the way. Returns the number of reads.
    func drain(into batch: SudphDatagramBatch, maxReads: Int,
               dispatch: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        var reads = 0
        while reads < maxReads {
            if batch.isFull { batch.flush() }
            guard let scratch else {
                let slot = batch.nextPayload
                guard case .processed(let n) = try device.read(into: slot) else { break }
                reads += 1
                dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<n]))
                continue
            }
            guard case .processed(let n) = try device.read(into: scratch) else { break }
            reads += 1
            let h = device.headerSize
            guard n > h else { continue }
            let header = VirtioNetHeader(UnsafeRawBufferPointer(rebasing: scratch[0..<h]))
            let packet = UnsafeMutableRawBufferPointer(rebasing: scratch[h..<n])
            let gso = header.gsoType & ~VirtioNetHeader.gsoECN
            if gso == VirtioNetHeader.gsoTCPv4 {
                let p = UnsafeRawBufferPointer(packet)
                let size = Int(header.gsoSize)
                let count = TCPSegmenter.segmentCount(p, gsoSize: size)
                guard count > 0 else { dropped += 1; continue }
                superPackets += 1
                for i in 0..<count {
                    if batch.isFull { batch.flush() }
                    let slot = batch.nextPayload
                    let length = TCPSegmenter.writeSegment(i, of: p, gsoSize: size, into: slot)
                    guard length > 0 else { dropped += 1; break }
                    dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<length]))
                }
                continue
            }
            guard gso == VirtioNetHeader.gsoNone, packet.count <= SudphDatagramBatch.maxPayload else {
                dropped += 1
                continue
            }
            if header.flags & VirtioNetHeader.needsChecksum != 0,
               !TCPSegmenter.completeChecksum(packet, start: Int(header.checksumStart), offset: Int(header.checksumOffset)) {
                dropped += 1
                continue
            }
            let slot = batch.nextPayload
            slot.copyMemory(from: UnsafeRawBufferPointer(packet))
            dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<packet.count]))
        }
        return reads
    }
}

/// Whether the VPN TUNs ask for IFF_VNET_HDR + TSO: yes unless `SKYWIRE_VPN_OFFLOADS=0`
/// (for comparisons; the kernel's refusal falls back by itself).
enum VPNOffloads {
    static let enabled: Bool = {
        guard let v = getenv("SKYWIRE_VPN_OFFLOADS") else { return true }
        return String(cString: v) != "0"
    }()
}
