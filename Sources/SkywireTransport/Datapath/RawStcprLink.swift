#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import SkywireCrypto
import SkywireWire
import SkywireSystem
import SkywireIO

/// stcpr (PROTOCOL.md §3) on a byte pipe serviced by an `EpollEventLoop`: the Noise IK
/// handshake, then one 2-byte-length-prefixed Noise message per mux frame. The pipe is a
/// connected, non-blocking TCP descriptor (stcpr) or a stream through a dmsg relay server
/// (transport `dmsg`: the same handshake and records end to end, the relay sees ciphertext).
/// The same link carries a dmsg relay session (PROTOCOL.md §7.1, `DmsgRecordLink`: relay frames
/// instead of mux frames, with `Limits.relaySession`). Owns the pipe; confined to its loop.
final class RawStcprLink: FrameLink {
    /// Decides, after the handshake, whether the peer may stay, and builds what rides the link.
    struct Hooks {
        var established: (_ remote: PublicKey, _ link: RawStcprLink) -> RecordLinkUpper?
        /// Called once when the link ends, with the reason.
        var closed: (_ reason: String) -> Void
        /// Responder: the listener's admission (mac1, unconfirmed-handshake cap, replays); nil
        /// admits every valid handshake (tests).
        var gate: StcprHandshakeGate? = nil
        /// Ports whose DATAGRAM frames go straight to a sink, in place (the VPN); nil: all go to the mux.
        var sinks: DatagramSinks? = nil
        /// Responder: a handshake refused before confirmation, with its `HandshakeRefusal` (the
        /// relay's `/health` counts).
        var refused: ((HandshakeRefusal) -> Void)? = nil
    }

    /// The link's bounds on what it queues and how it reads.
    struct Limits {
        /// Unsent bytes from which `isWritable` is false (writers wait for `linkWritabilityChanged`).
        var highWatermark: Int
        /// Unsent bytes beyond which the peer is closed ("does not read").
        var maxOutbound: Int
        /// Which unsent bytes pause reading the peer, and the pause and resume marks.
        var readPause: ReadPause
        /// Drops the receive and send buffers whenever they empty and compacts the send buffer (a
        /// relay's memory per idle client); stcpr keeps them (no allocation per packet).
        var releasesIdleBuffers: Bool
        /// Whether VPN threads may send DATAGRAM batches (`datagramQueue`).
        var carriesDatagrams: Bool
        /// Bytes per read(2) once established, after a burst's first read (`firstReadChunk`) came
        /// back full: a busy link's receive buffer keeps about twice this.
        var readChunk: Int
        /// Names the link in logs and syscall errors.
        var name: String

        /// stcpr and the `dmsg` transport: mux frames.
        static let transport = Limits(
            highWatermark: RawStcprLink.highWatermark, maxOutbound: RawStcprLink.maxOutbound,
            readPause: .answers(pause: RawStcprLink.controlPauseWatermark, resume: RawStcprLink.controlResumeWatermark),
            releasesIdleBuffers: false, carriesDatagrams: true, readChunk: RawStcprLink.transportReadChunk, name: "stcpr")
        // A dmsg relay session's: `DmsgRecordLink.limits`.
    }

    /// What makes the link stop reading a peer that does not read (back-pressure).
    enum ReadPause {
        /// The answers its own frames made us queue (`controlPauseWatermark`).
        case answers(pause: Int, resume: Int)
        /// Everything unsent toward it.
        case unsent(pause: Int, resume: Int)
    }

    /// Largest DATA payload per frame over stcpr (PROTOCOL.md §5).
    static let maxDataPayload = 16 * 1024
    /// Queued-but-unsent bytes above which streams stop writing (`MuxStream.pump`) and DATAGRAM
    /// frames are dropped (FrameLink: unreliable under pressure).
    static let highWatermark = 1 << 20
    /// Bytes of records the peer made us queue by its own frames (PONG, WINDOW, OPEN_OK,
    /// OPEN_REJECT, RESET, CLOSE: everything but DATA and DATAGRAM) and has not read yet, above
    /// which the link stops reading from it (back-pressure, like HTTP/2 servers since
    /// CVE-2019-9512/9515): a peer that sends PINGs and never reads is no longer read. A peer
    /// that reads never gets near it: WINDOW and PONG answers are a few records per window of data.
    static let controlPauseWatermark = 64 * 1024
    /// Reading resumes once the peer has read its answers down to this.
    static let controlResumeWatermark = 16 * 1024
    /// Hard bound on unsent bytes per link: beyond it the peer is closed ("does not read").
    /// Unreachable by a peer that reads: DATA is bounded by `highWatermark` plus one send buffer per
    /// stream (`MuxSession.Configuration.sendBufferLimit` × `maxStreams`, 64 KiB × 512 = 32 MiB,
    /// which WINDOW frames release), control answers by `controlPauseWatermark` plus one read burst.
    static let maxOutbound = 48 << 20
    /// Bytes read per readiness report at most (in reads of `Limits.readChunk`), so that one peer
    /// cannot monopolise the loop and the answers to one burst (flushed together, then checked
    /// against `controlPauseWatermark`) stay bounded; the loop is level-triggered: it comes back.
    /// A burst ends earlier when a read comes back short (the socket is drained): then the sinks
    /// push what they merged (`DatagramSinkBatch.end`), so the larger the burst, the larger the
    /// TCP super-packets written to the TUN.
    static let maxReadBytesPerWake = 256 * 1024
    /// Reads per readiness report at most (before the handshake they are `handshakeReadChunk`).
    static let maxReadsPerWake = 16
    /// `Limits.readChunk` of stcpr links: a full burst is a few reads. A relay session reads
    /// `DmsgRecordLink.readChunk` (its receive buffer is kept per busy client).
    static let transportReadChunk = 64 * 1024
    /// A burst's first read once established (at most `Limits.readChunk`): a link that only gets
    /// small records (keepalives, an idle VPN) keeps a receive buffer of this size.
    static let firstReadChunk = 16 * 1024
    /// Initial capacity of the record buffer (grows with bulk data, kept between writes).
    static let outboundCapacity = 2048
    /// Records up to this size (a TUN packet's DATAGRAM, control frames) are decrypted in place in
    /// the receive buffer, so that a DATAGRAM for a sink costs no allocation; larger ones (bulk
    /// DATA) are decrypted into a buffer of their own, which the mux keeps.
    static let inPlaceRecordLimit = 2048
    /// Bytes read at a time before the handshake completes (the receive buffer starts this size):
    /// a socket that never completes a handshake (half-open) costs little; `readChunk` after.
    static let handshakeReadChunk = 256

    private let loop: EpollEventLoop
    private let pipe: LinkPipe
    private var session: StcprSession
    private let hooks: Hooks
    let limits: Limits
    private let logger: Logger
    private var timeoutTask: Scheduled<Void>?
    private(set) var connection: RecordLinkUpper?
    var remoteKey: PublicKey? { session.remoteKey }
    /// Bytes read and not yet parsed into records.
    private var inbound: ByteBuffer
    /// Encrypted records not yet written; allocated on first use (a half-open socket has none).
    private var outbound: ByteBuffer
    /// Bytes ever appended to `outbound` (so `appended - outbound.readableBytes` were sent).
    private var appended: UInt64 = 0
    /// Control records (see `controlPauseWatermark`) still in `outbound`: where each ends in the
    /// stream of appended bytes, and its size; `controlQueued` is their total.
    private var controlRecords = CircularBuffer<ControlRecord>()
    private var controlQueued = 0
    /// The socket took no more (EAGAIN): waiting for EPOLLOUT.
    private var blocked = false
    /// Reading stopped because the peer does not read its answers (`controlPauseWatermark`).
    private(set) var readPaused = false
    private let allocator = ByteBufferAllocator()
    /// A responder holding one of the gate's unconfirmed-handshake slots.
    private var holdsHandshakeSlot = false
    let counters = LinkCounters()
    /// Batches of DATAGRAM frames from datapath threads (`DatagramPath` over stcpr); nil when
    /// `limits.carriesDatagrams` is false.
    let datagramQueue: StcprDatagramQueue?
    /// Sinks that got datagrams in the current read burst.
    private var sinkBatch = DatagramSinkBatch()

    var maxDataPayload: Int { Self.maxDataPayload }
    var isWritable: Bool { outbound.readableBytes < limits.highWatermark }
    /// Encrypted bytes queued and not yet taken by the socket.
    var unsentBytes: Int { outbound.readableBytes }
    var isOpen: Bool { pipe.isOpen }

    private struct ControlRecord {
        var end: UInt64
        var size: Int
    }

    /// Takes `socket` (connected, non-blocking) and starts the handshake: as initiator when
    /// `expectedRemote` is set (it sends message 1 now), else as responder. Call on `loop`.
    convenience init(loop: EpollEventLoop, socket: OwnedDescriptor, identity: NoiseStaticIdentity, expectedRemote: PublicKey?,
                     timestamp: TAI64N? = nil, handshakeTimeout: TimeAmount, limits: Limits = .transport,
                     logger: Logger, hooks: Hooks) throws {
        try self.init(loop: loop, pipe: DescriptorPipe(loop: loop, descriptor: socket, name: limits.name), identity: identity,
                      expectedRemote: expectedRemote, timestamp: timestamp, handshakeTimeout: handshakeTimeout,
                      limits: limits, logger: logger, hooks: hooks)
    }

    /// The same over any `LinkPipe` (a dmsg relay stream; an in-memory pipe in tests).
    init(loop: EpollEventLoop, pipe: LinkPipe, identity: NoiseStaticIdentity, expectedRemote: PublicKey?,
         timestamp: TAI64N? = nil, handshakeTimeout: TimeAmount, limits: Limits = .transport,
         logger: Logger, hooks: Hooks) throws {
        precondition(loop.inEventLoop)
        self.loop = loop
        self.pipe = pipe
        self.hooks = hooks
        self.limits = limits
        self.logger = logger
        inbound = allocator.buffer(capacity: Self.handshakeReadChunk)
        outbound = allocator.buffer(capacity: 0)
        // A relay session tracks no control records (`ReadPause.unsent`): no ring allocated per client.
        if case .unsent = limits.readPause { controlRecords = CircularBuffer(initialCapacity: 1) }
        session = try StcprSession(identity: identity, expectedRemote: expectedRemote, timestamp: timestamp)
        datagramQueue = limits.carriesDatagrams ? StcprDatagramQueue(loop: loop) : nil
        let firstMessage = try session.start()
        datagramQueue?.attach(self)
        // The pipe's handler holds the link until `finish` closes the pipe.
        try pipe.start(interest: .read) { readiness in self.ready(readiness) }
        timeoutTask = loop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [weak self] in
            self?.fail("handshake not complete in time", level: .info)
        }
        if let firstMessage { writeRecord(firstMessage); flush() }
    }

    // MARK: FrameLink

    func send(frame: ByteBuffer, reliable: Bool) {
        // DATAGRAM frames may be dropped under pressure (FrameLink); nothing else may.
        guard reliable || isWritable else { return }
        guard let size = frame.withUnsafeReadableBytes({ appendRecord($0) }) else { return }
        if case .answers = limits.readPause, Self.isControl(frame) {
            controlRecords.append(ControlRecord(end: appended, size: size))
            controlQueued += size
        }
        if outbound.readableBytes > limits.maxOutbound {
            let reason = "peer does not read: \(outbound.readableBytes) bytes unsent (limit \(limits.maxOutbound))"
            RefusalLog.shared.note(.outboundOverflow, "\(limits.name) \(remoteKey?.short ?? "peer"): \(reason)", logger: logger)
            fail(reason, level: .debug)
        }
    }

    /// Seals one encoded frame as a record at the end of `outbound`; returns its size, nil when
    /// the session cannot send (not established, closed, or encryption failed: the link fails).
    private func appendRecord(_ frame: UnsafeRawBufferPointer) -> Int? {
        reserveOutbound()
        do {
            guard try session.seal(bytes: frame, into: &outbound) else { return nil }
        } catch {
            fail("cannot encrypt: \(error)")
            return nil
        }
        let size = StcprSession.recordSize(ofFrame: frame.count)
        appended += UInt64(size)
        counters.addSent(size)
        return size
    }

    /// A batch of DATAGRAM frames from `datagramQueue` (each as a `UInt16` host-order length and
    /// the frame): one record each at the end of `outbound`, then one flush (one write for the
    /// batch). The queue hands a batch over only while the link is below `highWatermark`, so the
    /// whole batch is taken (at most `StcprDatagramQueue.maxPendingBytes` beyond the mark) and
    /// the VPN thread is paced by the queue instead of losing packets. Frames that find the link
    /// closed are dropped. Returns how many were dropped.
    func send(datagramFrames frames: ByteBuffer) -> Int {
        var dropped = 0
        var sealed = false
        StcprDatagramQueue.forEachFrame(frames) { frame in
            guard pipe.isOpen, appendRecord(frame) != nil else { dropped += 1; return }
            sealed = true
        }
        if sealed { flush() }
        return dropped
    }

    /// Whether a frame is an answer the peer can make us queue by sending (not DATA or DATAGRAM).
    private static func isControl(_ frame: ByteBuffer) -> Bool {
        guard let type = frame.getInteger(at: frame.readerIndex, as: UInt8.self) else { return false }
        return type != MuxFrameType.data.rawValue && type != MuxFrameType.datagram.rawValue
    }

    /// The record buffer is allocated on first use (`outboundCapacity`), not per accepted socket.
    private func reserveOutbound() {
        if outbound.capacity == 0 { outbound.reserveCapacity(Self.outboundCapacity) }
    }

    /// Forgets control records the socket has taken, and resumes reading once the peer has read
    /// what pauses it (`Limits.readPause`) down to the resume mark.
    private func noteSent() {
        let sent = appended - UInt64(outbound.readableBytes)
        while let first = controlRecords.first, first.end <= sent {
            controlQueued -= first.size
            controlRecords.removeFirst()
        }
        if readPaused && pausingBytes.queued <= pausingBytes.resume {
            readPaused = false
            updateInterest()
        }
    }

    /// The unsent bytes that pause reading (`Limits.readPause`), with its marks.
    private var pausingBytes: (queued: Int, pause: Int, resume: Int) {
        switch limits.readPause {
        case .answers(let pause, let resume): (controlQueued, pause, resume)
        case .unsent(let pause, let resume): (outbound.readableBytes, pause, resume)
        }
    }

    /// EPOLLIN unless reading is paused, EPOLLOUT while the socket is full.
    private func updateInterest() {
        var interest: EpollEventLoop.Interest = readPaused ? [] : .read
        if blocked { interest.insert(.write) }
        do {
            try pipe.setInterest(interest)
        } catch {
            fail("\(error)", level: .info)
        }
    }

    func flush() {
        guard !blocked, outbound.readableBytes > 0, pipe.isOpen else { return }
        let wasWritable = isWritable
        do {
            while outbound.readableBytes > 0 {
                guard try pipe.write(from: &outbound) else {
                    blocked = true
                    updateInterest()
                    break
                }
            }
        } catch {
            fail("\(error)", level: .info)
            return
        }
        noteSent()
        if outbound.readableBytes == 0 {
            // A relay keeps no buffer for an idle client; stcpr reuses its own.
            if limits.releasesIdleBuffers { outbound = allocator.buffer(capacity: 0) } else { outbound.clear() }
        } else if limits.releasesIdleBuffers && outbound.readerIndex > outbound.capacity / 2 {
            outbound.discardReadBytes()
        }
        if !wasWritable && isWritable {
            connection?.linkWritabilityChanged()
            datagramQueue?.linkWritable()
        }
    }

    func close(reason: String) {
        finish(reason: reason)
    }

    /// getsockname(2) of the connected socket; nil once closed or over a relay stream.
    var boundLocalAddress: SocketAddress? { pipe.localAddress }

    // MARK: Events

    private func ready(_ readiness: LinkPipeReadiness) {
        if readiness.writable && blocked {
            blocked = false
            updateInterest()
            flush()
        }
        if readPaused {
            // Not reading: EPOLLHUP/EPOLLERR still come (level-triggered); the peer is gone.
            if readiness.hangup { finish(reason: "connection closed by peer") }
            return
        }
        if readiness.readable || readiness.hangup { readAvailable() }
    }

    private func readAvailable() {
        var drained = true
        var taken = 0
        for read in 0..<Self.maxReadsPerWake where taken < Self.maxReadBytesPerWake && pipe.isOpen && !readPaused {
            let outcome: DescriptorRead
            let chunk = !session.isEstablished ? Self.handshakeReadChunk
                : read == 0 ? min(Self.firstReadChunk, limits.readChunk) : limits.readChunk
            do {
                outcome = try pipe.read(into: &inbound, count: chunk)
            } catch {
                fail("\(error)", level: .info)
                return
            }
            processRecords()
            if outcome == .endOfFile { finish(reason: "connection closed by peer"); return }
            // Reads take at most `chunk` (LinkPipe): a shorter one took all there was.
            drained = outcome != .bytes(chunk)
            guard !drained else { break }
            taken += chunk
        }
        sinkBatch.end()
        connection?.flushIfNeeded()
        pauseIfPeerDoesNotRead()
        // An idle relay client keeps no read buffer (the relay's memory per idle client).
        if limits.releasesIdleBuffers && drained && inbound.readableBytes == 0 && session.isEstablished {
            inbound = allocator.buffer(capacity: 0)
        }
    }

    /// Back-pressure: stops reading while the peer leaves more than `controlPauseWatermark` bytes
    /// of answers unread (resumed by `noteSent`). Meanwhile the keepalive hears nothing from it and
    /// closes the link after `MuxConnection.deadPeerTimeout` unless it starts reading.
    private func pauseIfPeerDoesNotRead() {
        let pausing = pausingBytes
        guard !readPaused, pipe.isOpen, pausing.queued > pausing.pause else { return }
        readPaused = true
        RefusalLog.shared.note(.readPaused, "\(limits.name) \(remoteKey?.short ?? "peer") does not read: \(pausing.queued) "
                                              + "bytes unsent; reading paused", logger: logger)
        updateInterest()
    }

    // MARK: Records

    /// Handles every complete record in `inbound`.
    private func processRecords() {
        while inbound.readableBytes >= 2, pipe.isOpen,
              let length = inbound.getInteger(at: inbound.readerIndex, as: UInt16.self).map(Int.init) {
            // A handshake record has one exact length: a wrong prefix closes at once instead of
            // waiting for (and buffering) up to 64 KiB.
            if let expected = session.expectedHandshakeRecordLength, length != expected {
                let reason = "handshake record of \(length) bytes (expected \(expected))"
                RefusalLog.shared.note(.badHandshakeLength, "\(limits.name): \(reason)", logger: logger)
                if !session.isInitiator { hooks.refused?(.malformed) }
                fail(reason, level: .debug)
                return
            }
            guard inbound.readableBytes >= 2 + length else { break }
            counters.addReceived(2 + length)
            if session.isEstablished && length <= Self.inPlaceRecordLimit {
                handleInPlace(length: length)
                continue
            }
            inbound.moveReaderIndex(forwardBy: 2)
            let record = inbound.readSlice(length: length)!
            handle(record)
        }
        if inbound.readableBytes == 0 {
            inbound.clear()
        } else if inbound.readerIndex > inbound.capacity / 2 {
            inbound.discardReadBytes()
        }
    }

    /// The transport record at the reader index (after its 2-byte length), decrypted where it
    /// lies: a DATAGRAM for a port with a sink goes to it without a copy; any other frame is
    /// copied out for the mux connection.
    private func handleInPlace(length: Int) {
        let remote = session.remoteKey
        let sinks = hooks.sinks
        let outcome: Result<ByteBuffer?, Error> = inbound.withUnsafeMutableReadableBytes { bytes in
            let record = UnsafeMutableRawBufferPointer(rebasing: bytes[2..<(2 + length)])
            do {
                guard let n = try session.openInPlace(record) else { return .success(nil) }
                let frame = UnsafeMutableRawBufferPointer(rebasing: record[0..<n])
                if let sinks, let remote, sinks.deliver(frame, headroom: 2, from: remote, batch: &sinkBatch) {
                    return .success(nil)
                }
                return .success(ByteBuffer(bytes: UnsafeRawBufferPointer(frame)))
            } catch {
                return .failure(error)
            }
        }
        inbound.moveReaderIndex(forwardBy: 2 + length)
        switch outcome {
        case .success(let frame?):
            connection?.receive(frame: frame)
        case .success(nil):
            break
        case .failure(let error):
            fail("transport message from \(remoteKey?.hex ?? "the peer") rejected: \(error)", level: .warning)
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
        guard pipe.isOpen else { return }
        if let gate = hooks.gate { gate.refuse(reason, detail()) } else { logger.debug("\(limits.name): handshake refused: \(detail())") }
        hooks.refused?(reason)
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
        guard pipe.isOpen else { return }
        logger.log(level: level, "\(limits.name): \(reason)")
        finish(reason: reason)
    }

    private func finish(reason: String) {
        guard session.close() else { return }
        timeoutTask?.cancel()
        releaseHandshakeSlot()
        pipe.close()
        datagramQueue?.close()
        connection?.linkClosed(reason: reason)
        connection = nil
        hooks.closed(reason)
    }
}
