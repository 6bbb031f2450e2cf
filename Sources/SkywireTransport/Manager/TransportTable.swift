import SkywireCrypto

/// The manager's transports by id, indexed by remote key too: finding the transports to one
/// peer (every stream open, every datagram sent by `sendDatagram`, every inbound handshake)
/// costs the transports to that peer, not all of them (docs/scale.md measured a scan of every
/// entry per VPN packet over stcpr). Not thread-safe: `TransportManager.lock` guards it.
struct TransportTable {
    private var byID: [String: TransportEntry] = [:]
    private var byRemote: [PublicKey: [TransportEntry]] = [:]

    subscript(id: String) -> TransportEntry? {
        get { byID[id] }
        set {
            if let old = byID[id] { unindex(old) }
            byID[id] = newValue
            if let newValue { byRemote[newValue.remote, default: []].append(newValue) }
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: String) -> TransportEntry? {
        guard let old = byID.removeValue(forKey: id) else { return nil }
        unindex(old)
        return old
    }

    mutating func removeAll() {
        byID.removeAll()
        byRemote.removeAll()
    }

    var values: Dictionary<String, TransportEntry>.Values { byID.values }

    /// The transports to `remote` (any type, any state).
    func to(_ remote: PublicKey) -> [TransportEntry] { byRemote[remote] ?? [] }

    private mutating func unindex(_ entry: TransportEntry) {
        guard var list = byRemote[entry.remote] else { return }
        list.removeAll { $0 === entry }
        byRemote[entry.remote] = list.isEmpty ? nil : list
    }
}
