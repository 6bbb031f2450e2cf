import CSkywireShim
import NIOCore
import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// A send arena for one datapath thread, whatever the transport (wireguard-go's `conn.Bind`
/// batches): callers write datagram payloads straight into slots (e.g. `read(2)` from a TUN) and
/// commit each to a `DatagramPath`; `flush` sends them. Over sudph it frames and seals every
/// slot in place and sends them with one sendmmsg(2), runs of equal-sized datagrams as one UDP
/// GSO message (UDP_SEGMENT) where the kernel takes it; over stcpr it frames them in place and
/// hands each run to the link's event loop at once (`StcprDatagramQueue`: one write for the
/// batch). No allocation per packet. Not thread-safe: one owning thread.
///
/// `waitsForRoom`: over stcpr, a flush that finds the link's queue full waits (bounded:
/// `StcprDatagramQueue.defaultFullWait`) for the loop to take it instead of dropping. Only for
/// a thread that sends to one peer (the VPN client's TUN reader), or while it does (the exit's
/// thread, while one client alone gets packets: `SoleClientPacing`): a thread that serves many
/// must not stall every client for one slow link, so it drops what does not fit, like a
/// router's queue, and the inner flows back off.
public final class DatagramBatch {
    /// Where a payload starts in its slot: data header, record kind, DATAGRAM frame header.
    public static let payloadOffset = SudphLayout.dataHeaderSize + SudphRecordLayout.unreliableHeaderSize
        + MuxFrameLayout.datagramHeader
    public static let slotSize = UDPBatchSender.slotSize
    /// The largest payload a slot takes (the tag follows it).
    public static let maxPayload = slotSize - payloadOffset - SudphLayout.tagSize

    public let capacity: Int
    private let arena: UnsafeMutableRawBufferPointer
    private var lengths: [UInt16]
    private var payloadLengths: [Int]
    private var paths: [DatagramPath?]
    private var addresses: [sockaddr_storage]
    private var addressLengths: [socklen_t]
    public private(set) var count = 0
    /// The socket the ready datagrams go out on (every path of one visor shares it).
    private var sendSocket: UDPSocket?
    public private(set) var sent: UInt64 = 0
    public private(set) var dropped: UInt64 = 0
    public private(set) var lastError: Error?
    /// UDP GSO until the kernel refuses it once (EIO/EINVAL: no checksum offload on the route,
    /// or a segment above the path MTU).
    public private(set) var segmentationOffload = true
    /// Wait for room in a full stcpr queue (one peer per thread) instead of dropping; read at
    /// each `flush`.
    public var waitsForRoom: Bool

    public init(waitsForRoom: Bool = false) {
        self.waitsForRoom = waitsForRoom
        capacity = Int(skw_udp_gso_max_batch())
        arena = .allocate(byteCount: capacity * Self.slotSize, alignment: 16)
        lengths = [UInt16](repeating: 0, count: capacity)
        payloadLengths = [Int](repeating: 0, count: capacity)
        paths = [DatagramPath?](repeating: nil, count: capacity)
        addresses = [sockaddr_storage](repeating: sockaddr_storage(), count: capacity)
        addressLengths = [socklen_t](repeating: 0, count: capacity)
    }

    deinit { arena.deallocate() }

    public var isFull: Bool { count == capacity }

    /// Room for the next payload (`maxPayload` bytes); valid until `commit` or `flush`.
    public var nextPayload: UnsafeMutableRawBufferPointer {
        precondition(count < capacity, "flush a full batch first")
        let start = count * Self.slotSize + Self.payloadOffset
        return UnsafeMutableRawBufferPointer(rebasing: arena[start..<(start + Self.maxPayload)])
    }

    /// Keeps the `length` bytes written at `nextPayload` as a datagram for `path`.
    public func commit(length: Int, path: DatagramPath) {
        precondition(count < capacity && length <= Self.maxPayload)
        payloadLengths[count] = length
        paths[count] = path
        count += 1
    }

    /// Sends every queued datagram: sealed in place over sudph, handed to the link over stcpr;
    /// datagrams of a closed or not yet confirmed session, or that the socket or link refuses,
    /// are dropped and counted.
    public func flush() {
        guard count > 0 else { return }
        var i = 0
        var ready = 0
        while i < count {
            guard let path = paths[i] else { i += 1; continue }
            var j = i + 1
            while j < count, paths[j] === path { j += 1 }
            switch path.route {
            case .sudph(let route):
                if route.socket !== sendSocket {
                    send(ready)
                    ready = 0
                    sendSocket = route.socket
                }
                ready = seal(path: path, route: route, from: i, to: j, compactingTo: ready)
            case .stcpr(let queue):
                // Slots already compacted by sudph runs lie below `i`: these are untouched.
                dropped += UInt64(queue.enqueue(count: j - i, mayWait: waitsForRoom) { k in frame(slot: i + k, path: path) })
            }
            i = j
        }
        for k in 0..<count { paths[k] = nil }
        count = 0
        send(ready)
    }

    /// Slot `k`'s payload as a DATAGRAM frame: the header written just before it.
    private func frame(slot k: Int, path: DatagramPath) -> UnsafeRawBufferPointer {
        let end = k * Self.slotSize + Self.payloadOffset + payloadLengths[k]
        let start = k * Self.slotSize + Self.payloadOffset - MuxFrameLayout.datagramHeader
        let frame = UnsafeMutableRawBufferPointer(rebasing: arena[start..<end])
        MuxFrameLayout.writeDatagramHeader(destinationPort: path.destinationPort, sourcePort: path.sourcePort, into: frame)
        return UnsafeRawBufferPointer(frame)
    }

    /// Seals slots `from..<to` (one path) and moves their metadata to `ready...`; returns the new
    /// number of ready datagrams. Slots are not moved: `order` maps ready → slot.
    private func seal(path: DatagramPath, route: SudphDatagramRoute, from: Int, to: Int, compactingTo ready: Int) -> Int {
        let n = to - from
        guard route.isOpen,
              let r = try? route.box.reserve(count: n, allowUnconfirmed: route.allowUnconfirmed, now: .now(),
                                             rekeyInterval: route.rekeyInterval) else {
            dropped += UInt64(n)
            return ready
        }
        let address = route.box.currentAddress
        var addressStorage = sockaddr_storage()
        let addressLength: socklen_t = address.withSockAddr { addr, len in
            withUnsafeMutableBytes(of: &addressStorage) { $0.baseAddress!.copyMemory(from: addr, byteCount: len) }
            return socklen_t(len)
        }
        var out = ready
        var bytes = 0
        for k in from..<to {
            let slot = UnsafeMutableRawBufferPointer(rebasing: arena[(k * Self.slotSize)..<((k + 1) * Self.slotSize)])
            let total = Self.seal(slot: slot, payloadLength: payloadLengths[k], counter: r.first + UInt64(k - from),
                                  reservation: r, destinationPort: path.destinationPort, sourcePort: path.sourcePort)
            guard total > 0 else { dropped += 1; continue }
            if out != k {
                // Keep ready datagrams contiguous: move this one down into slot `out`.
                let dst = UnsafeMutableRawBufferPointer(rebasing: arena[(out * Self.slotSize)..<((out + 1) * Self.slotSize)])
                dst.baseAddress!.copyMemory(from: slot.baseAddress!, byteCount: total)
            }
            lengths[out] = UInt16(total)
            addresses[out] = addressStorage
            addressLengths[out] = addressLength
            bytes += total
            out += 1
        }
        route.counters.addSent(bytes)
        return out
    }

    /// Writes the data header, record kind and DATAGRAM header in front of the payload and seals
    /// record ‖ frame in place (ChaChaPoly, §4.1). Returns the packet length, 0 on failure.
    static func seal(slot: UnsafeMutableRawBufferPointer, payloadLength: Int, counter: UInt64,
                     reservation r: SudphSessionBox.Reservation, destinationPort: UInt16, sourcePort: UInt16) -> Int {
        let h = SudphLayout.dataHeaderSize
        let plainLength = payloadOffset - h + payloadLength
        let total = h + plainLength + SudphLayout.tagSize
        guard total <= slot.count,
              (try? SudphPacket.writeDataHeader(receiverIndex: r.remoteIndex, counter: counter, keyPhase: r.phase,
                                                into: slot)) != nil else { return 0 }
        slot[h] = SudphRecordKind.unreliable.rawValue
        MuxFrameLayout.writeDatagramHeader(destinationPort: destinationPort, sourcePort: sourcePort,
                                           into: UnsafeMutableRawBufferPointer(rebasing: slot[(h + 1)...]))
        let header = UnsafeRawBufferPointer(rebasing: slot[0..<h])
        let plain = UnsafeRawBufferPointer(rebasing: slot[h..<(h + plainLength)])
        let body = UnsafeMutableRawBufferPointer(rebasing: slot[h..<total])
        guard (try? r.key.seal(counter: counter, ad: header, plaintext: plain, into: body)) != nil else { return 0 }
        return total
    }

    /// sendmmsg(2) of the first `n` slots (`UDPSocket.sendSlots`: UDP GSO while the kernel
    /// takes it; a refused datagram is dropped, a full buffer drops the rest of the batch, a
    /// closed socket drops them all).
    private func send(_ n: Int) {
        guard n > 0, let socket = sendSocket else { return }
        var tally = UDPSendTally(segmentationOffload: segmentationOffload)
        lengths.withUnsafeBufferPointer { lens in
            addresses.withUnsafeBufferPointer { addrs in
                addressLengths.withUnsafeBufferPointer { alens in
                    socket.sendSlots(arena: arena, slotSize: Self.slotSize, lengths: lens,
                                     addresses: addrs, addressLengths: alens, count: n, tally: &tally)
                }
            }
        }
        sent += tally.sent
        dropped += tally.dropped
        segmentationOffload = tally.segmentationOffload
        if let e = tally.lastError { lastError = e }
    }
}
