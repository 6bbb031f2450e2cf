import NIOCore

/// Follows a SOCKS5 dialogue passing through the client app (client ↔ stream) without taking part in it,
/// to learn whether it becomes a UDP ASSOCIATE. Bytes in, bytes to forward out. No I/O.
///
/// Client bytes are forwarded message by message once parsed; bytes after the greeting are held until
/// the server's METHOD selection shows whether an RFC 1929 sub-negotiation follows. After a UDP ASSOCIATE
/// request, further client bytes on the TCP connection are dropped (the stream then carries UDP frames).
/// Anything the snooper cannot parse is passed through unchanged: the server app is the one that
/// validates and answers.
public struct Socks5DialogueSnooper {
    private enum ClientState { case greeting, awaitingMethod, authentication, request, passthrough, udpControl }
    private enum ServerState { case method, authStatus, reply, passthrough, udp }

    public enum ServerOutput: Equatable {
        /// Forward `toClient` to the application and `toServer` (held client bytes released) to the stream.
        case forward(toClient: ByteBuffer, toServer: ByteBuffer)
        /// The server accepted a UDP ASSOCIATE: the client app binds its relay, sends `before` (method
        /// selection / auth status that arrived in the same read) and then `reply` (rewritten) to the
        /// application, and treats `frames` and all later stream bytes as UDP frames.
        case udpAssociated(before: ByteBuffer, reply: Socks5Reply, request: Socks5Request, frames: ByteBuffer)
    }

    private var clientState: ClientState = .greeting
    private var serverState: ServerState = .method
    private var clientHeld: ByteBuffer
    private var serverHeld: ByteBuffer
    private var udpRequest: Socks5Request?
    private let allocator: ByteBufferAllocator
    private let answerNoAuthLocally: Bool
    /// The METHOD selection was answered here; the server's own is checked and swallowed.
    public private(set) var methodAnsweredLocally = false
    private var localReply: ByteBuffer?
    /// A locally answered greeting, held so that it leaves together with the request (one batch).
    private var heldGreeting: ByteBuffer?
    /// Total client bytes held before the dialogue must have ended (RFC 1928/1929 messages are short).
    public static let maxHeldBytes = 4096

    /// With `answerNoAuthLocally`, a greeting that offers "no authentication" and not username/password
    /// is answered here at once (`takeLocalReply`) and the request follows the greeting to the server
    /// without waiting for its METHOD selection: one round trip over the transport less. The server's
    /// selection is then checked: anything but "no authentication" becomes reply 0x02 (not allowed) to
    /// the application.
    public init(allocator: ByteBufferAllocator = ByteBufferAllocator(), answerNoAuthLocally: Bool = false) {
        self.allocator = allocator
        self.answerNoAuthLocally = answerNoAuthLocally
        clientHeld = allocator.buffer(capacity: 0)
        serverHeld = allocator.buffer(capacity: 0)
    }

    /// True once both directions are plain byte pipes (CONNECT established, or the dialogue failed).
    public var isPassthrough: Bool { clientState == .passthrough && serverState == .passthrough }

    /// True once any server byte was forwarded to the application (the app has started reading replies).
    public private(set) var hasForwardedServerBytes = false

    /// Bytes to write to the application now (the local METHOD selection), once.
    public mutating func takeLocalReply() -> ByteBuffer? {
        defer { localReply = nil }
        return localReply
    }

    /// Client bytes: returns what to forward to the stream now (possibly empty).
    public mutating func clientBytes(_ data: ByteBuffer) -> ByteBuffer {
        switch clientState {
        case .passthrough:
            guard heldGreeting != nil else { return data }
            var forward = allocator.buffer(capacity: 0)
            releaseHeldGreeting(to: &forward)
            var data = data
            forward.writeBuffer(&data)
            return forward
        case .udpControl:
            return allocator.buffer(capacity: 0)
        default:
            Self.append(data, to: &clientHeld)
            if clientHeld.readableBytes > Self.maxHeldBytes { clientState = .passthrough }
            return advanceClient()
        }
    }

    /// Stream bytes from the server.
    public mutating func serverBytes(_ data: ByteBuffer) -> ServerOutput {
        if serverState == .passthrough {
            hasForwardedServerBytes = hasForwardedServerBytes || data.readableBytes > 0
            return .forward(toClient: data, toServer: allocator.buffer(capacity: 0))
        }
        Self.append(data, to: &serverHeld)
        var toClient = allocator.buffer(capacity: 0)
        loop: while true {
            switch serverState {
            case .method:
                guard let version = serverHeld.getInteger(at: serverHeld.readerIndex, as: UInt8.self),
                      let method = serverHeld.getInteger(at: serverHeld.readerIndex + 1, as: UInt8.self)
                else { break loop }
                guard version == Socks5.version else { passthroughBoth(); break loop }
                if methodAnsweredLocally {
                    serverHeld.moveReaderIndex(forwardBy: 2)
                    guard Socks5Method(rawValue: method) == .noAuthentication else {
                        // The application was told "no authentication"; the server wants otherwise.
                        serverHeld.clear()
                        Socks5Reply.write(code: .connectionNotAllowed, to: &toClient)
                        passthroughBoth()
                        break loop
                    }
                    serverState = .reply
                    continue loop
                }
                moveServer(2, to: &toClient)
                switch Socks5Method(rawValue: method) {
                case .noAuthentication:
                    serverState = .reply
                    if clientState == .awaitingMethod { clientState = .request }
                case .usernamePassword:
                    serverState = .authStatus
                    if clientState == .awaitingMethod { clientState = .authentication }
                default:
                    passthroughBoth()
                    break loop
                }
            case .authStatus:
                guard let status = serverHeld.getInteger(at: serverHeld.readerIndex + 1, as: UInt8.self) else {
                    break loop
                }
                moveServer(2, to: &toClient)
                if status != Socks5.authStatusSuccess { passthroughBoth(); break loop }
                serverState = .reply
            case .reply:
                switch Socks5Parser.parseReply(serverHeld) {
                case .incomplete:
                    break loop
                case .invalid:
                    passthroughBoth()
                    break loop
                case .complete(let reply, let length):
                    if reply.code == Socks5ReplyCode.succeeded.rawValue, let request = udpRequest {
                        serverHeld.moveReaderIndex(forwardBy: length)
                        serverState = .udp
                        let frames = serverHeld
                        serverHeld = allocator.buffer(capacity: 0)
                        hasForwardedServerBytes = true
                        return .udpAssociated(before: toClient, reply: reply, request: request, frames: frames)
                    }
                    passthroughBoth()
                    break loop
                }
            case .passthrough, .udp:
                break loop
            }
        }
        if serverState == .passthrough, serverHeld.readableBytes > 0 {
            toClient.writeBuffer(&serverHeld)
        }
        if toClient.readableBytes > 0 { hasForwardedServerBytes = true }
        let toServer = clientState == .udpControl ? allocator.buffer(capacity: 0) : advanceClient()
        return .forward(toClient: toClient, toServer: toServer)
    }

    private mutating func passthroughBoth() {
        clientState = clientState == .udpControl ? .udpControl : .passthrough
        serverState = .passthrough
    }

    private mutating func moveServer(_ count: Int, to output: inout ByteBuffer) {
        if var slice = serverHeld.readSlice(length: count) { output.writeBuffer(&slice) }
    }

    private mutating func advanceClient() -> ByteBuffer {
        var forward = allocator.buffer(capacity: 0)
        // A pipe holds nothing back: a greeting held for the request leaves as soon as the dialogue
        // turned passthrough, even with no client bytes waiting (the server ended it).
        if clientState == .passthrough { releaseHeldGreeting(to: &forward) }
        loop: while clientHeld.readableBytes > 0 {
            switch clientState {
            case .greeting:
                switch Socks5Parser.parseGreeting(clientHeld) {
                case .incomplete: break loop
                case .invalid: clientState = .passthrough
                case .complete(let greeting, let length):
                    if answerNoAuthLocally, Self.canAnswerLocally(greeting.methods) {
                        heldGreeting = clientHeld.readSlice(length: length)
                        methodAnsweredLocally = true
                        var reply = allocator.buffer(capacity: 2)
                        reply.writeBytes([Socks5.version, Socks5Method.noAuthentication.rawValue])
                        localReply = reply
                        clientState = .request
                    } else {
                        moveClient(length, to: &forward)
                        clientState = .awaitingMethod
                    }
                }
            case .authentication:
                switch Socks5Parser.parseCredentials(clientHeld) {
                case .incomplete: break loop
                case .invalid: clientState = .passthrough
                case .complete(_, let length):
                    moveClient(length, to: &forward)
                    clientState = .request
                }
            case .request:
                switch Socks5Parser.parseRequest(clientHeld) {
                case .incomplete: break loop
                case .invalid: clientState = .passthrough
                case .complete(let request, let length):
                    releaseHeldGreeting(to: &forward)
                    moveClient(length, to: &forward)
                    if request.command == .udpAssociate {
                        udpRequest = request
                        clientState = .udpControl
                        clientHeld.clear()
                    } else {
                        clientState = .passthrough
                    }
                }
            case .passthrough:
                releaseHeldGreeting(to: &forward)
                forward.writeBuffer(&clientHeld)
            case .awaitingMethod, .udpControl:
                break loop
            }
        }
        return forward
    }

    /// RFC 1928 §3: the server picks one offered method. The server app knows only "no authentication"
    /// and username/password (RFC 1929), so for a greeting that offers 0x00 but not 0x02 (e.g. curl's
    /// `05 02 00 01`, GSSAPI being never chosen) its answer is 0x00 or 0xFF: 0x00 can be given here.
    static func canAnswerLocally(_ methods: [UInt8]) -> Bool {
        methods.contains(Socks5Method.noAuthentication.rawValue)
            && !methods.contains(Socks5Method.usernamePassword.rawValue)
    }

    private mutating func releaseHeldGreeting(to output: inout ByteBuffer) {
        if var greeting = heldGreeting {
            output.writeBuffer(&greeting)
            heldGreeting = nil
        }
    }

    private mutating func moveClient(_ count: Int, to output: inout ByteBuffer) {
        if var slice = clientHeld.readSlice(length: count) { output.writeBuffer(&slice) }
    }

    private static func append(_ data: ByteBuffer, to held: inout ByteBuffer) {
        if held.readableBytes == 0 {
            held = data
        } else {
            var data = data
            held.writeBuffer(&data)
        }
    }
}
