import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireCrypto
import SkywireTransport
import SkywireWire

/// Shared by the stcpr attacks: a blocking TCP socket to the target, the stcpr handshake as a
/// throw-away key (`StcprClientCodec`, the visor's own code), and bounded sends.
struct HostileStcpr {
    enum Failure: Error, CustomStringConvertible {
        case address(String)
        case system(String, Int32)
        case closed(String)
        var description: String {
            switch self {
            case .address(let s): "bad address: \(s)"
            case .system(let call, let e): "\(call): \(String(cString: strerror(e)))"
            case .closed(let s): s
            }
        }
    }

    let fd: Int32
    private var codec: StcprClientCodec
    static let connectTimeoutSeconds = 2

    /// Parses HOST:PORT (an IP literal; [v6]:port too).
    static func address(_ text: String) throws -> SocketAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw Failure.address(text)
        }
        let host = text[..<colon].filter { $0 != "[" && $0 != "]" }
        do { return try SocketAddress(ipAddress: String(host), port: port) } catch { throw Failure.address(text) }
    }

    /// A blocking socket connected to `address` (from `source` when given) with `receiveBuffer`
    /// as SO_RCVBUF (0: default).
    static func connect(_ address: SocketAddress, from source: SocketAddress? = nil, receiveBuffer: Int32 = 0) throws -> Int32 {
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure.system("socket", errno) }
        if let source {
            let rc = source.withSockAddr { sa, length in bind(fd, sa, socklen_t(length)) }
            guard rc == 0 else {
                let e = errno
                close(fd)
                throw Failure.system("bind(\(source))", e)
            }
        }
        if receiveBuffer > 0 {
            var size = receiveBuffer
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        // connect(2) honours SO_SNDTIMEO: a full backlog cannot hold the tool past its bounds.
        var tv = timeval(tv_sec: connectTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = address.withSockAddr { sa, length in Glibc.connect(fd, sa, socklen_t(length)) }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw Failure.system("connect", e)
        }
        return fd
    }

    /// Connects and completes the handshake as a fresh key; sends then time out after
    /// `sendTimeoutMillis` (so a visor that stops reading shows as a stalled send).
    init(target: SocketAddress, remote: PublicKey, receiveBuffer: Int32, sendTimeoutMillis: Int,
         from source: SocketAddress? = nil) throws {
        fd = try Self.connect(target, from: source, receiveBuffer: receiveBuffer)
        codec = try StcprClientCodec(identity: KeyPair.generate(), remote: remote)
        do {
            try Self.sendAll(fd, try codec.firstRecord())
            var header = [UInt8](repeating: 0, count: 2)
            try Self.readExactly(fd, &header)
            var body = [UInt8](repeating: 0, count: Int(header[0]) << 8 | Int(header[1]))
            try Self.readExactly(fd, &body)
            try Self.sendAll(fd, try codec.readResponse(body))
        } catch {
            close(fd)
            throw error
        }
        var tv = timeval(tv_sec: sendTimeoutMillis / 1000, tv_usec: (sendTimeoutMillis % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Seals each frame as one record, appended to `out`.
    mutating func seal(_ frames: [MuxFrame<ArraySlice<UInt8>>], into out: inout ByteBuffer) throws {
        var plain = ByteBuffer()
        for frame in frames {
            plain.clear()
            plain.writeWithUnsafeMutableBytes(minimumWritableBytes: frame.encodedLength) { (try? frame.encode(into: $0)) ?? 0 }
            try codec.seal(frame: plain, into: &out)
        }
    }

    /// Seals one already encoded frame as one record, appended to `out`.
    mutating func sealRecord(_ frame: ByteBuffer, into out: inout ByteBuffer) throws {
        try codec.seal(frame: frame, into: &out)
    }

    /// Decrypts one received record's body.
    mutating func openRecord(_ body: ByteBuffer) throws -> ByteBuffer? { try codec.open(body) }

    /// Seals `count` PING frames (opaque values from `opaque` up), appended to `out`.
    mutating func sealPings(_ count: Int, from opaque: UInt64, into out: inout ByteBuffer) throws {
        var plain = ByteBuffer()
        for i in 0..<UInt64(count) {
            plain.clear()
            plain.writeInteger(MuxFrameType.ping.rawValue)
            plain.writeInteger(opaque &+ i)
            try codec.seal(frame: plain, into: &out)
        }
    }

    /// What one bounded send gave.
    enum SendOutcome { case sent, stalled, closed(Int32) }

    /// Sends `pending`, dropping what was sent from its front (a send that times out is
    /// `.stalled`: the visor stopped reading; the rest stays in `pending`).
    func send(_ pending: inout ByteBuffer) -> SendOutcome {
        while pending.readableBytes > 0 {
            let n = pending.withUnsafeReadableBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { pending.moveReaderIndex(forwardBy: n); continue }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .stalled }
            return .closed(e)
        }
        return .sent
    }

    /// Whether the visor closed the connection (a non-blocking peek sees EOF or an error).
    static func peerClosed(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        return false
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                if errno == EINTR { continue }
                throw Failure.system("send", errno)
            }
            offset += n
        }
    }

    static func readExactly(_ fd: Int32, _ buffer: inout [UInt8]) throws {
        var offset = 0
        while offset < buffer.count {
            let n = buffer[offset...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { throw Failure.closed("the visor closed the connection during the handshake") }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.system("recv", errno)
            }
            offset += n
        }
    }

    /// Seconds on the monotonic clock.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Raises RLIMIT_NOFILE's soft limit to the hard one (root may have raised that: `ulimit -Hn`).
    static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }
}

/// The options of the attacks that complete a handshake with the visor.
struct StcprTargetOptions: ParsableArguments {
    @Option(help: "The visor's stcpr address, IP:PORT.") var addr: String
    @Option(help: "The visor's public key (hex).") var pk: String
    @Option(help: "SO_RCVBUF of the attacking socket (small: the visor's answers back up sooner).")
    var rcvbuf: Int32 = 4096

    /// Connects (from `source` when given) and completes the handshake as a fresh key.
    func connect(sendTimeoutMillis: Int, from source: SocketAddress? = nil) throws -> HostileStcpr {
        try HostileStcpr(target: try HostileStcpr.address(addr), remote: try PublicKey(hex: pk), receiveBuffer: rcvbuf,
                         sendTimeoutMillis: sendTimeoutMillis, from: source)
    }
}
