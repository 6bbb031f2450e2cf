#if canImport(Glibc)
import Glibc
#endif
import SkywireSystem
import SkywireTransport

/// Reads a TUN straight into a `DatagramBatch`. Plain TUNs whose MTU fits a slot are read
/// into the batch's next slot; with offloads (IFF_VNET_HDR + TSO) a read returns a
/// virtio_net_hdr and maybe a TCP GSO super-packet, which is segmented into slots
/// (`TCPSegmenter`), and a packet that still needs its checksum gets it. Not thread-safe: one
/// reader thread.
final class TunReader {
    let device: TunDevice
    /// virtio_net_hdr + the largest super-packet, when `device.offloads` or the MTU is larger
    /// than a slot.
    private let scratch: UnsafeMutableRawBufferPointer?
    private(set) var superPackets: UInt64 = 0
    private(set) var dropped: UInt64 = 0

    init(device: TunDevice, mtu: Int) {
        self.device = device
        scratch = device.offloads || mtu > DatagramBatch.maxPayload
            ? .allocate(byteCount: device.headerSize + TunDevice.maxPacketSize, alignment: 16) : nil
    }

    deinit { scratch?.deallocate() }

    /// Reads until the TUN would block or after `maxReads` reads. Every IPv4 packet (each segment
    /// of a super-packet) is in the batch's next slot when `dispatch` gets it with `inSlot` true,
    /// and `dispatch` commits it to the batch or not; a packet larger than a slot comes with
    /// `inSlot` false (for the mux path). A full batch is flushed on the way. Returns the number
    /// of reads.
    func drain(into batch: DatagramBatch, maxReads: Int,
               dispatch: (_ packet: UnsafeRawBufferPointer, _ inSlot: Bool) -> Void) throws -> Int {
        var reads = 0
        while reads < maxReads {
            if batch.isFull { batch.flush() }
            guard let scratch else {
                let slot = batch.nextPayload
                guard case .processed(let n) = try device.read(into: slot) else { break }
                reads += 1
                dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<n]), true)
                continue
            }
            guard case .processed(let n) = try device.read(into: scratch) else { break }
            reads += 1
            let h = device.headerSize
            guard n > h else { continue }
            let header = device.offloads ? VirtioNetHeader(UnsafeRawBufferPointer(rebasing: scratch[0..<h])) : VirtioNetHeader()
            let packet = UnsafeMutableRawBufferPointer(rebasing: scratch[h..<n])
            let gso = header.gsoType & ~VirtioNetHeader.gsoECN
            if gso == VirtioNetHeader.gsoTCPv4 || gso == VirtioNetHeader.gsoTCPv6 {
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
                    dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<length]), true)
                }
                continue
            }
            guard gso == VirtioNetHeader.gsoNone else {
                dropped += 1
                continue
            }
            if header.flags & VirtioNetHeader.needsChecksum != 0,
               !TCPSegmenter.completeChecksum(packet, start: Int(header.checksumStart), offset: Int(header.checksumOffset)) {
                dropped += 1
                continue
            }
            guard packet.count <= DatagramBatch.maxPayload else {
                dispatch(UnsafeRawBufferPointer(packet), false)
                continue
            }
            let slot = batch.nextPayload
            slot.copyMemory(from: UnsafeRawBufferPointer(packet))
            dispatch(UnsafeRawBufferPointer(rebasing: slot[0..<packet.count]), true)
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
