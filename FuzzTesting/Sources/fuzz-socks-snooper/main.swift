// The client app's SOCKS5 dialogue snooper (Sources/SkywireSocks/Socks5DialogueSnooper.swift).
// Input: a mode byte (bit 0: answer "no authentication" locally), then steps: a byte whose bit 0
// picks the direction and whose other bits give a length, and that many bytes from that side.
// Invariants: bytes forwarded to the server are, in order, a prefix of what the client sent (nothing
// invented, reordered or duplicated; a held greeting leaves before the request); without local
// answering, bytes forwarded to the client are a prefix of what the server sent until a UDP
// ASSOCIATE succeeds; once both directions are passthrough, everything sent has been forwarded;
// a locally answered greeting is answered with exactly 05 00.
import FuzzSupport
import NIOCore
import SkywireSocks
import SocksFuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocksSnooper(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let local = input.bool()
    var snooper = Socks5DialogueSnooper(answerNoAuthLocally: local)
    var clientSent: [UInt8] = [], serverSent: [UInt8] = []
    var toServer: [UInt8] = [], toClient: [UInt8] = []
    var udp = false
    var steps = 0
    while !input.isAtEnd && steps < 64 {
        steps += 1
        let step = input.byte()
        let bytes = input.take(Int(step >> 1))
        if step & 1 == 0 {
            clientSent += bytes
            toServer += snooper.clientBytes(ByteBuffer(bytes: bytes)).readableBytesView
            if let reply = snooper.takeLocalReply() {
                invariant(local && Array(reply.readableBytesView) == [5, 0], "local reply \(hex(reply.readableBytesView))")
            }
        } else {
            guard !udp else { continue }   // the client app reads UDP frames from here on
            serverSent += bytes
            switch snooper.serverBytes(ByteBuffer(bytes: bytes)) {
            case .forward(let c, let s):
                toClient += c.readableBytesView
                toServer += s.readableBytesView
            case .udpAssociated(let before, let reply, let request, let frames):
                toClient += before.readableBytesView
                invariant(request.command == .udpAssociate && reply.code == 0, "UDP associated on \(request) / \(reply)")
                invariant(frames.readableBytes <= serverSent.count, "more frames than server bytes")
                udp = true
            }
        }
        invariant(toServer.count <= clientSent.count && Array(clientSent[..<toServer.count]) == toServer,
                  "forwarded to the server \(hex(toServer)), the client sent \(hex(clientSent))")
        if !local && !udp {
            invariant(toClient.count <= serverSent.count && Array(serverSent[..<toClient.count]) == toClient,
                      "forwarded to the client \(hex(toClient)), the server sent \(hex(serverSent))")
        }
    }
    if snooper.isPassthrough {
        invariant(toServer == clientSent, "passthrough, yet \(clientSent.count - toServer.count) client bytes held back")
        if !local && !udp {
            invariant(toClient == serverSent, "passthrough, yet \(serverSent.count - toClient.count) server bytes held back")
        }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        func reply(_ code: Socks5ReplyCode) -> [UInt8] {
            Array(Socks5Reply.encode(code: code, boundAddress: .ipv4(0x7F00_0001), boundPort: 4000).readableBytesView)
        }
        func client(_ b: [UInt8]) -> [UInt8] { [UInt8(b.count << 1)] + b }
        func server(_ b: [UInt8]) -> [UInt8] { [UInt8(b.count << 1 | 1)] + b }
        let connect = socks5Request(.connect, .domain("example.com"), 80)
        let udp = socks5Request(.udpAssociate, .ipv4(0), 0)
        let auth = socks5SeedCredentials
        return [
            ("connect", [0] + client([5, 1, 0]) + server([5, 0]) + client(connect) + server(reply(.succeeded)) + client([1, 2, 3]) + server([4, 5])),
            ("connect-pipelined", [0] + client([5, 1, 0] + connect) + server([5, 0] + reply(.succeeded))),
            ("connect-local", [1] + client([5, 2, 0, 1]) + client(connect) + server([5, 0]) + server(reply(.succeeded))),
            ("local-refused", [1] + client([5, 1, 0] + connect) + server([5, 2])),
            ("userpass", [0] + client([5, 1, 2]) + server([5, 2]) + client(auth) + server([1, 0]) + client(connect) + server(reply(.succeeded))),
            ("udp-associate", [0] + client([5, 1, 0]) + server([5, 0]) + client(udp) + server(reply(.succeeded) + [0, 3, 1, 2, 3])),
            ("connect-refused", [0] + client([5, 1, 0] + connect) + server([5, 0] + reply(.connectionRefused))),
        ]
    }
    return 0
}

@_cdecl("fuzz_socks_snooper_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
