// sudph packets, records and rendezvous datagrams (Sources/SkywireWire/SudphPacket.swift,
// SudphRecord.swift, SudphRendezvous.swift; PROTOCOL.md §4). Every input goes through all three
// parsers. Invariants: whatever a parser accepts, the matching builder rebuilds byte for byte (so
// nothing outside the parsed fields is silently ignored); ranges lie inside the input; ACKs carry at
// most 16 SACK blocks, each above `cum`; `isRendezvous` agrees with the rendezvous parser.
import FuzzSupport
import SkywireWire

func checkPacket(_ bytes: [UInt8]) {
    let parsed = bytes.withUnsafeBytes { raw in Result { () throws(SudphPacketError) in try SudphPacket.parse(raw) } }
    guard case .success(let packet) = parsed else { return }
    var rebuilt: [UInt8]
    switch packet {
    case .initiation(let sender, let message):
        invariant(message.upperBound == SudphLayout.mac1Offset && bytes.count == SudphLayout.initiationPacketSize,
                  "initiation message \(message) vs \(bytes.count) bytes")
        rebuilt = (try? bytes[message].withUnsafeBytes { raw in try SudphPacket.initiation(senderIndex: sender, message: raw) }) ?? []
        // The builder leaves mac1 and mac2 zero (the sender computes them over the packet); take them from the input.
        if rebuilt.count == bytes.count {
            rebuilt.replaceSubrange(SudphLayout.mac1Offset..., with: bytes[SudphLayout.mac1Offset...])
        }
    case .cookieReply(let receiver, let nonce, let sealed):
        invariant(nonce.upperBound == sealed.lowerBound && sealed.upperBound == bytes.count,
                  "cookie reply nonce \(nonce), cookie \(sealed) vs \(bytes.count) bytes")
        rebuilt = (try? SudphPacket.cookieReply(receiverIndex: receiver, nonce: Array(bytes[nonce]),
                                                sealedCookie: Array(bytes[sealed]))) ?? []
    case .response(let sender, let receiver, let message):
        invariant(message.upperBound == bytes.count, "response message \(message) vs \(bytes.count) bytes")
        rebuilt = (try? bytes[message].withUnsafeBytes { raw in
            try SudphPacket.response(senderIndex: sender, receiverIndex: receiver, message: raw)
        }) ?? []
    case .data(let receiver, let counter, let phase, let ciphertext):
        invariant(ciphertext.upperBound == bytes.count && ciphertext.count >= SudphLayout.tagSize,
                  "data ciphertext \(ciphertext) vs \(bytes.count) bytes")
        rebuilt = []
        SudphPacket.appendDataHeader(receiverIndex: receiver, counter: counter, keyPhase: phase, to: &rebuilt)
        var header = [UInt8](repeating: 0xAA, count: SudphLayout.dataHeaderSize)
        let n = header.withUnsafeMutableBytes { raw in
            try? SudphPacket.writeDataHeader(receiverIndex: receiver, counter: counter, keyPhase: phase, into: raw)
        }
        invariant(n == SudphLayout.dataHeaderSize && header == rebuilt, "writeDataHeader and appendDataHeader disagree")
        rebuilt += bytes[ciphertext]
    }
    invariant(rebuilt == bytes, "packet \(packet) rebuilt as \(hex(rebuilt)), input \(hex(bytes))")
}

func checkRecord(_ bytes: [UInt8]) {
    let decoded = bytes.withUnsafeBytes { raw in Result { () throws(SudphRecordError) in try SudphRecord.decode(raw) } }
    guard case .success(let record) = decoded else { return }
    var rebuilt: [UInt8] = []
    switch record {
    case .unreliable(let frame):
        invariant(!frame.isEmpty && frame.upperBound == bytes.count, "unreliable frame \(frame)")
        SudphRecord.appendUnreliableHeader(to: &rebuilt)
        rebuilt += bytes[frame]
    case .segment(let seq, let frame):
        invariant(!frame.isEmpty && frame.upperBound == bytes.count, "segment frame \(frame)")
        SudphRecord.appendSegmentHeader(seq: seq, to: &rebuilt)
        rebuilt += bytes[frame]
    case .ack(let ack):
        invariant(ack.sackBlocks.count <= SudphRecordLayout.maxSackBlocks, "\(ack.sackBlocks.count) SACK blocks")
        for b in ack.sackBlocks {
            invariant(SerialNumber.lessThan(ack.cumulative, b.start) && SerialNumber.lessThan(b.start, b.end),
                      "SACK block \(b) not above cum \(ack.cumulative)")
        }
        invariant(ack.encodedLength == bytes.count, "ACK encodedLength \(ack.encodedLength) for \(bytes.count) bytes")
        rebuilt = ack.encoded
    }
    invariant(rebuilt == bytes, "record \(record) rebuilt as \(hex(rebuilt)), input \(hex(bytes))")
}

func checkRendezvous(_ bytes: [UInt8]) {
    let parsed = Result { () throws(SudphRendezvousError) in try SudphRendezvous.parse(bytes) }
    if let first = bytes.first {
        let unknown: Bool
        if case .failure(.unknownType) = parsed { unknown = true } else { unknown = false }
        invariant(SudphRendezvousType.isRendezvous(first) != unknown, "isRendezvous(\(first)) disagrees with parse")
    }
    guard case .success(let message) = parsed else { return }
    let encoded = message.encoded()
    invariant(encoded == bytes, "rendezvous \(message) re-encoded as \(hex(encoded)), input \(hex(bytes))")
    _ = String(describing: message)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSudph(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    checkPacket(bytes)
    checkRecord(bytes)
    checkRendezvous(bytes)
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        var seeds: [(name: String, bytes: [UInt8])] = []
        let m1 = [UInt8](repeating: 0x11, count: SudphLayout.initiationMessageSize)
        let m2 = [UInt8](repeating: 0x22, count: SudphLayout.responseMessageSize)
        if let p = try? m1.withUnsafeBytes({ raw in try SudphPacket.initiation(senderIndex: 0x0102_0304, message: raw) }) {
            seeds.append(("packet-initiation", p))
        }
        if let p = try? m2.withUnsafeBytes({ raw in try SudphPacket.response(senderIndex: 5, receiverIndex: 0x0102_0304, message: raw) }) {
            seeds.append(("packet-response", p))
        }
        if let p = try? SudphPacket.cookieReply(receiverIndex: 0x0102_0304, nonce: [UInt8](repeating: 0x44, count: SudphLayout.cookieNonceSize),
                                                sealedCookie: [UInt8](repeating: 0x55, count: SudphLayout.sealedCookieSize)) {
            seeds.append(("packet-cookie-reply", p))
        }
        for phase: UInt8 in [0, 1] {
            var d: [UInt8] = []
            SudphPacket.appendDataHeader(receiverIndex: 9, counter: 1 << 40, keyPhase: phase, to: &d)
            d += [UInt8](repeating: 0x33, count: SudphLayout.tagSize + 5)
            seeds.append(("packet-data-phase\(phase)", d))
        }
        var unreliable: [UInt8] = []
        SudphRecord.appendUnreliableHeader(to: &unreliable)
        unreliable += MuxFrame<ArraySlice<UInt8>>.datagram(destinationPort: 1, sourcePort: 2, payload: [9]).encoded
        seeds.append(("record-unreliable", unreliable))
        var segment: [UInt8] = []
        SudphRecord.appendSegmentHeader(seq: 0xFFFF_FFF0, to: &segment)
        segment += MuxFrame<ArraySlice<UInt8>>.data(streamID: MuxStreamID(1), payload: [1, 2, 3]).encoded
        seeds.append(("record-segment", segment))
        seeds.append(("record-ack", SudphAck(cumulative: 100, window: 64).encoded))
        seeds.append(("record-ack-sack", SudphAck(cumulative: 0xFFFF_FFFE, window: 64,
                                                  sackBlocks: [SackBlock(start: 0xFFFF_FFFF, end: 3), SackBlock(start: 5, end: 9)]).encoded))
        let pk = [UInt8](repeating: 0xAB, count: 32)
        let token = [UInt8](repeating: 0x7E, count: SudphRendezvous.tokenSize)
        seeds.append(("rendezvous-bind", SudphRendezvous.bind(publicKey: pk, timestampMs: 1_700_000_000_000, token: token,
                                                               signature: [UInt8](repeating: 0x5A, count: 64)).encoded()))
        if let v4 = RendezvousAddress(address: [192, 0, 2, 1], port: 40000),
           let v6 = RendezvousAddress(address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1], port: 5000) {
            seeds.append(("rendezvous-bind-ok-v4", SudphRendezvous.bindOK(token: token, observed: v4).encoded()))
            seeds.append(("rendezvous-bind-ok-v6", SudphRendezvous.bindOK(token: token, observed: v6).encoded()))
            seeds.append(("rendezvous-punch-v4", SudphRendezvous.punch(token: token, peerKey: pk, peer: v4).encoded()))
            seeds.append(("rendezvous-punch-v6", SudphRendezvous.punch(token: token, peerKey: pk, peer: v6).encoded()))
        }
        return seeds
    }
    return 0
}

@_cdecl("fuzz_sudph_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
