// update-server frame decoder (Sources/SkywireWire/UpdateFrame+Codec.swift, PROTOCOL.md §6): the
// bytes the update-server app reads from a client and `skywire cli update apply --from` reads from
// a server. The first input byte sets the chunk size (1...64) the rest is fed in.
// Invariants: the frames decoded chunk by chunk are those decoded from the whole input at once,
// and so is the error; each decoded frame re-encodes to exactly the bytes it was read from (the
// encoding is canonical); names pass `UpdateProtocol.nameProblem`, lists hold at most
// `maxEntries`; the decoder never holds more than one header, one maximal payload and one chunk;
// after an error every call throws the same error.
import FuzzSupport
import SkywireWire

private func decodeAll(_ bytes: [UInt8], chunk: Int) -> DecodeOutcome<UpdateFrame, UpdateProtocolError> {
    var decoder = UpdateFrameDecoder()
    return decodeInChunks(bytes, chunk: chunk, maxHeld: UpdateProtocol.headerLength + UpdateProtocol.maxPayload,
                          feed: { decoder.feed($0) }, held: { decoder.bufferedBytes }, next: { () throws(UpdateProtocolError) in try decoder.next() })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUpdateFrame(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    checkCanonicalFrames(data, size, maxFrame: UpdateProtocol.headerLength + UpdateProtocol.maxPayload, decode: decodeAll,
                         encode: { try? $0.encoded() }) { frame in
        switch frame {
        case .get(let name, _): invariant(UpdateProtocol.nameProblem(name) == nil, "a bad name was accepted: \(name)")
        case .listOK(let entries):
            invariant(entries.count <= UpdateProtocol.maxEntries, "\(entries.count) entries accepted")
            for e in entries { invariant(UpdateProtocol.nameProblem(e.name) == nil, "a bad listed name was accepted: \(e.name)") }
        case .getOK(let header): invariant(header.offset <= header.size, "offset past the size accepted")
        default: break
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let digest = [UInt8](repeating: 0xA5, count: UpdateProtocol.digestLength)
        let frames: [(String, UpdateFrame)] = [
            ("list", .list),
            ("get", .get(name: "skywire-qemu-arm64-ab-v2.raucb", offset: 4_194_304)),
            ("list-ok", .listOK([UpdateBundleInfo(name: "v2.raucb", size: 206_886_154, sha256: digest),
                                 UpdateBundleInfo(name: "v3.raucb", size: 1, sha256: digest)])),
            ("get-ok", .getOK(UpdateGetHeader(size: 20_000_000, offset: 4_000_000, sha256: digest))),
            ("error", .error(.noSuchBundle, "no bundle named 'x.raucb' here")),
        ]
        var seeds = frames.map { (name: $0.0, bytes: [UInt8(7)] + ((try? $0.1.encoded()) ?? [])) }
        seeds.append((name: "get-ok-and-bytes", bytes: [UInt8(3)] + ((try? frames[3].1.encoded()) ?? []) + [1, 2, 3]))
        return seeds
    }
    return 0
}

@_cdecl("fuzz_update_frame_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
