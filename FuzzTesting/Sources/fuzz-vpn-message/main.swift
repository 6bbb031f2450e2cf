// VPN control-stream messages (Sources/SkywireVPN/VPNMessage.swift, docs/vpn.md §2).
// Input: up to 16 read lengths, then the stream's bytes. Invariants: the decoder gives the same
// messages and the same error whatever the read boundaries; each decoded message re-encodes to
// exactly its bytes on the wire (reasons over 200 bytes: to a prefix cut at a character boundary,
// which decodes again); a SERVER_OK's server address lies in the client's prefix; nothing longer
// than the 1024-byte body limit is accepted.
import FuzzSupport
import SkywireSystem
import SkywireVPN

struct Decoded {
    var messages: [VPNMessage] = []
    var error: VPNProtocolError?
}

func decodeAll(_ pieces: [[UInt8]]) -> Decoded {
    var decoder = VPNMessageDecoder()
    var out = Decoded()
    for piece in pieces {
        decoder.append(piece)
        while true {
            do {
                guard let m = try decoder.next() else { break }
                out.messages.append(m)
            } catch {
                out.error = error
                return out
            }
        }
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVPNMessage(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let cuts = input.take(Int(input.byte() % 17))
    let stream = input.rest()
    let whole = decodeAll([stream])
    let split = decodeAll(pieces(of: stream, cuts: cuts))
    invariant(whole.messages == split.messages && whole.error == split.error,
              "read boundaries changed the result: \(whole.messages.count)/\(String(describing: whole.error)) vs "
              + "\(split.messages.count)/\(String(describing: split.error))")
    var offset = 0
    for m in whole.messages {
        let length = Int(stream[offset + 1]) << 8 | Int(stream[offset + 2])
        invariant(length <= VPNMessage.maxBodyLength, "accepted a \(length)-byte body")
        let wire = Array(stream[offset..<offset + VPNMessage.headerLength + length])
        offset += VPNMessage.headerLength + length
        let encoded = m.encoded()
        var longReason: String? = nil
        if case .forbidden(let r) = m, r.utf8.count > VPNMessage.maxReasonLength { longReason = r }
        if case .error(let r) = m, r.utf8.count > VPNMessage.maxReasonLength { longReason = r }
        if let r = longReason {
            var again = VPNMessageDecoder()
            again.append(encoded)
            let back = try? again.next()
            let cut: String?
            switch back {
            case .forbidden(let s)?, .error(let s)?: cut = s
            default: cut = nil
            }
            invariant(cut.map { r.hasPrefix($0) && $0.utf8.count <= VPNMessage.maxReasonLength } ?? false,
                      "a long reason re-encodes as \(hex(encoded))")
        } else if encoded != wire, isReason(m) {
            // Control characters in a reason are shown as spaces (docs/vpn.md §2): only a wire reason
            // that had some may re-encode differently, and what it decoded to is a fixed point.
            let wireText = String(decoding: wire[(VPNMessage.headerLength + reasonOffset(m))...], as: UTF8.self)
            var again = VPNMessageDecoder()
            again.append(encoded)
            invariant(wireText.unicodeScalars.contains { $0.properties.generalCategory == .control }
                      && (try? again.next()) == m,
                      "\(m) re-encodes as \(hex(encoded)), wire \(hex(wire))")
        } else {
            invariant(encoded == wire, "\(m) re-encodes as \(hex(encoded)), wire \(hex(wire))")
        }
        if case .serverOK(let ok) = m {
            invariant(ok.clientAddress.contains(ok.serverAddress) && ok.serverAddress != ok.clientAddress.address
                      && VPNMessage.mtuRange.contains(ok.mtu) && ok.dns.count <= VPNMessage.maxDNSServers,
                      "SERVER_OK accepted with \(ok)")
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let lan = IPPrefix("192.168.1.0/24")!, cgnat = IPPrefix("100.64.0.0/10")!
        let hello = VPNMessage.clientHello(VPNClientHello(networks: [lan, cgnat])).encoded()
        let ok = VPNMessage.serverOK(VPNServerOK(clientAddress: IPPrefix("10.200.0.2/30")!, serverAddress: IPAddress("10.200.0.1")!,
                                                 mtu: 1420, dns: [IPAddress("10.200.0.1")!, IPAddress("198.51.100.53")!])).encoded()
        let forbidden = VPNMessage.forbidden("key not whitelisted").encoded()
        let error = VPNMessage.error("address pool exhausted ✗").encoded()
        let unknown = VPNMessage.unknown(type: 0x7F, body: [1, 2, 3]).encoded()
        // cut count, cuts, stream
        return [
            ("client-hello", [0] + hello),
            ("client-hello-empty", [0] + VPNMessage.clientHello(VPNClientHello(networks: [])).encoded()),
            ("server-ok", [0] + ok),
            ("forbidden", [0] + forbidden),
            ("error-utf8", [0] + error),
            ("unknown", [0] + unknown),
            ("dialogue-split", [4, 1, 2, 5, 9] + hello + ok + unknown + forbidden),
        ]
    }
    return 0
}

@_cdecl("fuzz_vpn_message_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }

/// FORBIDDEN and ERROR carry a reason text.
func isReason(_ m: VPNMessage) -> Bool {
    switch m {
    case .forbidden, .error, .ipv6Lease(.unavailable): return true
    default: return false
    }
}

/// Where a reason starts in the body: IPV6_LEASE's comes after its version and status bytes.
func reasonOffset(_ m: VPNMessage) -> Int {
    if case .ipv6Lease(.unavailable) = m { return 2 }
    return 0
}
