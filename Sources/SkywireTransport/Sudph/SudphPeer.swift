import Logging
import NIOCore
import SkywireCrypto
import SkywireIO
import SkywireWire

/// One sudph association with a peer (PROTOCOL.md §4): the Noise session with explicit
/// counters and a replay window, the reliability layer for mux frames, and the `FrameLink`
/// its `MuxConnection` writes to. Confined to the endpoint's event loop.
final class SudphPeer: FrameLink {
    /// Largest DATA payload per frame over sudph (§5).
    static let maxDataPayload = 1200
    /// Reliable frames beyond the ARQ's send buffer wait here; streams stop when this is long.
    static let overflowHighWatermark = 256
    /// Bytes of answers the peer made us queue in the overflow (every frame but DATA and
    /// DATAGRAM: PONG, WINDOW, OPEN_REJECT, ...) above which its reliable records are dropped
    /// unread (it resends them once it acknowledges): sudph's back-pressure on a peer that sends
    /// PINGs and never acknowledges (one UDP socket serves every peer, so it cannot stop reading).
    static let overflowControlPauseBytes = 64 * 1024
    /// Hard bound on the overflow's cost (bytes plus `overflowEntryCost` per frame): the peer is
    /// closed beyond it. DATA is bounded below it by `overflowHighWatermark` plus one send buffer
    /// per stream (64 KiB × 512 streams = 32 MiB), answers by `overflowControlPauseBytes`.
    static let maxOverflowCost = 48 << 20
    /// Heap per queued frame besides its bytes (a right-sized ByteBuffer storage and its slot).
    static let overflowEntryCost = 64

    /// REKEY_AFTER_MESSAGES (§4.3).
    static let rekeyAfterMessages: UInt64 = 1 << 60

    struct Session {
        let localIndex: UInt32
        let remoteIndex: UInt32
        /// Our sending key, its phase bit, when it was made and how much it sealed (§4.3).
        var sendKey: NoiseTransportKey
        var sendPhase: UInt8 = 0
        var sendKeyBorn: NIODeadline = .now()
        var sendKeyMessages: UInt64 = 0
        /// The peer's current key and phase; the previous key stays for late packets.
        var receiveKey: NoiseTransportKey
        var receivePhase: UInt8 = 0
        var previousReceiveKey: NoiseTransportKey?
        /// The first counter accepted under `receiveKey`: older counters of the other phase
        /// belong to `previousReceiveKey`.
        var phaseStartCounter: UInt64 = 0
        var rotations: UInt64 = 0
        var sendCounter: UInt64 = 0
        var replay = ReplayWindow()
        /// The responder may send only once the initiator's first data packet arrived (§4.3). A
        /// responder's session is built only then (SudphEndpoint+Handshake), so sessions in use
        /// are confirmed; the flag keeps `reserve` refusing to seal for one that is not.
        var confirmed: Bool

        init(localIndex: UInt32, remoteIndex: UInt32, sendKey: NoiseTransportKey, receiveKey: NoiseTransportKey,
             confirmed: Bool) {
            self.localIndex = localIndex
            self.remoteIndex = remoteIndex
            self.sendKey = sendKey
            self.receiveKey = receiveKey
            self.confirmed = confirmed
        }

        /// The key for a packet of `phase` and `counter`, and whether it is the peer's next key.
        func receiveKey(phase: UInt8, counter: UInt64) throws -> (NoiseTransportKey, isNext: Bool) {
            if phase == receivePhase { return (receiveKey, false) }
            if let previous = previousReceiveKey, counter < phaseStartCounter { return (previous, false) }
            return (try receiveKey.rekeyed(), true)
        }

        /// Rotates the sending key with Noise's REKEY (§4.2, §11.3) when it is old or used up.
        mutating func rotateSendKeyIfDue(now: NIODeadline, interval: TimeAmount) throws -> Bool {
            guard sendKeyMessages >= SudphPeer.rekeyAfterMessages || now - sendKeyBorn >= interval else { return false }
            sendKey = try sendKey.rekeyed()
            sendPhase ^= SudphLayout.keyPhaseMask
            sendKeyBorn = now
            sendKeyMessages = 0
            rotations += 1
            return true
        }
    }

    let endpoint: SudphEndpoint
    let remote: PublicKey
    private(set) var address: SocketAddress
    let isInitiator: Bool
    let counters = LinkCounters()
    private weak var entry: TransportEntry?
    private var handshake: NoiseHandshake?
    private var handshakeIndex: UInt32 = 0
    private var handshakePacket: ByteBuffer?
    private var handshakeTask: Scheduled<Void>?
    /// When initiations are resent and when the dial gives up (§4.3; faster after a punch).
    private var handshakeSchedule = SudphHandshakeSchedule.normal(limitSeconds: 10)
    private var handshakeSends = 0
    private var handshakeDeadline: NIODeadline?
    /// A punched dial: other ports of the target's IP that sent us a probe (its NAT mapped the
    /// probes elsewhere than the punched address); initiations go there too (at most 4).
    private var probeTargets: [SocketAddress] = []
    static let maxProbeTargets = 4
    /// Initiator: the Initiation without its MACs, the responder's mac1 and cookie keys, the
    /// mac1 last sent, and the cookie from a Cookie Reply (PROTOCOL.md §2.1).
    private var initiation: [UInt8] = []
    private var remoteMac1Key: [UInt8] = []
    private var remoteCookieKey: [UInt8] = []
    private var sentMac1: [UInt8] = []
    private var cookie: [UInt8]?
    /// The data-phase state, shared with datapath threads (`SudphDatagramRoute`).
    private(set) var sessionBox: SudphSessionBox?
    private(set) var connection: MuxConnection?
    private let arq = ReliableChannel()
    private var overflow = CircularBuffer<ByteBuffer>()
    /// Reused list of the frames one segment put in order (no array allocated per segment).
    private var inOrderFrames: [ByteBuffer] = []
    /// The storage the first in-order frame of a segment is copied into, reused while nothing
    /// else holds it (`ByteBuffer.clear` allocates anew when a stream kept a slice of it): no
    /// allocation per received frame on a bulk transfer.
    private var receivedFrame: ByteBuffer?
    /// The overflow's cost (`maxOverflowCost`) and the bytes of its answer frames.
    private var overflowCost = 0
    private var overflowControlBytes = 0
    /// The reliable channel's timer (RTO, delayed ACK) on the endpoint's loop, and its deadline.
    private var timer: LoopTimer?
    private var timerDeadline: WireTime?
    private var flushScheduled = false
    /// The task `scheduleFlush` queues, made once (not a closure per received batch).
    private lazy var flushTask: @Sendable () -> Void = { [owner = LoopWeak(self)] in
        guard let peer = owner.value else { return }
        peer.flushScheduled = false
        peer.flush()
    }
    private var closed = false
    /// REKEY_AFTER_TIME as configured (§4.3), read once.
    private let rekeyInterval: TimeAmount
    private var wasWritable = true

    private init(endpoint: SudphEndpoint, remote: PublicKey, address: SocketAddress, isInitiator: Bool,
                 entry: TransportEntry?) {
        self.endpoint = endpoint
        self.remote = remote
        self.address = address
        self.isInitiator = isInitiator
        self.entry = entry
        self.rekeyInterval = endpoint.manager.settings.sudphRekeyInterval
    }

    var logger: Logger { endpoint.logger }

    var now: WireTime { endpoint.wireTime() }

    // MARK: Initiator

    static func dial(endpoint: SudphEndpoint, remote: PublicKey, address: SocketAddress,
                     entry: TransportEntry, schedule: SudphHandshakeSchedule) throws -> SudphPeer {
        let peer = SudphPeer(endpoint: endpoint, remote: remote, address: address, isInitiator: true, entry: entry)
        peer.handshakeSchedule = schedule
        let hs = try NoiseHandshake.ikInitiator(identity: endpoint.manager.noiseIdentity(), remote: remote)
        let stamp = entry.handshakeTimestamp()
        let msg1 = try hs.writeMessage(payload: IdentityClaim.encode(endpoint.manager.localKey, timestamp: stamp))
        peer.handshake = hs
        peer.handshakeIndex = endpoint.newIndex()
        peer.initiation = try msg1.withUnsafeBytes { try SudphPacket.initiation(senderIndex: peer.handshakeIndex, message: $0) }
        let remoteStatic = try remote.x25519()
        peer.remoteMac1Key = HandshakeMAC.mac1Key(responderStatic: remoteStatic)
        peer.remoteCookieKey = HandshakeMAC.cookieKey(responderStatic: remoteStatic)
        peer.sealInitiation()
        endpoint.peersByIndex[peer.handshakeIndex] = peer
        return peer
    }

    /// (Re)builds the Initiation packet with its mac1 and, once we hold a cookie, mac2 (§2.1).
    private func sealInitiation() {
        var packet = initiation
        SudphHandshakeMACs.seal(initiation: &packet, mac1Key: remoteMac1Key, cookie: cookie)
        sentMac1 = packet.withUnsafeBytes { SudphHandshakeMACs.mac1(of: $0) }
        handshakePacket = ByteBuffer(bytes: packet)
    }

    /// A Cookie Reply to our Initiation (the responder is under load): keep the cookie and
    /// resend the Initiation with mac2 at once (§2.1). A reply that does not open is dropped.
    func receiveCookieReply(_ packet: ByteBuffer, nonce: Range<Int>, sealedCookie: Range<Int>, localIndex: UInt32,
                            from: SocketAddress) {
        guard isInitiator, handshake != nil, handshakePacket != nil, localIndex == handshakeIndex,
              let opened = packet.withUnsafeReadableBytes({
                  SudphHandshakeMACs.openCookieReply($0, nonce: nonce, sealedCookie: sealedCookie,
                                                     cookieKey: remoteCookieKey, mac1: sentMac1)
              }) else {
            endpoint.drop("unexpected or forged cookie reply from \(from)")
            return
        }
        let first = cookie == nil
        cookie = opened
        sealInitiation()
        logger.debug("sudph: \(remote.short) is under load: got a cookie, resending the initiation with mac2")
        guard first, let packet = handshakePacket else { return }
        endpoint.send(packet, to: from)
        counters.addSent(packet.readableBytes)
        endpoint.flush()
    }

    func start() {
        handshakeDeadline = .now() + handshakeSchedule.limit
        sendHandshake()
    }

    private func sendHandshake() {
        guard !closed, let packet = handshakePacket else { return }
        if let deadline = handshakeDeadline, NIODeadline.now() >= deadline {
            close(reason: "no handshake response from \(TransportManager.format(address)) \(handshakeSchedule.summary)")
            return
        }
        for target in [address] + probeTargets {
            endpoint.send(packet, to: target)
            counters.addSent(packet.readableBytes)
        }
        endpoint.flush()
        handshakeSends += 1
        // The next resend, or the deadline when that comes first (the dial then fails on time).
        var next = handshakeSchedule.delay(afterSend: handshakeSends)
        if let deadline = handshakeDeadline { next = min(next, max(.zero, deadline - NIODeadline.now())) }
        handshakeTask = endpoint.eventLoop.scheduleTask(in: next) { [weak self] in self?.sendHandshake() }
    }

    /// Whether a probe from `from` belongs to this dial: a punched handshake in progress to the
    /// same IP address.
    func awaitsProbe(from: SocketAddress) -> Bool {
        guard isInitiator, !closed, handshakePacket != nil, handshakeSchedule == .punched else { return false }
        return from.ipAddress == address.ipAddress
    }

    /// A punched dial got a probe from another port of the target's IP: its NAT mapped the
    /// target's probes to that port, so the handshake goes there too, at once and on every resend.
    func learnProbeTarget(_ from: SocketAddress) {
        guard awaitsProbe(from: from), from != address, !probeTargets.contains(from),
              probeTargets.count < Self.maxProbeTargets, let packet = handshakePacket else { return }
        probeTargets.append(from)
        logger.debug("sudph: probe from \(TransportManager.format(from)): sending the handshake there too")
        endpoint.send(packet, to: from)
        counters.addSent(packet.readableBytes)
        endpoint.flush()
    }

    func receiveResponse(_ message: [UInt8], senderIndex: UInt32, localIndex: UInt32, from: SocketAddress) {
        guard isInitiator, let hs = handshake, localIndex == handshakeIndex else {
            endpoint.drop("unexpected response from \(from)")
            return
        }
        do {
            _ = try hs.readMessage(message)
            let (send, receive) = try hs.split()
            guard let sk = send.key, let rk = receive.key else { throw NoiseError.missingKey("split") }
            sessionBox = SudphSessionBox(Session(localIndex: localIndex, remoteIndex: senderIndex, sendKey: sk,
                                                 receiveKey: rk, confirmed: true), address: from)
        } catch {
            // A forged or corrupted response: keep waiting for the real one.
            endpoint.drop("bad handshake response from \(from): \(error)")
            return
        }
        counters.addReceived(message.count + SudphLayout.responseHeaderSize)
        handshake = nil
        handshakePacket = nil
        handshakeTask?.cancel()
        address = from
        // The keepalive confirms the session to the responder (§4.3).
        sendRecord(UnsafeRawBufferPointer(start: nil, count: 0), now: .now())
        endpoint.flush()
        guard let entry, let conn = entry.established(link: self, on: endpoint.eventLoop,
                                                      remoteAddress: TransportManager.format(from)) else {
            close(reason: "transport no longer wanted")
            return
        }
        connection = conn
    }

    // MARK: Responder

    /// The peer of a confirmed responder handshake (SudphEndpoint+Handshake): built only once the
    /// initiator's first data packet authenticated (PROTOCOL.md §4.3).
    static func confirmedResponder(endpoint: SudphEndpoint, remote: PublicKey, address: SocketAddress,
                                   session: Session) -> SudphPeer {
        let peer = SudphPeer(endpoint: endpoint, remote: remote, address: address, isInitiator: false, entry: nil)
        var confirmed = session
        confirmed.confirmed = true
        peer.sessionBox = SudphSessionBox(confirmed, address: address)
        peer.counters.addReceived(SudphLayout.initiationPacketSize)
        peer.counters.addSent(SudphLayout.responsePacketSize)
        return peer
    }

    /// Registers a confirmed responder peer: its index, its transport entry and mux connection.
    func register() {
        guard let box = sessionBox else { return }
        endpoint.peersByIndex[box.localIndex] = self
        let manager = endpoint.manager
        let created = TransportEntry(manager: manager, id: manager.newID(), remote: remote, type: .sudph,
                                     host: address.ipAddress ?? "?", port: address.port ?? 0, initiator: false, wanted: false)
        guard manager.registerInbound(created) else {
            close(reason: "visor stopping")
            return
        }
        entry = created
        connection = created.established(link: self, on: endpoint.eventLoop, remoteAddress: TransportManager.format(address))
    }

    // MARK: Data

    func receiveData(_ packet: ByteBuffer, localIndex: UInt32, counter: UInt64, keyPhase: UInt8,
                     ciphertext: Range<Int>, from: SocketAddress) {
        guard let box = sessionBox, box.localIndex == localIndex else {
            endpoint.drop("data for a stale index from \(from)")
            return
        }
        let plainLength: Int
        let key: NoiseTransportKey
        let isNextKey: Bool
        do {
            guard let pick = try box.receiveKey(counter: counter, phase: keyPhase) else {
                endpoint.drop("replayed or too old counter \(counter) from \(from)")
                return
            }
            (key, isNextKey) = pick
            let out = endpoint.plaintext
            plainLength = try packet.withUnsafeReadableBytes { bytes in
                let header = UnsafeRawBufferPointer(rebasing: bytes[0..<SudphLayout.dataHeaderSize])
                let ct = UnsafeRawBufferPointer(rebasing: bytes[ciphertext])
                return try key.open(counter: counter, ad: header, ciphertext: ct, into: out)
            }
        } catch {
            endpoint.drop("data that fails authentication from \(from)")
            return
        }
        guard box.commitReceived(counter: counter, phase: keyPhase, key: key, isNext: isNextKey) else {
            endpoint.drop("replayed counter \(counter) from \(from)")
            return
        }
        if isNextKey { logger.debug("sudph: \(remote.short) rotated its key (phase \(keyPhase))") }
        counters.addReceived(packet.readableBytes)
        if from != address {   // the peer roamed; answer where it is now
            address = from
            box.currentAddress = from
        }
        guard plainLength > 0 else { return }   // keepalive
        handleRecord(UnsafeMutableRawBufferPointer(rebasing: endpoint.plaintext[0..<plainLength]))
        scheduleFlush()
    }

    private func handleRecord(_ mutablePlain: UnsafeMutableRawBufferPointer) {
        let plain = UnsafeRawBufferPointer(mutablePlain)
        let record: SudphRecord
        do {
            record = try SudphRecord.decode(plain)
        } catch {
            logger.debug("sudph: bad record from \(remote.short): \(error)")
            return
        }
        switch record {
        case .unreliable(let range):
            if deliverToSink(UnsafeMutableRawBufferPointer(rebasing: mutablePlain[range]), headroom: range.lowerBound) { return }
            deliverFrame(UnsafeRawBufferPointer(rebasing: plain[range]))
        case .segment(let seq, let range):
            guard overflowControlBytes <= Self.overflowControlPauseBytes else {
                // Back-pressure: unacknowledged and unread; the peer resends after it acknowledges.
                RefusalLog.shared.note(.segmentsDropped, "sudph \(remote.short) does not acknowledge "
                                           + "\(overflowControlBytes) bytes of answers; segment \(seq) dropped", logger: logger)
                return
            }
            // Frames now in order, handed to the mux after the ARQ returns (it must not be re-entered).
            // (`inOrderFrames` is always left empty, with its capacity, below.)
            var frames = inOrderFrames
            inOrderFrames = []
            var first = receivedFrame.take()
                ?? ByteBufferAllocator().buffer(capacity: SudphRecordLayout.maxSegmentFrameSize)
            var firstFilled = false
            arq.receiveSegment(seq: seq, frame: UnsafeRawBufferPointer(rebasing: plain[range]), now: endpoint.receiveTime) { frame in
                if firstFilled {
                    frames.append(ByteBuffer(bytes: frame))
                } else {
                    first.clear(minimumCapacity: frame.count)
                    first.writeBytes(frame)
                    firstFilled = true
                }
            }
            if firstFilled { connection?.receive(frame: first) }
            for f in frames { connection?.receive(frame: f) }
            frames.removeAll(keepingCapacity: true)
            inOrderFrames = frames
            receivedFrame = first
        case .ack(let ack):
            arq.receiveAck(ack, now: endpoint.receiveTime)
            drainOverflow()
        }
    }

    /// A DATAGRAM frame for a port with a `DatagramSink` goes straight to it, in place, without
    /// the mux session (vpn datapath); false when the frame is anything else.
    private func deliverToSink(_ frame: UnsafeMutableRawBufferPointer, headroom: Int) -> Bool {
        endpoint.sinks.deliver(frame, headroom: headroom, from: remote, batch: &endpoint.sinkBatch)
    }

    private func deliverFrame(_ bytes: UnsafeRawBufferPointer) {
        connection?.receive(frame: ByteBuffer(bytes: bytes))
    }

    // MARK: FrameLink

    var maxDataPayload: Int { Self.maxDataPayload }

    var isWritable: Bool { overflow.count < Self.overflowHighWatermark }

    func send(frame: ByteBuffer, reliable: Bool) {
        guard !closed else { return }
        if !reliable {
            var record = [UInt8]()
            record.reserveCapacity(frame.readableBytes + 1)
            SudphRecord.appendUnreliableHeader(to: &record)
            record.append(contentsOf: frame.readableBytesView)
            record.withUnsafeBytes { sendRecord($0, now: .now()) }
            return
        }
        if overflow.isEmpty, (try? frame.withUnsafeReadableBytes { try arq.enqueue($0) }) != nil {
            return
        }
        // A right-sized copy: `frame` may share a larger storage (the connection's scratch buffer).
        overflow.append(ByteBuffer(bytes: frame.readableBytesView))
        overflowCost += Self.cost(frame)
        if Self.isControl(frame) { overflowControlBytes += frame.readableBytes }
        if overflowCost > Self.maxOverflowCost {
            let reason = "peer does not acknowledge: \(overflow.count) frames (\(overflowCost) bytes) queued "
                + "(limit \(Self.maxOverflowCost))"
            RefusalLog.shared.note(.outboundOverflow, "sudph \(remote.short): \(reason)", logger: logger)
            close(reason: reason)
        }
    }

    private static func cost(_ frame: ByteBuffer) -> Int { frame.readableBytes + overflowEntryCost }

    /// An answer the peer can make us queue by sending (not DATA or DATAGRAM).
    private static func isControl(_ frame: ByteBuffer) -> Bool {
        guard let type = frame.getInteger(at: frame.readerIndex, as: UInt8.self) else { return false }
        return type != MuxFrameType.data.rawValue && type != MuxFrameType.datagram.rawValue
    }

    /// The ARQ starts over on the new path (`ReliableChannel.pathChanged`) and resends now; the
    /// peer learns our new address from the first of these records.
    func pathChanged() {
        guard !closed else { return }
        arq.pathChanged(now: now)
        flush()
    }

    func flush() {
        guard !closed else { return }
        let clock = NIODeadline.now()
        let t = endpoint.wireTime(clock)
        arq.poll(now: t) { record in sendRecord(record, now: clock) }
        endpoint.flush()
        rearmTimer(now: t)
    }

    func close(reason: String) {
        guard !closed else { return }
        closed = true
        logger.debug("sudph: closing \(remote.short): \(reason); overflow \(overflow.count), timer armed \(timer != nil), next timeout \(arq.nextTimeout.map { Int64($0) - Int64(now) } ?? -1) ns, arq \(arq.statistics)")
        handshakeTask?.cancel()
        if let timer {
            let loop = endpoint.datapathLoop
            if loop.inEventLoop { loop.cancelTimer(timer) } else { loop.execute { loop.cancelTimer(timer) } }
            self.timer = nil
        }
        if let box = sessionBox {
            box.closed.store(true, ordering: .releasing)
            if endpoint.peersByIndex[box.localIndex] === self { endpoint.peersByIndex[box.localIndex] = nil }
        }
        if endpoint.peersByIndex[handshakeIndex] === self { endpoint.peersByIndex[handshakeIndex] = nil }
        if !isInitiator, let box = sessionBox { endpoint.responders.liveClosed(key: remote, index: box.localIndex) }
        let conn = connection
        connection = nil
        conn?.linkClosed(reason: reason)
        entry?.linkClosed(reason: reason)
        entry = nil
    }

    // MARK: Helpers

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        endpoint.eventLoop.execute(flushTask)
    }

    private func drainOverflow() {
        while let frame = overflow.first {
            let ok = (try? frame.withUnsafeReadableBytes { try arq.enqueue($0) }) != nil
            guard ok else { break }
            overflowCost -= Self.cost(frame)
            if Self.isControl(frame) { overflowControlBytes -= frame.readableBytes }
            overflow.removeFirst()
        }
        let writable = isWritable
        if writable && !wasWritable { connection?.linkWritabilityChanged() }
        wasWritable = writable
    }

    /// Encrypts one record into a data packet and queues it (§4.1); `now` decides key rotation.
    private func sendRecord(_ record: UnsafeRawBufferPointer, now: NIODeadline) {
        guard let box = sessionBox else { return }
        let r: SudphSessionBox.Reservation
        do {
            guard let reserved = try box.reserve(count: 1, allowUnconfirmed: isInitiator || record.count == 0, now: now,
                                                 rekeyInterval: rekeyInterval) else { return }
            r = reserved
        } catch {
            close(reason: error.description)
            return
        }
        if r.rotated {
            logger.debug("sudph: rotated our key to \(remote.short) (phase \(r.phase), rotation \(r.rotations))")
        }
        let counter = r.first
        let total = SudphLayout.dataHeaderSize + record.count + SudphLayout.tagSize
        endpoint.send(to: address) { out in
            guard total <= out.count,
                  (try? SudphPacket.writeDataHeader(receiverIndex: r.remoteIndex, counter: counter, keyPhase: r.phase, into: out)) != nil
            else { return 0 }
            let header = UnsafeRawBufferPointer(rebasing: out[0..<SudphLayout.dataHeaderSize])
            let body = UnsafeMutableRawBufferPointer(rebasing: out[SudphLayout.dataHeaderSize..<total])
            guard (try? r.key.seal(counter: counter, ad: header, plaintext: record, into: body)) != nil else { return 0 }
            return total
        }
        counters.addSent(total)
    }

    /// Arms the loop timer for the channel's next deadline, unless it is already armed no later;
    /// `t` is the wire time now. On the endpoint's loop.
    private func rearmTimer(now t: WireTime) {
        let loop = endpoint.datapathLoop
        guard let deadline = arq.nextTimeout else {
            if let timer { loop.cancelTimer(timer) }
            timer = nil
            timerDeadline = nil
            return
        }
        if let current = timerDeadline, current <= deadline, timer != nil { return }
        if let timer { loop.cancelTimer(timer) }
        timerDeadline = deadline
        let delay = deadline > t ? TimeAmount.nanoseconds(Int64(deadline - t)) : .zero
        timer = loop.setTimer(in: delay) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            self.flush()
        }
    }
}
