#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import SkywireCrypto
import SkywireSystem

/// stcpr (PROTOCOL.md §3) on a connected, non-blocking TCP descriptor serviced by an
/// `EpollEventLoop`: the Noise IK handshake, then one 2-byte-length-prefixed Noise message per
/// mux frame. Owns the descriptor; confined to its loop.
final class RawStcprLink: FrameLink {
    /// Decides, after the handshake, whether the peer may stay, and builds its mux connection.
    struct Hooks {
        var established: (_ remote: PublicKey, _ link: RawStcprLink) -> MuxConnection?
        /// Called once when the link ends, with the reason.
        var closed: (_ reason: String) -> Void
        /// Responder: the listener's admission (mac1, unconfirmed-handshake cap, replays); nil
        /// admits every valid handshake (tests).
        var gate: StcprHandshakeGate? = nil
    }

    /// Largest DATA payload per frame over stcpr (PROTOCOL.md §5).
    static let maxDataPayload = 16 * 1024
    /// Queued-but-unsent bytes above which streams stop writing.
    static let highWatermark = 1 << 20
    /// Initial capacity of the record buffer (grows with bulk data, kept between writes).
    static let outboundCapacity = 2048

    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    private var session: StcprSession
    private let hooks: Hooks
    private let logger: Logger
    private var timeoutTask: Scheduled<Void>?
    private(set) var connection: MuxConnection?
    var remoteKey: PublicKey? { session.remoteKey }
    /// Bytes read and not yet parsed into records.
    private var inbound: ByteBuffer
    /// Encrypted records not yet written.
    private var outbound: ByteBuffer
    private var blocked = false
    private let allocator = ByteBufferAllocator()
    private let readChunk = 16 * 1024
    /// A responder holding one of the gate's unconfirmed-handshake slots.
    private var holdsHandshakeSlot = false
    let counters = LinkCounters()

    var maxDataPayload: Int { Self.maxDataPayload }
    var isWritable: Bool { outbound.readableBytes < Self.highWatermark }

    /// Takes `socket` (connected, non-blocking) and starts the handshake: as initiator when
    /// `expectedRemote` is set (it sends message 1 now), else as responder. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, identity: NoiseStaticIdentity, expectedRemote: PublicKey?,
         timestamp: TAI64N? = nil, handshakeTimeout: TimeAmount, logger: Logger, hooks: Hooks) throws {
        precondition(loop.inEventLoop)
        self.loop = loop
        descriptor = socket
        self.hooks = hooks
        self.logger = logger
        inbound = allocator.buffer(capacity: 64 * 1024)
        outbound = allocator.buffer(capacity: Self.outboundCapacity)
        session = try StcprSession(identity: identity, expectedRemote: expectedRemote, timestamp: timestamp)
        let firstMessage = try session.start()
        // The loop's watch holds the link until `finish` unwatches it.
        try loop.watch(socket.raw, interest: .read) { readiness in self.ready(readiness) }
        timeoutTask = loop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [weak self] in
            self?.fail("handshake not complete in time", level: .info)
        }
        if let firstMessage { writeRecord(firstMessage); flush() }
    }

    // MARK: FrameLink

    func send(frame: ByteBuffer, reliable: Bool) {
        do {
            guard try session.seal(frame, into: &outbound) else { return }
        } catch {
            fail("cannot encrypt: \(error)")
            return
        }
        counters.addSent(StcprSession.recordSize(ofFrame: frame.readableBytes))
    }

    func flush() {
        guard !blocked, outbound.readableBytes > 0, descriptor.isOpen else { return }
        let wasWritable = isWritable
        do {
            while outbound.readableBytes > 0 {
                guard try outbound.sendReadable(to: descriptor.raw, call: "send(stcpr)") else {
                    blocked = true
                    try loop.setInterest(descriptor.raw, [.read, .write])
                    break
                }
            }
        } catch {
            fail("\(error)", level: .info)
            return
        }
        if outbound.readableBytes == 0 { outbound.clear() }
        if !wasWritable && isWritable { connection?.linkWritabilityChanged() }
    }

    func close(reason: String) {
        finish(reason: reason)
    }

    // MARK: Events

    private func ready(_ readiness: EpollEventLoop.Readiness) {
        if readiness.writable && blocked {
            blocked = false
            try? loop.setInterest(descriptor.raw, .read)
            flush()
        }
        if readiness.readable || readiness.hangup { readAvailable() }
    }

    private func readAvailable() {
        while descriptor.isOpen {
            let outcome: DescriptorRead
            do {
                outcome = try inbound.appendRead(from: descriptor.raw, count: readChunk, call: "read(stcpr)")
            } catch {
                fail("\(error)", level: .info)
                return
            }
            processRecords()
            if outcome == .endOfFile { finish(reason: "connection closed by peer"); return }
            guard outcome == .bytes(readChunk) else { break }  // would block, or a short read took all
        }
        connection?.flushIfNeeded()
    }

    // MARK: Records

    /// Handles every complete record in `inbound`.
    private func processRecords() {
        while inbound.readableBytes >= 2, descriptor.isOpen {
            let length = Int(inbound.getInteger(at: inbound.readerIndex, as: UInt16.self)!)
            guard inbound.readableBytes >= 2 + length else { break }
            inbound.moveReaderIndex(forwardBy: 2)
            let record = inbound.readSlice(length: length)!
            counters.addReceived(2 + length)
            handle(record)
        }
        if inbound.readableBytes == 0 {
            inbound.clear()
        } else if inbound.readerIndex > inbound.capacity / 2 {
            inbound.discardReadBytes()
        }
    }

    private func handle(_ record: ByteBuffer) {
        // A responder checks mac1 and takes an unconfirmed-handshake slot before any DH (§3).
        if session.awaitsInitiation {
            guard session.checkInitiation(record) else {
                let sized = record.readableBytes == StcprSession.initiationRecordLength
                refuse(sized ? .mac1 : .malformed, "message 1 of \(record.readableBytes) bytes\(sized ? " without a valid mac1" : "")")
                return
            }
        }
        if session.awaitsInitiation, let gate = hooks.gate {
            guard gate.reserve() else {
                refuse(.pendingFull, "\(StcprHandshakeGate.maxUnconfirmed) handshakes await confirmation")
                return
            }
            holdsHandshakeSlot = true
        }
        let received: StcprSession.Received
        do {
            received = try session.receive(record, allocator: allocator)
        } catch {
            if !session.isEstablished && !session.isInitiator {
                refuse(.handshake, "from \(remoteKey?.hex ?? "the peer"): \(error)")
                return
            }
            let what = session.isEstablished ? "transport message" : "handshake"
            fail("\(what) from \(remoteKey?.hex ?? "the peer") rejected: \(error)", level: .warning)
            return
        }
        switch received {
        case .frame(let frame):
            connection?.receive(frame: frame)
        case .handshakeComplete(let remote, let timestamp?, let reply):
            // Responder: message 2 goes out unless the stamp is a replay; the transport exists
            // only once the initiator confirms (the handshake timeout keeps running until then).
            if let gate = hooks.gate, !gate.admit(remote, timestamp: timestamp) {
                refuse(.replay, "message 1 from \(remote.hex) stamped \(timestamp) is not newer than the last accepted")
                return
            }
            writeRecord(reply)
            flush()
        case .handshakeComplete(let remote, nil, let confirmation):
            // Initiator: the confirmation goes ahead of anything the new connection sends.
            timeoutTask?.cancel()
            writeRecord(confirmation)
            establish(remote, refused: "connection no longer wanted")
        case .confirmed:
            timeoutTask?.cancel()
            releaseHandshakeSlot()
            guard let remote = remoteKey else { return }
            establish(remote, refused: "peer \(remote.hex) refused")
        case .nothing:
            break
        }
    }

    private func establish(_ remote: PublicKey, refused: String) {
        connection = hooks.established(remote, self)
        guard connection != nil else {
            fail(refused, level: .info)
            return
        }
        flush()
    }

    /// A responder refuses a handshake before confirmation: counted and logged by the gate
    /// (`debug`, with a periodic `info` summary), and the connection closes.
    private func refuse(_ reason: HandshakeRefusal, _ detail: @autoclosure () -> String) {
        guard descriptor.isOpen else { return }
        if let gate = hooks.gate { gate.refuse(reason, detail()) } else { logger.debug("stcpr: handshake refused: \(detail())") }
        finish(reason: "handshake refused (\(reason.rawValue))")
    }

    private func releaseHandshakeSlot() {
        guard holdsHandshakeSlot else { return }
        holdsHandshakeSlot = false
        hooks.gate?.release()
    }

    private func writeRecord(_ message: [UInt8]) {
        StcprSession.writeHandshakeRecord(message, into: &outbound)
        counters.addSent(2 + message.count)
    }

    private func fail(_ reason: String, level: Logger.Level = .warning) {
        guard descriptor.isOpen else { return }
        logger.log(level: level, "stcpr: \(reason)")
        finish(reason: reason)
    }

    private func finish(reason: String) {
        guard session.close() else { return }
        timeoutTask?.cancel()
        releaseHandshakeSlot()
        loop.unwatch(descriptor.raw)
        descriptor.close()
        connection?.linkClosed(reason: reason)
        connection = nil
        hooks.closed(reason)
    }
}
