import NIOCore

/// Server side of the SOCKS5 dialogue up to the request (RFC 1928 §3–§4, RFC 1929): bytes in, actions out.
/// No I/O: the caller sends `Step.output`, then acts on `Step.outcome`.
public struct Socks5ServerHandshake {
    /// How the server authenticates clients.
    public enum Authentication: Sendable {
        /// METHOD 0x00 only.
        case none
        /// METHOD 0x02 only, with these credentials (RFC 1929).
        case usernamePassword(Socks5Credentials)
        /// METHOD 0x00 if offered, else 0x02 accepting any credentials (the client app's local
        /// failure responder uses this: it only needs to reach the request to answer it).
        case acceptAnything
    }

    public enum Outcome: Equatable {
        /// Waiting for more bytes.
        case needMoreData
        /// The request is complete; `pipelined` holds any bytes the client sent after it.
        case request(Socks5Request, pipelined: ByteBuffer)
        /// The dialogue failed: send `output`, then close. `reason` is for logs.
        case failed(reason: String)
    }

    public struct Step: Equatable {
        /// Bytes to send to the client (method selection, auth status, or an error reply); may be empty.
        public var output: ByteBuffer
        public var outcome: Outcome
    }

    private enum State {
        case greeting, authentication, request, finished
    }

    private let authentication: Authentication
    private var state: State = .greeting
    private var buffer: ByteBuffer
    private let allocator: ByteBufferAllocator

    public init(authentication: Authentication, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.authentication = authentication
        self.allocator = allocator
        self.buffer = allocator.buffer(capacity: 0)
    }

    /// True once a request was returned or the dialogue failed; further input is ignored.
    public var isFinished: Bool { if case .finished = state { return true } else { return false } }

    /// Feeds bytes from the client, in any split.
    public mutating func receive(_ data: ByteBuffer) -> Step {
        var output = allocator.buffer(capacity: 0)
        guard !isFinished else { return Step(output: output, outcome: .needMoreData) }
        if buffer.readableBytes == 0 {
            buffer = data
        } else {
            var data = data
            buffer.writeBuffer(&data)
        }
        while true {
            switch state {
            case .greeting:
                switch Socks5Parser.parseGreeting(buffer) {
                case .incomplete:
                    return Step(output: output, outcome: .needMoreData)
                case .invalid(_, let reason):
                    return fail(&output, reason: reason) { $0.writeBytes([Socks5.version, Socks5Method.noAcceptableMethods.rawValue]) }
                case .complete(let greeting, let length):
                    buffer.moveReaderIndex(forwardBy: length)
                    guard let method = chooseMethod(greeting.methods) else {
                        return fail(&output, reason: "no acceptable authentication method in \(greeting.methods)") {
                            $0.writeBytes([Socks5.version, Socks5Method.noAcceptableMethods.rawValue])
                        }
                    }
                    output.writeBytes([Socks5.version, method.rawValue])
                    state = method == .usernamePassword ? .authentication : .request
                }
            case .authentication:
                switch Socks5Parser.parseCredentials(buffer) {
                case .incomplete:
                    return Step(output: output, outcome: .needMoreData)
                case .invalid(_, let reason):
                    return fail(&output, reason: reason) { $0.writeBytes([Socks5.authVersion, Socks5.authStatusFailure]) }
                case .complete(let credentials, let length):
                    buffer.moveReaderIndex(forwardBy: length)
                    if case .usernamePassword(let expected) = authentication, !expected.matches(credentials) {
                        return fail(&output, reason: "wrong username or password") {
                            $0.writeBytes([Socks5.authVersion, Socks5.authStatusFailure])
                        }
                    }
                    output.writeBytes([Socks5.authVersion, Socks5.authStatusSuccess])
                    state = .request
                }
            case .request:
                switch Socks5Parser.parseRequest(buffer) {
                case .incomplete:
                    return Step(output: output, outcome: .needMoreData)
                case .invalid(let code, let reason):
                    return fail(&output, reason: reason) { Socks5Reply.write(code: code, to: &$0) }
                case .complete(let request, let length):
                    buffer.moveReaderIndex(forwardBy: length)
                    state = .finished
                    let pipelined = buffer
                    buffer = allocator.buffer(capacity: 0)
                    if request.command == .bind {
                        // Parsed in full so the reply follows the whole request; BIND is not offered.
                        return fail(&output, reason: "BIND is not supported") {
                            Socks5Reply.write(code: .commandNotSupported, to: &$0)
                        }
                    }
                    return Step(output: output, outcome: .request(request, pipelined: pipelined))
                }
            case .finished:
                return Step(output: output, outcome: .needMoreData)
            }
        }
    }

    private mutating func fail(_ output: inout ByteBuffer, reason: String,
                               _ reply: (inout ByteBuffer) -> Void) -> Step {
        reply(&output)
        state = .finished
        buffer = allocator.buffer(capacity: 0)
        return Step(output: output, outcome: .failed(reason: reason))
    }

    private func chooseMethod(_ offered: [UInt8]) -> Socks5Method? {
        let noAuth = offered.contains(Socks5Method.noAuthentication.rawValue)
        let userPass = offered.contains(Socks5Method.usernamePassword.rawValue)
        switch authentication {
        case .none: return noAuth ? .noAuthentication : nil
        case .usernamePassword: return userPass ? .usernamePassword : nil
        case .acceptAnything: return noAuth ? .noAuthentication : (userPass ? .usernamePassword : nil)
        }
    }
}
