import CSkywireShim
import NIOCore
import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif
import SkywireIO

/// One peer's datagram route for a thread outside the event loop (the VPN datapath): sudph
/// DATA packets carrying an UNRELIABLE record with one DATAGRAM frame (PROTOCOL.md §4.1, §4.4,
/// §5), sealed with counters reserved from the session the event loop also sends on, so key
/// rotation and counter uniqueness hold for both. Immutable; safe to share.
public final class SudphDatagramPath: Sendable {
    let box: SudphSessionBox
    /// The endpoint's socket (shared by every path of one visor); closed under us, sends fail.
    let socket: UDPSocket
    let counters: LinkCounters
    let allowUnconfirmed: Bool
    let rekeyInterval: TimeAmount
    public let destinationPort: UInt16
    public let sourcePort: UInt16

    init(box: SudphSessionBox, socket: UDPSocket, counters: LinkCounters, allowUnconfirmed: Bool, rekeyInterval: TimeAmount,
         destinationPort: UInt16, sourcePort: UInt16) {
        self.box = box
        self.socket = socket
        self.counters = counters
        self.allowUnconfirmed = allowUnconfirmed
        self.rekeyInterval = rekeyInterval
        self.destinationPort = destinationPort
        self.sourcePort = sourcePort
    }

    /// False once the transport closed: get a new path (or fall back to `sendDatagram`).
    public var isOpen: Bool { !box.closed.load(ordering: .relaxed) }
}

/// A send arena for one datapath thread: callers write datagram payloads straight into slots
/// (e.g. `read(2)` from a TUN), then `flush` frames and seals every slot in place and sends
/// them with one sendmmsg(2), runs of equal-sized datagrams as one UDP GSO message
/// (UDP_SEGMENT) where the kernel takes it. No allocation per packet. Not thread-safe: one
/// owning thread.
public final class SudphDatagramBatch {
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
    private var paths: [SudphDatagramPath?]
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

    public init() {
        capacity = Int(skw_udp_gso_max_batch())
        arena = .allocate(byteCount: capacity * Self.slotSize, alignment: 16)
        lengths = [UInt16](repeating: 0, count: capacity)
        payloadLengths = [Int](repeating: 0, count: capacity)
        paths = [SudphDatagramPath?](repeating: nil, count: capacity)
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
    public func commit(length: Int, path: SudphDatagramPath) {
        precondition(count < capacity && length <= Self.maxPayload)
        payloadLengths[count] = length
        paths[count] = path
        count += 1
    }

    /// Seals every queued datagram in place and sends them; datagrams of a closed or not yet
    /// confirmed session, or that the socket refuses, are dropped and counted.
    public func flush() {
        guard count > 0 else { return }
        var i = 0
        var ready = 0
        while i < count {
            guard let path = paths[i] else { i += 1; continue }
            var j = i + 1
            while j < count, paths[j] === path { j += 1 }
            if path.socket !== sendSocket {
                send(ready)
                ready = 0
                sendSocket = path.socket
            }
            ready = seal(path: path, from: i, to: j, compactingTo: ready)
            i = j
        }
        for k in 0..<count { paths[k] = nil }
        count = 0
        send(ready)
    }

    /// Seals slots `from..<to` (one path) and moves their metadata to `ready...`; returns the new
    /// number of ready datagrams. Slots are not moved: `order` maps ready → slot.
    private func seal(path: SudphDatagramPath, from: Int, to: Int, compactingTo ready: Int) -> Int {
        let n = to - from
        guard path.isOpen,
              let r = try? path.box.reserve(count: n, allowUnconfirmed: path.allowUnconfirmed, now: .now(),
                                            rekeyInterval: path.rekeyInterval) else {
            dropped += UInt64(n)
            return ready
        }
        let address = path.box.currentAddress
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
        path.counters.addSent(bytes)
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
        slot[h + 1] = MuxFrameType.datagram.rawValue
        slot[h + 2] = UInt8(destinationPort >> 8)
        slot[h + 3] = UInt8(destinationPort & 0xff)
        slot[h + 4] = UInt8(sourcePort >> 8)
        slot[h + 5] = UInt8(sourcePort & 0xff)
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
