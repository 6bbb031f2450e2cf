// dmsg relay frames and routing (Sources/SkywireDmsg/, PROTOCOL.md §7.2–§7.4).
// Input: a mode byte, then records of one client byte and one length-prefixed chunk each.
// Mode even (codec): every chunk that decodes re-encodes to exactly its bytes.
// Mode odd (relay): three connected clients feed their decoded frames to one DmsgRelayCore
// (small limits: 3 streams per client, 64-byte windows); invariants: every frame the relay emits
// round-trips its encoding and goes to a connected client; no client ever takes part in more than
// its stream cap; the relay never forwards more DATA on a stream direction than was credited
// (tracked here from the frames it emitted); streams and clients stay consistent after
// disconnects (every stream gone once every client is).
import FuzzSupport
import NIOCore
import SkywireCrypto
import SkywireDmsg

let keys: [PublicKey] = (1...4).map { i in try! KeyPair.fromSeed([UInt8](repeating: UInt8(i), count: 32)).publicKey }
let limits = DmsgRelayCore.Limits(maxClients: 3, maxStreamsPerClient: 3, maxWindow: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDmsgRelay(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let relayMode = input.byte() & 1 == 1
    var core = DmsgRelayCore(limits: limits)
    if relayMode {
        for id in 0..<3 { invariant(core.connect(DmsgRelayCore.ClientID(id), key: keys[id]).isEmpty, "connect emitted frames") }
    }
    // Credit the relay granted each (client, stream) to send, as seen in the frames it emitted.
    var credit: [String: Int] = [:]
    while !input.isAtEnd {
        let client = DmsgRelayCore.ClientID(input.byte() % 4)
        let chunk = input.chunk()
        let frame: DmsgFrame
        do { frame = try DmsgFrame.decode(ByteBuffer(bytes: chunk)) } catch {
            continue
        }
        let wire = Array(frame.encoded.readableBytesView)
        invariant(wire == chunk, "\(frame) re-encodes as \(hex(wire)), input \(hex(chunk))")
        guard relayMode else { continue }
        if client == 3 {
            // Client byte 3: disconnect client (chunk length % 3).
            let gone = DmsgRelayCore.ClientID(chunk.count % 3)
            check(core.disconnect(gone), &credit, core)
            continue
        }
        if case .data(let stream, let payload) = frame, core.key(of: client) != nil {
            // What the relay will accept: never more than the credit it announced to this client.
            let key = "\(client)/\(stream)"
            if let left = credit[key], payload.readableBytes <= left { credit[key] = left - payload.readableBytes }
        }
        check(core.receive(from: client, frame), &credit, core)
        for id in 0..<3 { invariant(core.streams(of: DmsgRelayCore.ClientID(id)) <= limits.maxStreamsPerClient, "stream cap exceeded") }
    }
    if relayMode {
        for id in 0..<3 { check(core.disconnect(DmsgRelayCore.ClientID(id)), &credit, core) }
        invariant(core.streamCount == 0 && core.clientCount == 0, "streams left after every client left")
    }
    return 0
}

/// Checks the relay's output and tracks the credit its OPEN / OPEN_OK / WINDOW frames grant.
func check(_ actions: [DmsgRelayCore.Action], _ credit: inout [String: Int], _ core: DmsgRelayCore) {
    for action in actions {
        guard case .send(let to, let frame) = action else { continue }
        let wire = frame.encoded
        invariant((try? DmsgFrame.decode(wire)) == frame, "emitted \(frame) does not round-trip")
        switch frame {
        case .open(let id, _, let w), .openOK(let id, let w):
            invariant(w <= limits.maxWindow, "window \(w) above maxWindow")
            credit["\(to)/\(id)"] = Int(w)
        case .window(let id, let inc):
            let key = "\(to)/\(id)"
            credit[key, default: 0] += Int(inc)
            invariant(credit[key, default: 0] <= Int(limits.maxWindow), "credit above maxWindow on \(key)")
        case .data(let id, let payload):
            invariant(payload.readableBytes > 0, "empty DATA forwarded on \(to)/\(id)")
        default:
            break
        }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        func record(_ client: UInt8, _ frame: DmsgFrame) -> [UInt8] {
            let bytes = Array(frame.encoded.readableBytesView)
            return [client, UInt8(bytes.count)] + bytes
        }
        let open = record(0, .open(stream: 1, peer: keys[1], window: 64))
        let ok = record(1, .openOK(stream: 2, window: 64))
        let data = record(0, .data(stream: 1, payload: ByteBuffer(bytes: [1, 2, 3])))
        let window = record(1, .window(stream: 2, increment: 3))
        let close = record(1, .close(stream: 2, code: .normal))
        return [
            ("codec-every-type", [0] + open + ok + data + window + close + record(2, .ping(7)) + record(2, .pong(7))
                + record(0, .openReject(stream: 3, code: .limit))),
            ("relay-stream", [1] + open + ok + data + window + data + close),
            ("relay-absent", [1] + record(0, .open(stream: 1, peer: keys[3], window: 64))),
            ("relay-disconnect", [1] + open + ok + [3, 1, 0]),
        ]
    }
    return 0
}

@_cdecl("fuzz_dmsg_relay_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
