// The SOCKS5 message parsers (Sources/SkywireSocks/Socks5+Parsing.swift: greeting, RFC 1929
// credentials, request, reply; Socks5UDPHeader.swift: the RFC 1928 §7 UDP header and the skysocks
// UDP framing). Every input goes through every parser, read from a buffer whose reader index is not 0.
// Invariants: a complete message never claims more bytes than given and re-encodes to exactly those
// bytes (the reply's RSV byte aside); every strict prefix of it is `incomplete`; bytes after it change
// nothing; an incomplete result stays incomplete on any prefix; the UDP frame decoder yields the same
// datagrams whatever the read boundaries.
import FuzzSupport
import NIOCore
import SkywireSocks
import SocksFuzzSupport

let allocator = ByteBufferAllocator()

/// `bytes` in a buffer whose readable bytes start after some junk, so parsers must use readerIndex.
func buffer(_ bytes: some Collection<UInt8>, junk: Int = 3) -> ByteBuffer {
    var b = allocator.buffer(capacity: bytes.count + junk)
    b.writeRepeatingByte(0xEE, count: junk)
    b.writeBytes(bytes)
    b.moveReaderIndex(forwardBy: junk)
    return b
}

func encode(_ body: (inout ByteBuffer) -> Void) -> [UInt8] {
    var b = allocator.buffer(capacity: 64)
    body(&b)
    return b.readBytes(length: b.readableBytes) ?? []
}

/// The shared checks for one parser; `reencode` rebuilds a complete message (nil: not comparable).
func check<V>(_ name: String, _ bytes: [UInt8], _ parse: (ByteBuffer) -> Socks5ParseResult<V>, reencode: (V, [UInt8]) -> [UInt8]) {
    let result = parse(buffer(bytes))
    switch result {
    case .complete(let value, let length):
        invariant(length > 0 && length <= bytes.count, "\(name): length \(length) of \(bytes.count) bytes")
        let message = Array(bytes[..<length])
        let rebuilt = reencode(value, message)
        invariant(rebuilt == message, "\(name): \(value) re-encodes as \(hex(rebuilt)), input \(hex(message))")
        for k in 0..<length {
            invariant(parse(buffer(bytes[..<k])) == .incomplete, "\(name): the \(k)-byte prefix of a \(length)-byte message is not incomplete")
        }
        invariant(parse(buffer(message + [0x05, 0x01, 0x00], junk: 0)) == result, "\(name): trailing bytes changed the result")
    case .incomplete:
        if !bytes.isEmpty {
            invariant(parse(buffer(bytes.dropLast())) == .incomplete, "\(name): incomplete, but a shorter prefix is not")
        }
    case .invalid(_, let reason):
        invariant(!reason.isEmpty, "\(name): invalid without a reason")
    }
}

func writeAddress(_ address: Socks5Address, port: UInt16, to b: inout ByteBuffer) {
    address.write(to: &b)
    b.writeInteger(port)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSocksParsers(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    check("greeting", bytes, Socks5Parser.parseGreeting) { g, _ in [Socks5.version, UInt8(g.methods.count)] + g.methods }
    check("credentials", bytes, Socks5Parser.parseCredentials) { c, _ in
        [Socks5.authVersion, UInt8(c.username.count)] + c.username + [UInt8(c.password.count)] + c.password
    }
    check("request", bytes, Socks5Parser.parseRequest) { r, _ in
        encode { b in
            b.writeBytes([Socks5.version, r.command.rawValue, Socks5.reserved])
            writeAddress(r.address, port: r.port, to: &b)
        }
    }
    check("reply", bytes, Socks5Parser.parseReply) { r, message in
        encode { b in
            b.writeBytes([Socks5.version, r.code, message[2]])   // RSV is not checked in replies
            writeAddress(r.boundAddress, port: r.boundPort, to: &b)
        }
    }
    check("address", bytes, { Socks5Parser.parseAddressAndPort($0, at: $0.readerIndex) }) { a, _ in
        encode { writeAddress(a.address, port: a.port, to: &$0) }
    }

    // RFC 1928 §7 UDP header.
    if case .success(let (header, length)) = Socks5UDPHeader.parse(buffer(bytes)) {
        invariant(length <= bytes.count && length == header.encodedLength, "UDP header length \(length), encodedLength \(header.encodedLength)")
        let rebuilt = encode { header.write(to: &$0) }
        invariant(rebuilt == Array(bytes[..<length]), "UDP header \(header) re-encodes as \(hex(rebuilt))")
    }

    // skysocks UDP framing: whole vs. split at boundaries taken from the input itself.
    var whole = SkysocksUDPFrameDecoder()
    whole.append(buffer(bytes))
    var expected: [[UInt8]] = []
    while let d = whole.next() { expected.append(Array(d.readableBytesView)) }
    var split = SkysocksUDPFrameDecoder()
    var got: [[UInt8]] = []
    for piece in pieces(of: bytes, cuts: Array(bytes.prefix(16))) {
        split.append(buffer(piece))
        while let d = split.next() { got.append(Array(d.readableBytesView)) }
        invariant(split.bufferedBytes <= SkysocksUDPFraming.lengthPrefixSize + SkysocksUDPFraming.maxDatagramSize + 255,
                  "UDP frame decoder holds \(split.bufferedBytes) bytes")
    }
    invariant(got == expected, "UDP frames differ with read boundaries: \(got.count) vs \(expected.count)")
    invariant(whole.bufferedBytes == split.bufferedBytes, "UDP frame decoder leftovers differ")
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        let v6 = Socks5Address.ipv6(0x2001_0db8_0000_0000, 1)
        var udp = encode { Socks5UDPHeader(address: .ipv4(0xC000_0201), port: 53).write(to: &$0) }
        udp += [0xAB, 0xCD]
        return [
            ("greeting-noauth", [5, 1, 0]),
            ("greeting-curl", [5, 2, 0, 1]),
            ("greeting-userpass", [5, 2, 0, 2]),
            ("credentials", socks5SeedCredentials),
            ("request-connect-ipv4", socks5Request(.connect, .ipv4(0xC000_0201), 80)),
            ("request-connect-ipv6", socks5Request(.connect, v6, 443)),
            ("request-connect-domain", socks5Request(.connect, .domain("example.com"), 443)),
            ("request-udp-associate", socks5Request(.udpAssociate, .ipv4(0), 0)),
            ("request-bind", socks5Request(.bind, .ipv4(0), 0)),
            ("reply-succeeded", encode { Socks5Reply.write(code: .succeeded, boundAddress: .ipv4(0x7F00_0001), boundPort: 1080, to: &$0) }),
            ("reply-refused-ipv6", encode { Socks5Reply.write(code: .connectionRefused, boundAddress: v6, to: &$0) }),
            ("udp-header-ipv4", udp),
            ("udp-header-domain", encode { Socks5UDPHeader(address: .domain("example.org"), port: 123).write(to: &$0) }),
            ("udp-frames", [0, 3, 1, 2, 3, 0, 0, 0, 1, 9]),
        ]
    }
    return 0
}

@_cdecl("fuzz_socks_parsers_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
