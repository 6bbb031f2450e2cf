// Mux frame codec (Sources/SkywireWire/MuxFrame+Codec.swift, PROTOCOL.md §5).
// Invariants: a frame that decodes re-encodes to exactly the input bytes (the encoding is
// canonical); the array and raw-buffer decoders agree; peekData accepts exactly the frames decode
// reads as DATA, with the same stream and payload; payload ranges lie inside the input; encoding
// into a raw buffer writes encodedLength bytes and refuses a buffer one byte short.
import FuzzSupport
import SkywireWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMuxFrame(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    let raw = bytes.withUnsafeBytes { buf in Result { () throws(MuxFrameError) in try MuxFrame<Range<Int>>.decode(buf) } }
    let peek = bytes.withUnsafeBytes { MuxFrame<Range<Int>>.peekData($0) }
    let array = Result { () throws(MuxFrameError) in try MuxFrame<ArraySlice<UInt8>>.decode(bytes) }
    switch (raw, array) {
    case (.failure(let e1), .failure(let e2)):
        invariant(e1 == e2, "decoders disagree: \(e1) vs \(e2)")
        invariant(peek == nil, "peekData accepted \(hex(bytes)) that decode refuses (\(e1))")
    case (.success(let frame), .success(let sliced)):
        if case .data(let id, let payload) = frame {
            invariant(peek?.streamID == id && peek?.payload == payload, "peekData \(String(describing: peek)) vs decode \(frame)")
        } else {
            invariant(peek == nil, "peekData accepted a \(frame.type) frame")
        }
        switch frame {
        case .data(_, let p), .datagram(_, _, let p):
            invariant(p.lowerBound >= 0 && p.upperBound == bytes.count, "payload \(p) outside \(bytes.count) bytes")
        default: break
        }
        let encoded = sliced.encoded
        invariant(encoded == bytes, "re-encoding \(hex(bytes)) gave \(hex(encoded))")
        invariant(sliced.encodedLength == bytes.count, "encodedLength \(sliced.encodedLength) for \(bytes.count) bytes")
        var exact = [UInt8](repeating: 0, count: bytes.count)
        let n = exact.withUnsafeMutableBytes { buf in Result { () throws(MuxFrameError) in try sliced.encode(into: buf) } }
        invariant((try? n.get()) == bytes.count && exact == bytes, "raw encode wrote \(n) / \(hex(exact))")
        let short = exact.withUnsafeMutableBytes { buf in
            Result { () throws(MuxFrameError) in try sliced.encode(into: UnsafeMutableRawBufferPointer(rebasing: buf.dropLast())) }
        }
        invariant((try? short.get()) == nil, "raw encode into \(bytes.count - 1) bytes did not fail")
        if case .openReject(_, _, let reason) = frame {
            let cut = MuxFrameLayout.truncatedReason(reason)
            invariant(cut.utf8.count <= MuxFrameLayout.maxReasonBytes && reason.hasPrefix(cut), "truncatedReason")
        }
    default:
        invariant(false, "one decoder accepted \(hex(bytes)), the other refused it")
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let id = MuxStreamID(1)
        let frames: [(String, MuxFrame<ArraySlice<UInt8>>)] = [
            ("open", .open(streamID: id, destinationPort: 1080, sourcePort: 49152, initialWindow: 256 * 1024)),
            ("open-ok", .openOK(streamID: MuxStreamID(2), initialWindow: 65536)),
            ("open-reject", .openReject(streamID: id, code: .forbidden, reason: "forbidden")),
            ("data", .data(streamID: id, payload: ArraySlice(Array("hello".utf8)))),
            ("window", .window(streamID: id, increment: 4096)),
            ("fin", .fin(streamID: id)),
            ("reset", .reset(streamID: id, code: .protocolError)),
            ("datagram", .datagram(destinationPort: 53, sourcePort: 5353, payload: [0, 1, 2, 3])),
            ("datagram-empty", .datagram(destinationPort: 1, sourcePort: 2, payload: [])),
            ("ping", .ping(opaque: 0x0102_0304_0506_0708)),
            ("pong", .pong(opaque: 42)),
            ("close", .close(code: .normal, reason: "bye")),
            ("close-utf8", .close(code: .appClosed, reason: "fermé ✓")),
        ]
        return frames.map { ($0.0, $0.1.encoded) }
    }
    return 0
}

@_cdecl("fuzz_mux_frame_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
