// The mux session state machine (Sources/SkywireWire/MuxSession.swift, PROTOCOL.md §5), two ways,
// chosen by the first input byte:
//
// * hostile: one session receives arbitrary frame bytes mixed with owner actions. Invariants: every
//   frame it emits is well-formed and round-trips through the codec; DATA never exceeds
//   maxDataPayload; streams never exceed maxStreams; once more than maxProtocolErrors errors were
//   counted the session is closed; a closed session emits nothing more.
// * pair: two honest sessions wired back to back, the fuzzer choosing owner actions and when frames
//   cross. Invariants: neither side ever reports a protocol error (flow control, early data, id
//   order and FIN rules agree between sender and receiver); each stream's received bytes are a
//   prefix of the bytes the other side's `write` took, and once everything is delivered and consumed
//   (and every deferred OPEN_OK sent, as the owner's timer does), all of them.
import FuzzSupport
import SkywireWire

typealias Session = MuxSession<ArraySlice<UInt8>>
typealias Frame = MuxFrame<ArraySlice<UInt8>>

/// Checks one emitted frame: well-formed on the wire and within the session's limits.
func checkEmitted(_ frame: Frame, by session: Session) {
    let bytes = frame.encoded
    let decoded = Result { () throws(MuxFrameError) in try Frame.decode(bytes) }
    invariant((try? decoded.get()) == frame, "emitted frame \(frame) does not round-trip: \(decoded)")
    if case .data(_, let p) = frame {
        invariant(p.count <= session.configuration.maxDataPayload, "DATA of \(p.count) bytes > maxDataPayload")
    }
}

/// Small stream ids the fuzzer can name (both parities).
func streamID(_ b: UInt8) -> MuxStreamID { MuxStreamID(UInt32(b % 24) + 1) }

func makeSession(initiator: Bool, _ input: inout FuzzInput) -> Session {
    var config = Session.Configuration(isInitiator: initiator,
                                       initialWindow: UInt32(input.byte()) << 10,   // raised to ≥ 16 KiB by the session
                                       maxStreams: Int(input.byte() % 8) + 1,
                                       maxDataPayload: Int(input.uint16() % 2048) + 16)
    config.sendBufferLimit = Int(input.uint16())
    config.maxProtocolErrors = Int(input.byte() % 20)
    return Session(configuration: config)
}

func payload(_ input: inout FuzzInput, counter: inout UInt8) -> ArraySlice<UInt8> {
    let n = Int(input.uint16()) % 4_096
    var out = [UInt8](repeating: 0, count: n)
    for i in 0..<n { out[i] = counter &+ UInt8(truncatingIfNeeded: i) }
    counter &+= UInt8(truncatingIfNeeded: n)
    return ArraySlice(out)
}

// MARK: - Hostile peer

func fuzzHostile(_ input: inout FuzzInput) {
    let s = makeSession(initiator: input.bool(), &input)
    var protocolErrors = 0
    var counter: UInt8 = 0
    var local: [MuxStreamID] = []
    var ops = 0
    while !input.isAtEnd && ops < 512 {
        ops += 1
        let wasClosed = s.isClosed
        switch input.byte() % 10 {
        case 0, 1:   // raw frame bytes from the peer
            let bytes = input.chunk()
            bytes.withUnsafeBytes { raw in s.receive(encoded: raw) { bytes[$0] } }
        case 2:      // a well-formed frame naming a small stream id
            let id = streamID(input.byte())
            let frame: Frame
            switch input.byte() % 8 {
            case 0: frame = .open(streamID: id, destinationPort: input.uint16(), sourcePort: input.uint16(), initialWindow: input.uint32())
            case 1: frame = .openOK(streamID: id, initialWindow: input.uint32())
            case 2: frame = .data(streamID: id, payload: payload(&input, counter: &counter))
            case 3: frame = .window(streamID: id, increment: input.uint32())
            case 4: frame = .fin(streamID: id)
            case 5: frame = .reset(streamID: id, code: MuxErrorCode(rawValue: input.byte()))
            case 6: frame = .openReject(streamID: id, code: .forbidden, reason: "no")
            default: frame = .ping(opaque: UInt64(input.uint32()))
            }
            s.receive(frame)
        case 3:
            if let id = try? s.openStream(destinationPort: input.uint16(), sourcePort: input.uint16(), deferOpen: input.bool()) {
                local.append(id)
            }
        case 4: try? s.accept(streamID(input.byte()), deferAnswer: input.bool())
        case 5:
            let id = input.bool() && !local.isEmpty ? local[Int(input.byte()) % local.count] : streamID(input.byte())
            let p = payload(&input, counter: &counter)
            if let taken = try? s.write(id, p) { invariant(taken <= p.count, "write took \(taken) of \(p.count)") }
        case 6: s.consumed(streamID(input.byte()), Int(input.uint32()))
        case 7: try? s.finish(streamID(input.byte()))
        case 8: s.reset(streamID(input.byte()), code: .appClosed)
        default:
            switch input.byte() % 4 {
            case 0: try? s.ping(opaque: 7)
            case 1: try? s.reject(streamID(input.byte()), code: .refusedByApp, reason: String(repeating: "é", count: 150))
            case 2: s.sendDeferredAnswer(streamID(input.byte()))
            default: s.close(code: .normal, reason: "done")
            }
        }
        invariant(s.streamCount <= s.configuration.maxStreams, "\(s.streamCount) streams > maxStreams")
        var emitted = 0
        s.drainOutgoing { frame in
            emitted += 1
            checkEmitted(frame, by: s)
        }
        invariant(!wasClosed || emitted == 0, "a closed session emitted \(emitted) frames")
        s.drainEvents { event in
            if case .protocolError = event { protocolErrors += 1 }
        }
        invariant(protocolErrors <= s.configuration.maxProtocolErrors || s.isClosed,
                  "\(protocolErrors) protocol errors and still open")
    }
}

// MARK: - Honest pair

struct Side {
    let session: Session
    /// Frames emitted, not yet delivered to the other side (encoded).
    var inFlight: [[UInt8]] = []
    /// Streams this side may write to: opened here or accepted here.
    var writable: [MuxStreamID] = []
    /// Incoming OPENs not answered yet.
    var pending: [MuxStreamID] = []
    /// Accepted with `deferAnswer`: the owner sends the OPEN_OK after a bounded wait.
    var deferredAnswers: [MuxStreamID] = []
    /// Bytes `write` took, per stream; and bytes received, per stream.
    var written: [MuxStreamID: [UInt8]] = [:]
    var received: [MuxStreamID: [UInt8]] = [:]
    var unconsumed: [MuxStreamID: Int] = [:]
}

func fuzzPair(_ input: inout FuzzInput) {
    var sides = [Side(session: makeSession(initiator: true, &input)), Side(session: makeSession(initiator: false, &input))]
    /// Streams reset or refused (either side): their bytes need not all arrive.
    var aborted = Set<MuxStreamID>()
    var counter: UInt8 = 0
    var closed = false

    func collect(_ i: Int) {
        let s = sides[i].session
        s.drainOutgoing { frame in
            checkEmitted(frame, by: s)
            sides[i].inFlight.append(frame.encoded)
        }
        s.drainEvents { event in
            switch event {
            case .protocolError(let why): invariant(false, "honest peers: side \(i) saw a protocol error: \(why)")
            case .streamOpened(let id, _, _): sides[i].pending.append(id)
            case .data(let id, let p):
                let start = sides[i].received[id]?.count ?? 0
                sides[i].received[id, default: []] += p
                sides[i].unconsumed[id, default: 0] += p.count
                let sent = sides[1 - i].written[id] ?? []
                invariant(start + p.count <= sent.count && sent[start..<start + p.count].elementsEqual(p),
                          "stream \(id): side \(i) received bytes \(start)..<\(start + p.count) that differ from what the other side wrote")
            case .reset(let id, _, _), .openRejected(let id, _, _): aborted.insert(id)
            case .closed: closed = true
            default: break
            }
        }
    }
    func deliver(from i: Int, count: Int) {
        let n = min(count, sides[i].inFlight.count)
        let batch = sides[i].inFlight.prefix(n)
        sides[i].inFlight.removeFirst(n)
        let peer = sides[1 - i].session
        for bytes in batch {
            bytes.withUnsafeBytes { raw in peer.receive(encoded: raw) { bytes[$0] } }
        }
        collect(1 - i)
    }
    func consumeAll(_ i: Int) {
        for (id, n) in sides[i].unconsumed where n > 0 { sides[i].session.consumed(id, n) }
        sides[i].unconsumed = [:]
        collect(i)
    }

    var ops = 0
    while !input.isAtEnd && ops < 256 {
        ops += 1
        let op = input.byte()
        let i = Int(op >> 7)
        let s = sides[i].session
        switch (op & 0x7F) % 9 {
        case 0:
            if let id = try? s.openStream(destinationPort: 1, sourcePort: 2, deferOpen: input.bool()) { sides[i].writable.append(id) }
        case 1:
            guard !sides[i].pending.isEmpty else { break }
            let id = sides[i].pending.removeFirst()
            if input.byte() % 4 == 0 {
                try? s.reject(id, code: .refusedByApp)
                aborted.insert(id)
            } else {
                let deferred = input.bool()
                if (try? s.accept(id, deferAnswer: deferred)) != nil {
                    sides[i].writable.append(id)
                    if deferred { sides[i].deferredAnswers.append(id) }
                }
            }
        case 2, 3:
            guard !sides[i].writable.isEmpty else { break }
            let id = sides[i].writable[Int(input.byte()) % sides[i].writable.count]
            let p = payload(&input, counter: &counter)
            if let taken = try? s.write(id, p) { sides[i].written[id, default: []] += p.prefix(taken) }
        case 4: consumeAll(i)
        case 5:
            guard !sides[i].writable.isEmpty else { break }
            try? s.finish(sides[i].writable[Int(input.byte()) % sides[i].writable.count])
        case 6, 7: deliver(from: i, count: Int(input.byte() % 8) + 1)
        default:
            switch input.byte() % 8 {
            case 0:
                guard !sides[i].writable.isEmpty else { break }
                let id = sides[i].writable[Int(input.byte()) % sides[i].writable.count]
                s.reset(id, code: .appClosed)
                aborted.insert(id)
            case 1: s.close(code: .normal)
            case 2 where !sides[i].deferredAnswers.isEmpty:
                // The owner's timer for a deferred OPEN_OK fired (MuxConnection.deferredAcceptanceLimit).
                s.sendDeferredAnswer(sides[i].deferredAnswers.removeFirst())
            case 2: try? s.sendDatagram(destinationPort: 9, sourcePort: 9, payload: [1, 2, 3])
            default: try? s.ping(opaque: UInt64(ops))
            }
        }
        collect(i)
    }
    // Deliver everything, answering every OPEN and consuming every byte, until quiet.
    var rounds = 0
    while rounds < 10_000 {
        rounds += 1
        for i in 0..<2 {
            for id in sides[i].pending where (try? sides[i].session.accept(id)) != nil { sides[i].writable.append(id) }
            sides[i].pending = []
            for id in sides[i].deferredAnswers { sides[i].session.sendDeferredAnswer(id) }
            sides[i].deferredAnswers = []
            consumeAll(i)
        }
        guard !sides[0].inFlight.isEmpty || !sides[1].inFlight.isEmpty else { break }
        deliver(from: 0, count: .max)
        deliver(from: 1, count: .max)
    }
    invariant(rounds < 10_000, "the pair did not go quiet")
    guard !closed else { return }
    for i in 0..<2 {
        for (id, sent) in sides[i].written where !aborted.contains(id) {
            let got = sides[1 - i].received[id] ?? []
            invariant(got == sent, "stream \(id): side \(1 - i) received \(got.count) of the \(sent.count) bytes side \(i) wrote")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMuxSession(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    if input.byte() & 1 == 0 { fuzzHostile(&input) } else { fuzzPair(&input) }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        // Configuration bytes: window (<<10), maxStreams, maxDataPayload (2), sendBufferLimit (2), maxProtocolErrors.
        let config: [UInt8] = [64, 7, 0x04, 0xB0, 0xFF, 0xFF, 16]
        func frame(_ f: Frame) -> [UInt8] { let b = f.encoded; return [0, UInt8(b.count)] + b }
        let id = MuxStreamID(1)
        // Hostile: the peer (initiator parity 1) opens stream 1, we accept, it sends DATA, WINDOW, FIN, PING.
        var hostile: [UInt8] = [0] + config + [0]
        hostile += frame(.open(streamID: id, destinationPort: 80, sourcePort: 1, initialWindow: 65536))
        hostile += [4, 0, 0]                                     // accept stream 1 (index 0 → id 1)
        hostile += frame(.data(streamID: id, payload: [1, 2, 3]))
        hostile += [6, 0, 0, 0, 0, 3]                            // consumed 3
        hostile += frame(.window(streamID: id, increment: 100))
        hostile += frame(.fin(streamID: id))
        hostile += frame(.ping(opaque: 1))
        hostile += [3, 0, 7, 0, 8, 0]                            // open a stream of our own
        hostile += frame(.close(code: .normal, reason: "bye"))
        // Pair: A opens, B accepts, A writes 300 bytes, deliveries both ways, B consumes, A finishes.
        var pair: [UInt8] = [1] + config + config
        pair += [0, 0]                                           // A: open (not deferred)
        pair += [6, 7]                                           // A → B: deliver
        pair += [0x81, 1, 0]                                     // B: accept stream 1
        pair += [2, 0, 0x01, 0x2C]                               // A: write 300 bytes
        pair += [0x86, 7, 6, 7]                                  // B → A, A → B
        pair += [0x84]                                           // B: consume
        pair += [5, 0, 6, 7]                                     // A: finish, deliver
        pair += [0x82, 0, 0, 10, 0x85, 0, 0x86, 7]               // B: write 10, finish, deliver
        return [("hostile-open-data-fin", hostile), ("pair-open-write-fin", pair)]
    }
    return 0
}

@_cdecl("fuzz_mux_session_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
