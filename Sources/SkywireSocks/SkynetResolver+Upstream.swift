import NIOCore
import SkywireIO
import SkywireSystem

/// A resolver request for the `--upstream` SOCKS5 server (any name that is not `.skynet`/`.dmsg`,
/// any address), on the resolver's loop: connects to the server, sends a no-authentication
/// greeting and the application's request in one write, reads the server's METHOD selection
/// (the application already has the resolver's), then splices the two connections through an
/// in-memory stream pair: the server's reply and everything after it reach the application
/// unchanged. A server that picks another method is refused with 0x02 (as the skysocks client's
/// snooper does), one that closes or stays silent for `SkynetResolver.handshakeTimeout` with 0x01.
final class SkynetResolverUpstream: SocksConnectionReader {
    /// RFC 1928 §3 greeting: one method, "no authentication".
    static let greeting: [UInt8] = [Socks5.version, 1, Socks5Method.noAuthentication.rawValue]
    /// RFC 1928 §3 METHOD selection: VER, METHOD.
    static let selectionLength = 2

    private let session: SkynetResolverSession
    private let server: RawSocksSocket
    private let destination: String
    private var selection = ByteBuffer()
    private var timer: Scheduled<Void>?
    private var done = false

    private init(session: SkynetResolverSession, server: RawSocksSocket, destination: String) {
        self.session = session
        self.server = server
        self.destination = destination
    }

    /// Connects to the upstream server for `request` (refused by `session` when it cannot).
    static func connect(_ session: SkynetResolverSession, request: Socks5Request, destination: String) {
        let resolver = session.resolver
        guard let upstream = resolver.options.upstream else {
            session.refuse(destination, .generalFailure)
            return
        }
        let loop = resolver.loop
        RawTCPConnector.connect(on: loop, host: upstream.host, port: Int(upstream.port), timeout: SkynetServer.connectTimeout) { result in
            switch result {
            case .failure(let error):
                resolver.logger.info("skynet: resolver upstream unreachable", metadata: ["upstream": "\(upstream)", "error": "\(error)"])
                session.refuse(destination, SkysocksServerApp.replyCode(for: error))
            case .success(let descriptor):
                // The application left meanwhile: the descriptor closes with the result.
                guard !session.socket.connection.isClosed else { return }
                do {
                    let server = try RawSocksSocket(loop: loop, socket: descriptor, localFailureTimeout: SkynetServer.failureLinger)
                    SkynetResolverUpstream(session: session, server: server, destination: destination).start(request)
                } catch {
                    session.refuse(destination, .generalFailure)
                }
            }
        }
    }

    private func start(_ request: Socks5Request) {
        var hello = ByteBuffer(bytes: Self.greeting)
        request.write(to: &hello)
        server.write(hello)
        timer = session.resolver.loop.assumeIsolated().scheduleTask(in: SkynetResolver.handshakeTimeout) { [self] in
            fail("no METHOD selection", .generalFailure)
        }
        server.connection.read(by: self)
    }

    func connectionRead(_ buffer: ByteBuffer) {
        guard !done else { return }
        var buffer = buffer
        selection.writeBuffer(&buffer)
        guard selection.readableBytes >= Self.selectionLength,
              let version = selection.readInteger(as: UInt8.self), let method = selection.readInteger(as: UInt8.self) else { return }
        guard version == Socks5.version, method == Socks5Method.noAuthentication.rawValue else {
            fail("METHOD \(method) selected", .connectionNotAllowed)
            return
        }
        done = true
        timer?.cancel()
        // The server's reply and what follows wait in its connection for the pipe.
        server.connection.stopReading(pending: selection)
        let application = session.socket
        guard !application.connection.isClosed else {
            server.close()
            return
        }
        let resolver = session.resolver
        let (near, far) = LoopbackAppStream.makePair(on: resolver.loop)
        SkynetClientForwarder.pipe(near, to: application, leftover: ByteBuffer(), role: .client,
                                   counters: resolver.counters, logger: resolver.logger) {}
        // Bytes are counted once, on the application's side.
        SkynetClientForwarder.pipe(far, to: server, leftover: ByteBuffer(), role: .server,
                                   counters: SkysocksCounters(), logger: resolver.logger) {}
    }

    func connectionInputClosed() {
        fail("closed before its METHOD selection", .generalFailure)
    }

    private func fail(_ reason: String, _ code: Socks5ReplyCode) {
        guard !done else { return }
        done = true
        timer?.cancel()
        session.resolver.logger.info("skynet: resolver upstream failed", metadata: ["reason": "\(reason)"])
        server.close()
        session.refuse(destination, code)
    }
}
