// PTY frame decoder (Sources/SkywireWire/PtyFrame+Codec.swift, docs/pty.md "Protocol"): the bytes a
// pty client or host receives from a peer. The first input byte sets the chunk size (1...64) the
// rest is fed in, as a stream arrives in pieces.
// Invariants: the frames decoded chunk by chunk are those decoded from the whole input at once,
// and so is the error; each decoded frame re-encodes to exactly the bytes it was read from (the
// encoding is canonical); the decoder never holds more than one header, one maximal payload and one
// chunk; after an error every call throws the same error.
import FuzzSupport
import SkywireWire

private func decodeAll(_ bytes: [UInt8], chunk: Int) -> DecodeOutcome<PtyFrame, PtyProtocolError> {
    var decoder = PtyFrameDecoder()
    return decodeInChunks(bytes, chunk: chunk, maxHeld: PtyProtocol.headerLength + PtyProtocol.maxPayload,
                          feed: { decoder.feed($0) }, held: { decoder.bufferedBytes }, next: { () throws(PtyProtocolError) in try decoder.next() })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPtyFrame(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let chunk = Int(input.take(1).first ?? 0) % 64 + 1
    let bytes = input.take(size)
    let pieces = decodeAll(bytes, chunk: chunk)
    let whole = decodeAll(bytes, chunk: max(1, bytes.count))
    invariant(pieces == whole, "chunks of \(chunk) gave \(pieces), the whole input \(whole)")
    // Every frame is a fixed point of encode and decode.
    for frame in whole.frames {
        var again = PtyFrameDecoder()
        again.feed(frame.encoded)
        let back = Result { () throws(PtyProtocolError) in try again.next() }
        invariant((try? back.get()) == frame, "\(frame) re-encoded decodes as \(back)")
    }
    // Canonical: the frames re-encode to the input's prefix they were read from. An `error`
    // frame's control characters are shown as spaces, so only inputs without one are compared.
    let encoded = whole.frames.flatMap(\.encoded)
    let hasError = whole.frames.contains { if case .error = $0 { true } else { false } }
    invariant(hasError || (encoded.count <= bytes.count && Array(bytes.prefix(encoded.count)) == encoded),
              "re-encoding \(whole.frames.count) frames differs from the input: \(hex(Array(bytes.prefix(64))))")
    if whole.error == nil, !hasError {
        // Whatever is left is an incomplete frame: at most a header and a maximal payload.
        invariant(bytes.count - encoded.count < PtyProtocol.headerLength + PtyProtocol.maxPayload, "a whole frame was left undecoded")
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let frames: [(String, PtyFrame)] = [
            ("open-shell", .open(PtyOpenRequest(mode: .shell, term: "xterm-256color", size: PtyWindowSize(rows: 30, columns: 100)))),
            ("open-exec", .open(PtyOpenRequest(mode: .exec, argv: ["sh", "-c", "echo hi; exit 3"]))),
            ("open-put", .open(PtyOpenRequest(mode: .copyPut, argv: ["/root/f"], fileMode: 0o640))),
            ("open-get", .open(PtyOpenRequest(mode: .copyGet, argv: ["f"]))),
            ("stdin", .stdin(Array("ls -l\n".utf8))),
            ("stdout", .stdout(Array("total 0\n".utf8))),
            ("stderr", .stderr(Array("oops\n".utf8))),
            ("resize", .resize(PtyWindowSize(rows: 40, columns: 120))),
            ("exit-code", .exit(.exited(5))),
            ("exit-signal", .exit(.signalled(9))),
            ("eof", .eof),
            ("error", .error("the session host is busy")),
            ("error-escape", .error("\u{1B}[2Jcleared")),
            ("digest", .digest([UInt8](repeating: 0xab, count: PtyProtocol.digestLength))),
        ]
        // A chunk-size byte, then the frame; and one whole exec session in a row.
        var seeds = frames.map { (name: $0.0, bytes: [UInt8(7)] + $0.1.encoded) }
        seeds.append((name: "exec-session", bytes: [UInt8(3)] + frames[1].1.encoded + frames[4].1.encoded + frames[10].1.encoded))
        return seeds
    }
    return 0
}

@_cdecl("fuzz_pty_frame_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
