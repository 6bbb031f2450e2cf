import Logging
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireSystem

/// One dmsg session's TCP connection (PROTOCOL.md §7.1), client or relay side: the stcpr
/// handshake (`StcprSession`, PROTOCOL.md §2–§3; the client is the initiator, the relay the
/// responder behind `StcprHandshakeGate`), then one relay frame per Noise record. Owns the
/// descriptor; confined to its loop.
final class DmsgRecordLink {
    struct Hooks {
        /// The handshake is complete (relay: confirmed) and the peer is `remote`; false closes.
        var established: (_ remote: PublicKey) -> Bool
        var frame: (DmsgFrame) -> Void
        /// The unsent bytes fell below `writableWatermark` after having been above it.
        var writable: () -> Void = {}
        /// Called once when the link ends.
        var closed: (_ reason: String) -> Void
        /// Relay: a handshake refused before confirmation, with its `HandshakeRefusal` name.
        var refused: (_ reason: String) -> Void = { _ in }
        /// Relay: mac1, unconfirmed-handshake cap and replays (PROTOCOL.md §2.1).
        var gate: StcprHandshakeGate? = nil
    }

    /// Bytes read at a time once established, and before (a half-open socket costs little).
    static let readChunk = 16 * 1024
    static let handshakeReadChunk = 256
    /// Reads per readiness report, so one peer cannot monopolise the loop (level-triggered: it comes back).
    static let maxReadsPerWake = 16
    /// The link stops reading a peer that leaves more than this unsent (it does not read what it
    /// asked for), and reads again below `resumeReadingWatermark`.
    static let pauseReadingWatermark = 1 << 20
    static let resumeReadingWatermark = 256 * 1024
    /// Below this many unsent bytes writers may queue more (`DmsgStream.isWritable`).
    static let writableWatermark = 256 * 1024

    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    private var session: StcprSession
    private let hooks: Hooks
    private let logger: Logger
    /// Beyond this many unsent bytes the peer is closed ("does not read").
    private let maxOutbound: Int
    private var timeoutTask: Scheduled<Void>?
    private var inbound: ByteBuffer
    private var outbound: ByteBuffer
    private var blocked = false
    private var readPaused = false
    private var flushScheduled = false
    private var wasUnwritable = false
    private var holdsHandshakeSlot = false
    private let allocator = ByteBufferAllocator()
    /// When the last record arrived (the relay's idle cap).
    private(set) var lastReceived = NIODeadline.now()
    private(set) var receivedBytes: UInt64 = 0
    private(set) var sentBytes: UInt64 = 0
    private(set) var established = false
    var remoteKey: PublicKey? { session.remoteKey }
    var unsentBytes: Int { outbound.readableBytes }
    var isOpen: Bool { descriptor.isOpen }

    /// Takes `socket` (connected, non-blocking) and starts the handshake: as initiator when
    /// `expectedRemote` is set (message 1 leaves now), else as responder. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, identity: NoiseStaticIdentity, expectedRemote: PublicKey?,
         timestamp: TAI64N? = nil, handshakeTimeout: TimeAmount, maxOutbound: Int, logger: Logger, hooks: Hooks) throws {
        precondition(loop.inEventLoop)
        self.loop = loop
        descriptor = socket
        self.hooks = hooks
        self.logger = logger
        self.maxOutbound = maxOutbound
        inbound = allocator.buffer(capacity: Self.handshakeReadChunk)
        outbound = allocator.buffer(capacity: 0)
        session = try StcprSession(identity: identity, expectedRemote: expectedRemote, timestamp: timestamp)
        let first = try session.start()
        try loop.watch(socket.raw, interest: .read) { readiness in self.ready(readiness) }
        timeoutTask = loop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [weak self] in
            self?.finish(reason: "handshake not complete in time")
        }
        if let first { writeHandshake(first); flush() }
    }

    // MARK: Sending

    /// Queues `frame` as one record; it leaves with the next flush (scheduled once per loop turn).
    func send(_ frame: DmsgFrame) {
        guard descriptor.isOpen else { return }
        do {
            var plain = allocator.buffer(capacity: frame.encodedLength)
            frame.encode(into: &plain)
            guard try session.seal(plain, into: &outbound) else { return }
        } catch {
            finish(reason: "cannot encrypt: \(error)")
            return
        }
        if outbound.readableBytes > maxOutbound {
            finish(reason: "peer does not read: \(outbound.readableBytes) bytes unsent (limit \(maxOutbound))")
            return
        }
        if outbound.readableBytes >= Self.writableWatermark { wasUnwritable = true }
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.assumeIsolated().execute { [weak self] in
            guard let self else { return }
            flushScheduled = false
            flush()
        }
    }

    func flush() {
        guard !blocked, outbound.readableBytes > 0, descriptor.isOpen else { return }
        let before = outbound.readableBytes
        do {
            while outbound.readableBytes > 0 {
                guard try outbound.sendReadable(to: descriptor.raw, call: "send(dmsg)") else {
                    blocked = true
                    updateInterest()
                    break
                }
            }
        } catch {
            finish(reason: "\(error)")
            return
        }
        sentBytes += UInt64(before - outbound.readableBytes)
        if outbound.readableBytes == 0 {
            // Nothing queued: no buffer kept (the relay's memory per idle client).
            outbound = allocator.buffer(capacity: 0)
        } else if outbound.readerIndex > outbound.capacity / 2 {
            outbound.discardReadBytes()
        }
        if readPaused && outbound.readableBytes <= Self.resumeReadingWatermark {
            readPaused = false
            updateInterest()
        }
        if wasUnwritable && outbound.readableBytes < Self.writableWatermark {
            wasUnwritable = false
            hooks.writable()
        }
    }

    func close(reason: String) { finish(reason: reason) }

    // MARK: Receiving

    private func updateInterest() {
        var interest: EpollEventLoop.Interest = readPaused ? [] : .read
        if blocked { interest.insert(.write) }
        do { try loop.setInterest(descriptor.raw, interest) } catch { finish(reason: "\(error)") }
    }

    private func ready(_ readiness: EpollEventLoop.Readiness) {
        if readiness.writable && blocked {
            blocked = false
            updateInterest()
            flush()
        }
        if readPaused {
            if readiness.hangup { finish(reason: "connection closed by peer") }
            return
        }
        if readiness.readable || readiness.hangup { readAvailable() }
    }

    private func readAvailable() {
        var drained = true
        for _ in 0..<Self.maxReadsPerWake where descriptor.isOpen && !readPaused {
            let chunk = session.isEstablished ? Self.readChunk : Self.handshakeReadChunk
            let outcome: DescriptorRead
            do {
                outcome = try inbound.appendRead(from: descriptor.raw, count: chunk, call: "read(dmsg)")
            } catch {
                finish(reason: "\(error)")
                return
            }
            processRecords()
            if outcome == .endOfFile { finish(reason: "connection closed by peer"); return }
            drained = outcome != .bytes(chunk)
            guard !drained else { break }
            if outbound.readableBytes > Self.pauseReadingWatermark, descriptor.isOpen {
                readPaused = true
                updateInterest()
            }
        }
        // An idle session keeps no read buffer (the relay's memory per idle client).
        if drained && inbound.readableBytes == 0 && established { inbound = allocator.buffer(capacity: 0) }
    }

    private func processRecords() {
        while inbound.readableBytes >= 2, descriptor.isOpen,
              let length = inbound.getInteger(at: inbound.readerIndex, as: UInt16.self).map(Int.init) {
            if let expected = session.expectedHandshakeRecordLength, length != expected {
                refuse(.malformed, "handshake record of \(length) bytes (expected \(expected))")
                return
            }
            guard inbound.readableBytes >= 2 + length else { break }
            inbound.moveReaderIndex(forwardBy: 2)
            guard let record = inbound.readSlice(length: length) else { break }
            receivedBytes += UInt64(2 + length)
            lastReceived = .now()
            handle(record)
        }
        if inbound.readableBytes == 0 {
            inbound.clear()
        } else if inbound.readerIndex > inbound.capacity / 2 {
            inbound.discardReadBytes()
        }
    }

    private func handle(_ record: ByteBuffer) {
        if session.awaitsInitiation {
            guard session.checkInitiation(record) else {
                let sized = record.readableBytes == StcprSession.initiationRecordLength
                refuse(sized ? .mac1 : .malformed, "message 1 of \(record.readableBytes) bytes")
                return
            }
            if let gate = hooks.gate {
                guard gate.reserve() else {
                    refuse(.pendingFull, "\(StcprHandshakeGate.maxUnconfirmed) handshakes await confirmation")
                    return
                }
                holdsHandshakeSlot = true
            }
        }
        let received: StcprSession.Received
        do {
            received = try session.receive(record, allocator: allocator)
        } catch {
            if !session.isEstablished && !session.isInitiator {
                refuse(.handshake, "\(error)")
            } else {
                finish(reason: "\(session.isEstablished ? "record" : "handshake") rejected: \(error)")
            }
            return
        }
        switch received {
        case .frame(let plain):
            do {
                hooks.frame(try DmsgFrame.decode(plain))
            } catch {
                finish(reason: "malformed relay frame: \(error)")
            }
        case .handshakeComplete(let remote, let timestamp?, let reply):
            if let gate = hooks.gate, !gate.admit(remote, timestamp: timestamp) {
                refuse(.replay, "message 1 from \(remote.short) stamped \(timestamp) is not newer than the last accepted")
                return
            }
            writeHandshake(reply)
            flush()
        case .handshakeComplete(let remote, nil, let confirmation):
            timeoutTask?.cancel()
            writeHandshake(confirmation)
            establish(remote)
        case .confirmed:
            timeoutTask?.cancel()
            releaseHandshakeSlot()
            if let remote = session.remoteKey { establish(remote) }
        case .nothing:
            break
        }
    }

    private func establish(_ remote: PublicKey) {
        established = true
        guard hooks.established(remote) else {
            finish(reason: "session not admitted")
            return
        }
        flush()
    }

    private func refuse(_ reason: HandshakeRefusal, _ detail: @autoclosure () -> String) {
        guard descriptor.isOpen else { return }
        if let gate = hooks.gate { gate.refuse(reason, "dmsg: \(detail())") } else { logger.debug("dmsg: \(detail())") }
        hooks.refused(reason.rawValue)
        finish(reason: "handshake refused (\(reason.rawValue))")
    }

    private func releaseHandshakeSlot() {
        guard holdsHandshakeSlot else { return }
        holdsHandshakeSlot = false
        hooks.gate?.release()
    }

    private func writeHandshake(_ message: [UInt8]) {
        StcprSession.writeHandshakeRecord(message, into: &outbound)
    }

    private func finish(reason: String) {
        guard session.close() else { return }
        timeoutTask?.cancel()
        releaseHandshakeSlot()
        loop.unwatch(descriptor.raw)
        descriptor.close()
        inbound = allocator.buffer(capacity: 0)
        outbound = allocator.buffer(capacity: 0)
        hooks.closed(reason)
    }
}
