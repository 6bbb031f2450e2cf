import NIOConcurrencyHelpers
import SkywireCrypto
import SkywireWire

/// Receives DATAGRAM frames for one port in place, on a transport's event loop, before (and
/// instead of) the mux session and the app router, over sudph and stcpr alike. The VPN apps use
/// it to write packets to their TUN without a copy.
public protocol DatagramSink: AnyObject, Sendable {
    /// `payload` is the datagram's payload; the `headroom` bytes just before it belong to the
    /// packet buffer and may be overwritten (e.g. with a virtio_net_hdr). Valid only during the call.
    func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from: PublicKey, sourcePort: UInt16)
    /// The transport has no more datagrams for now (after a recvmmsg burst over sudph, a read
    /// burst over stcpr): push what was held back to merge (e.g. TCP segments coalesced for the TUN).
    func datagramBatchEnded()
}

/// `setDatagramSink`'s table (port → sink), read per received datagram by every transport's loop.
final class DatagramSinks: Sendable {
    private let table = NIOLockedValueBox<[UInt16: DatagramSink]>([:])

    func set(_ sink: DatagramSink?, port: UInt16) { table.withLockedValue { $0[port] = sink } }

    subscript(port: UInt16) -> DatagramSink? { table.withLockedValue { $0[port] } }

    /// A DATAGRAM frame for a port with a sink goes straight to it, in place, without the mux
    /// session; false when the frame is anything else (it then takes the mux path).
    func deliver(_ frame: UnsafeMutableRawBufferPointer, headroom: Int, from remote: PublicKey,
                 batch: inout DatagramSinkBatch) -> Bool {
        guard let ports = MuxFrameLayout.datagramPorts(UnsafeRawBufferPointer(frame)) else { return false }
        // The table is locked once per port and burst, not per datagram: a sink removed during
        // a burst gets the rest of that burst, as one looked up just before its removal would.
        let sink: DatagramSink
        if let noted = batch.sink(port: ports.destination) {
            sink = noted
        } else {
            guard let found = self[ports.destination] else { return false }
            batch.note(found, port: ports.destination)
            sink = found
        }
        let h = MuxFrameLayout.datagramHeader
        sink.receive(datagram: UnsafeMutableRawBufferPointer(rebasing: frame[h...]), headroom: headroom + h,
                     from: remote, sourcePort: ports.source)
        return true
    }
}

/// The sinks that got datagrams since a transport's read burst began; one per event-loop-confined
/// reader (the sudph endpoint, each stcpr link).
struct DatagramSinkBatch {
    private var sinks: [DatagramSink] = []
    /// The port each of `sinks` was looked up for.
    private var ports: [UInt16] = []

    /// The sink already looked up for `port` in this burst.
    func sink(port: UInt16) -> DatagramSink? {
        for i in ports.indices where ports[i] == port { return sinks[i] }
        return nil
    }

    mutating func note(_ sink: DatagramSink, port: UInt16) {
        sinks.append(sink)
        ports.append(port)
    }

    /// The read burst ended: sinks push what they held back (once each, whatever their ports).
    mutating func end() {
        guard !sinks.isEmpty else { return }
        for i in sinks.indices where !sinks[..<i].contains(where: { $0 === sinks[i] }) { sinks[i].datagramBatchEnded() }
        sinks.removeAll(keepingCapacity: true)
        ports.removeAll(keepingCapacity: true)
    }
}

extension TransportManager {
    /// Sends `port`'s datagrams, over sudph and stcpr, to `sink` (nil removes it: they then reach
    /// the app through the router).
    public func setDatagramSink(_ sink: DatagramSink?, port: UInt16) {
        sinks.set(sink, port: port)
    }

    /// A path that sends datagrams to `remote` from a thread of the caller's own, in batches
    /// (`DatagramBatch`), over the transport `connection(to:)` would pick: a live stcpr transport
    /// first, else the newest sudph one; nil when there is none (then use `sendDatagram`). The
    /// path stops working (`isOpen` false) when that transport closes.
    public func datagramPath(to remote: PublicKey, destinationPort: UInt16, sourcePort: UInt16) -> DatagramPath? {
        let candidates = lock.withLock { entries.to(remote) }
        for type in [TransportType.stcpr, .sudph] {
            // Newest first, as `connection(to:)` picks.
            let live = candidates.filter { $0.type == type }
                .sorted { ($0.liveConnectionAndOrder?.order ?? 0) > ($1.liveConnectionAndOrder?.order ?? 0) }
            for c in live {
                if let link = c.liveLink as? RawStcprLink, let queue = link.datagramQueue, queue.isOpen {
                    return DatagramPath(route: .stcpr(queue), destinationPort: destinationPort,
                                        sourcePort: sourcePort)
                }
                guard let peer = c.liveLink as? SudphPeer, let box = peer.sessionBox,
                      !box.closed.load(ordering: .acquiring) else { continue }
                let route = SudphDatagramRoute(box: box, socket: peer.endpoint.socket, counters: peer.counters,
                                               allowUnconfirmed: peer.isInitiator,
                                               rekeyInterval: settings.sudphRekeyInterval)
                return DatagramPath(route: .sudph(route), destinationPort: destinationPort, sourcePort: sourcePort)
            }
        }
        return nil
    }
}
