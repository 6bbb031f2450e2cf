// Skychat frame decoder (Sources/SkywireWire/ChatFrame+Codec.swift, docs/skychat.md "Wire"): the
// bytes a skychat app receives from a peer. The first input byte sets the chunk size (1...64) the
// rest is fed in, as a stream arrives in pieces.
// Invariants: the frames decoded chunk by chunk are those decoded from the whole input at once,
// and so is the error; each decoded frame re-encodes to exactly the bytes it was read from (the
// encoding is canonical); texts and names stay within their bounds; the decoder never holds more
// than one header, one maximal payload and one chunk; after an error every call throws the same error.
import FuzzSupport
import SkywireWire

private func decodeAll(_ bytes: [UInt8], chunk: Int) -> DecodeOutcome<ChatFrame, ChatProtocolError> {
    var decoder = ChatFrameDecoder()
    return decodeInChunks(bytes, chunk: chunk, maxHeld: ChatProtocol.headerLength + ChatProtocol.maxPayload,
                          feed: { decoder.feed($0) }, held: { decoder.bufferedBytes }, next: { () throws(ChatProtocolError) in try decoder.next() })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChatFrame(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    checkCanonicalFrames(data, size, maxFrame: ChatProtocol.headerLength + ChatProtocol.maxPayload, decode: decodeAll,
                         encode: { try? $0.encoded() }) { frame in
        if case .message(let m) = frame {
            invariant(ChatProtocol.textProblem(m.text) == nil, "a text out of bounds was accepted")
            invariant(m.group.map { ChatProtocol.groupNameProblem($0.name) == nil } ?? true, "a group name out of bounds was accepted")
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let frames: [(String, ChatFrame)] = [
            ("message", .message(ChatWireMessage(id: 1, timeMillis: 1_764_950_000_000, text: "hello"))),
            ("message-utf8", .message(ChatWireMessage(id: 2, timeMillis: 3, text: "héllo ✓"))),
            ("message-group", .message(ChatWireMessage(id: 3, timeMillis: 4, group: ChatGroupRef(id: 0xABCDEF, name: "friends"), text: "all"))),
            ("ack", .ack(id: 1, status: .delivered)),
            ("ack-retry", .ack(id: 2, status: .retryLater)),
        ]
        var seeds = frames.map { (name: $0.0, bytes: [UInt8(7)] + ((try? $0.1.encoded()) ?? [])) }
        seeds.append((name: "two-messages", bytes: [UInt8(3)] + ((try? frames[0].1.encoded()) ?? []) + ((try? frames[2].1.encoded()) ?? [])))
        return seeds
    }
    return 0
}

@_cdecl("fuzz_chat_frame_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
