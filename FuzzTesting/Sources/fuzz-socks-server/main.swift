// The SOCKS5 server dialogue state machine (Sources/SkywireSocks/Socks5ServerHandshake.swift).
// Input: an authentication mode byte, up to 16 read lengths, then the client's bytes.
// Invariant: the outcome does not depend on read boundaries. The bytes fed in one read and fed in the
// fuzzer's pieces give the same output bytes and the same outcome, a request's pipelined bytes (plus
// the pieces not fed yet) are exactly what followed the request, and a finished dialogue ignores
// further input without output.
import FuzzSupport
import NIOCore
import SkywireSocks
import SocksFuzzSupport

let credentials = Socks5Credentials(username: "user", password: "secret")

func authentication(_ b: UInt8) -> Socks5ServerHandshake.Authentication {
    switch b % 3 {
    case 0: return .none
    case 1: return .usernamePassword(credentials)
    default: return .acceptAnything
    }
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocksServer(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let auth = authentication(input.byte())
    let cuts = input.take(Int(input.byte() % 17))
    let stream = input.rest()

    var whole = Socks5ServerHandshake(authentication: auth)
    let w = whole.receive(buffer(stream))
    if case .needMoreData = w.outcome {
        invariant(!whole.isFinished, "needMoreData on a finished dialogue")
    } else {
        invariant(whole.isFinished, "outcome \(w.outcome) but not finished")
        let after = whole.receive(buffer([5, 1, 0]))
        invariant(after.output.readableBytes == 0 && after.outcome == .needMoreData, "a finished dialogue answered more input")
    }

    var split = Socks5ServerHandshake(authentication: auth)
    var output: [UInt8] = []
    var outcome = Socks5ServerHandshake.Outcome.needMoreData
    var unread: [UInt8] = []
    for piece in pieces(of: stream, cuts: cuts) {
        if case .needMoreData = outcome {
            let step = split.receive(buffer(piece))
            output += step.output.readableBytesView
            outcome = step.outcome
        } else {
            unread += piece
        }
    }
    invariant(output == Array(w.output.readableBytesView),
              "output differs with read boundaries: \(hex(output)) vs \(hex(w.output.readableBytesView))")
    switch (outcome, w.outcome) {
    case (.needMoreData, .needMoreData): break
    case (.failed, .failed): break
    case (.request(let r1, let p1), .request(let r2, let p2)):
        invariant(r1 == r2, "request differs with read boundaries: \(r1) vs \(r2)")
        invariant(Array(p1.readableBytesView) + unread == Array(p2.readableBytesView), "pipelined bytes differ with read boundaries")
        let consumed = stream.count - p2.readableBytes
        invariant(consumed > 0 && Array(stream[consumed...]) == Array(p2.readableBytesView), "pipelined bytes are not the input's tail")
    default:
        invariant(false, "outcome differs with read boundaries: \(outcome) vs \(w.outcome)")
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let auth = socks5SeedCredentials
        let connect = socks5Request(.connect, .domain("example.com"), 443)
        // mode, number of cuts, cuts, stream
        return [
            ("noauth-connect-whole", [0, 0] + [5, 1, 0] + connect),
            ("noauth-connect-split", [0, 4, 1, 2, 3, 4] + [5, 1, 0] + connect + Array("GET / HTTP/1.0\r\n\r\n".utf8)),
            ("userpass-connect", [1, 2, 4, 7] + [5, 1, 2] + auth + socks5Request(.connect, .ipv4(0xC000_0201), 80)),
            ("userpass-wrong", [1, 0] + [5, 1, 2] + [1, 4] + Array("user".utf8) + [6] + Array("secreT".utf8)),
            ("any-udp-associate", [2, 1, 3] + [5, 2, 0, 2] + socks5Request(.udpAssociate, .ipv4(0), 0)),
            ("noauth-bind", [0, 0] + [5, 1, 0] + socks5Request(.bind, .ipv6(0x2001_0db8_0000_0000, 1), 21)),
        ]
    }
    return 0
}

@_cdecl("fuzz_socks_server_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
