import NIOCore
import SkywireCrypto
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// The visor side of the UDP rendezvous (docs/discovery.md, PROTOCOL.md §4.5) on the sudph socket:
/// a signed BIND now and every 15 s, BIND_OK noted, PUNCH answered with probe datagrams. BIND_OK
/// and PUNCH are trusted only from the rendezvous address this endpoint binds to and only when
/// they echo the random token of one of its latest BINDs (an off-path attacker never sees one).
extension SudphEndpoint {
    /// Probe datagrams sent to a PUNCH's peer address (one byte 0x00: the peer drops it unparsed;
    /// it only opens this side's NAT mapping towards the peer).
    static let punchProbes = 3
    /// BIND tokens accepted: those of the latest 4 BINDs (the service answers with the token of
    /// the last BIND it received: one sent meanwhile, or up to 3 lost in a row, change nothing).
    static let bindTokensKept = 4

    /// Binds at `address` now and every `interval`; replaces an earlier rendezvous.
    func startRendezvous(_ address: SocketAddress, keyPair: KeyPair, interval: TimeAmount) {
        eventLoop.execute {
            self.bindTask?.cancel()
            self.bindSettings = (keyPair, interval)
            self.rendezvous = address
            self.bindTask = self.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in
                self.sendBind(keyPair: keyPair)
            }
        }
    }

    /// BINDs again now and restarts the interval from here (the uplink changed: the service
    /// and the NAT learn the new address); nothing when no rendezvous is bound. Any thread.
    func rebindRendezvous() {
        eventLoop.execute {
            guard let to = self.rendezvous, let settings = self.bindSettings else { return }
            self.startRendezvous(to, keyPair: settings.keyPair, interval: settings.interval)
        }
    }

    /// On `eventLoop`.
    private func sendBind(keyPair: KeyPair) {
        guard let to = rendezvous else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ms = UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
        let pk = keyPair.publicKey.bytes
        let token = SecureRandom.bytes(SudphRendezvous.tokenSize)
        bindTokens = Array(([token] + bindTokens).prefix(Self.bindTokensKept))
        let sig = keyPair.sign(SudphRendezvous.bindSignedBytes(publicKey: pk, timestampMs: ms, token: token))
        sendRaw(SudphRendezvous.bind(publicKey: pk, timestampMs: ms, token: token, signature: sig).encoded(), to: to)
        flush()
    }

    private func sendRaw(_ bytes: [UInt8], to address: SocketAddress) {
        send(to: address) { slot in
            bytes.withUnsafeBytes { b in
                guard b.count <= slot.count else { return 0 }
                slot.copyMemory(from: b)
                return b.count
            }
        }
    }

    /// A datagram whose first byte is a rendezvous type (0x10...0x12). On `eventLoop`.
    func receiveRendezvous(_ data: ByteBuffer, from: SocketAddress) {
        guard let bound = rendezvous, bound == from else {
            drop("rendezvous datagram from \(from), which is not the bound rendezvous")
            return
        }
        let message: SudphRendezvous
        do {
            message = try SudphRendezvous.parse(Array(data.readableBytesView))
        } catch {
            drop("malformed rendezvous datagram from \(from): \(error)")
            return
        }
        switch message {
        case .bindOK(let token, _), .punch(let token, _, _):
            guard bindTokens.contains(where: { SudphRendezvous.tokensEqual($0, token) }) else {
                drop("rendezvous datagram from \(from) without the token of a recent BIND (forged or stale)")
                return
            }
        case .bind:
            break
        }
        switch message {
        case .bindOK(_, let observed):
            if observed != observedAddress {
                observedAddress = observed
                logger.info("sudph: the rendezvous observes this visor at \(observed)")
            }
        case .punch(_, let peerKey, let peer):
            guard let address = Self.socketAddress(peer) else {
                drop("PUNCH with an unusable address \(peer)")
                return
            }
            logger.debug("sudph: PUNCH, probing \(peer)", metadata: ["pk": "\(peerKey.prefix(4).map { String($0, radix: 16) }.joined())"])
            for _ in 0..<Self.punchProbes { sendRaw([0], to: address) }
            flush()
        case .bind:
            drop("BIND from \(from): visors do not answer BIND")
        }
    }

    /// A probe (one byte 0x00) a PUNCHed peer sent us. When a punched dial to that peer's IP is
    /// in progress and the probe came from another port (its NAT mapped the probes there, e.g.
    /// because our first initiation reached the NAT before the probes left), the dial sends its
    /// handshake to that port too. Otherwise the probe is dropped. On `eventLoop`.
    func receiveProbe(from: SocketAddress) {
        var seen = Set<ObjectIdentifier>()
        var used = false
        for peer in peersByIndex.values where seen.insert(ObjectIdentifier(peer)).inserted && peer.awaitsProbe(from: from) {
            peer.learnProbeTarget(from)
            used = true
        }
        if !used { drop("probe from \(from)") }
    }

    static func socketAddress(_ a: RendezvousAddress) -> SocketAddress? {
        let host: String
        if a.address.count == 4 {
            host = a.address.map(String.init).joined(separator: ".")
        } else {
            host = stride(from: 0, to: 16, by: 2).map { String(UInt16(a.address[$0]) << 8 | UInt16(a.address[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return try? SocketAddress(ipAddress: host, port: Int(a.port))
    }
}
