import NIOConcurrencyHelpers
import SkywireCrypto

/// Receives DATAGRAM frames for one port in place, on a transport's event loop, before (and
/// instead of) the mux session and the app router. The VPN apps use it to write packets to
/// their TUN without a copy.
public protocol DatagramSink: AnyObject, Sendable {
    /// `payload` is the datagram's payload; the `headroom` bytes just before it belong to the
    /// packet buffer and may be overwritten (e.g. with a virtio_net_hdr). Valid only during the call.
    func receive(datagram payload: UnsafeMutableRawBufferPointer, headroom: Int, from: PublicKey, sourcePort: UInt16)
    /// The socket has no more datagrams for now (after a recvmmsg burst): push what was held
    /// back to merge (e.g. TCP segments coalesced for the TUN).
    func datagramBatchEnded()
}

extension TransportManager {
    /// Sends `port`'s datagrams over sudph to `sink` (nil removes it). Over stcpr they still
    /// reach the app through the router.
    public func setDatagramSink(_ sink: DatagramSink?, port: UInt16) {
        sinks.withLockedValue { $0[port] = sink }
    }

    func datagramSink(port: UInt16) -> DatagramSink? {
        sinks.withLockedValue { $0[port] }
    }

    /// A path that seals and sends datagrams to `remote` from a thread of the caller's own,
    /// around the event loop, when the best live transport to it is sudph; nil otherwise (then
    /// use `sendDatagram`). The path stops working (`isOpen` false) when that transport closes.
    public func datagramPath(to remote: PublicKey, destinationPort: UInt16, sourcePort: UInt16) -> SudphDatagramPath? {
        let candidates = lock.withLock { entries.to(remote) }
        // Same preference as `connection(to:)`: a live stcpr transport carries the datagrams.
        if candidates.contains(where: { $0.type == .stcpr && $0.liveConnection != nil }) { return nil }
        // Newest first, as `connection(to:)` picks.
        let sudph = candidates.filter { $0.type == .sudph }
            .sorted { ($0.liveConnectionAndOrder?.order ?? 0) > ($1.liveConnectionAndOrder?.order ?? 0) }
        for c in sudph {
            guard let peer = c.liveLink as? SudphPeer, let box = peer.sessionBox,
                  !box.closed.load(ordering: .acquiring) else { continue }
            return SudphDatagramPath(box: box, socket: peer.endpoint.socket, counters: peer.counters,
                                     allowUnconfirmed: peer.isInitiator, rekeyInterval: settings.sudphRekeyInterval,
                                     destinationPort: destinationPort, sourcePort: sourcePort)
        }
        return nil
    }
}
