import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem

/// `RelaySession` on the dmsg relay client (`DmsgClientSession`, PROTOCOL.md §7): each relay
/// stream becomes an `InboxPipe` the stcpr link runs in. Confined to the session's loop.
final class DmsgRelaySession: RelaySession {
    private let session: DmsgClientSession

    private init(session: DmsgClientSession) {
        self.session = session
    }

    /// `RelaySessionFactory`: dials `server` on `loop` (on `loop`).
    static func make(server: DmsgServerAddress, loop: EpollEventLoop, identity: KeyPair, logger: Logger,
                     hooks: RelaySessionHooks) throws -> RelaySession {
        let session = try DmsgClientSession(
            loop: loop, identity: identity, relay: server.publicKey, host: server.address.host,
            port: Int(server.address.port), logger: logger,
            hooks: DmsgClientSession.Hooks(
                incoming: { stream in hooks.incoming(stream.remoteKey, StreamSink.pipe(for: stream, on: loop)) },
                established: hooks.established,
                closed: hooks.closed))
        return DmsgRelaySession(session: session)
    }

    var relayKey: PublicKey { session.relayKey }
    var isEstablished: Bool { session.isEstablished }
    var streamCount: Int { session.streamCount }
    var localIP: IPAddress? { session.localAddress?.ipAddress.flatMap(IPAddress.init) }
    func probe(timeout: TimeAmount) { session.probe(timeout: timeout) }

    func open(to remote: PublicKey, _ done: @escaping (Result<LinkPipe, TransportError>) -> Void) {
        let loop = session.loop
        session.open(to: remote) { result in
            switch result {
            case .success(let stream): done(.success(StreamSink.pipe(for: stream, on: loop)))
            case .failure(let error): done(.failure(TransportError(.unreachable, "\(error)")))
            }
        }
    }

    func close(reason: String) { session.close(reason: reason) }
}

/// The link's side of one `DmsgStream`: writes in chunks while the stream takes them, and
/// remembers when it stopped (the stream then calls `onWritable`).
private final class StreamSink {
    /// Bytes handed to the stream per write (one relay DATA frame's worth of records or less).
    static let writeChunk = 32 * 1024

    private let stream: DmsgStream
    /// The stream's last `write` returned false; `onWritable` clears it.
    private var full = false

    private init(stream: DmsgStream) { self.stream = stream }

    /// An `InboxPipe` fed by `stream` (data, writability, close) and writing to it.
    static func pipe(for stream: DmsgStream, on loop: EpollEventLoop) -> InboxPipe {
        let sink = StreamSink(stream: stream)
        let pipe = InboxPipe(loop: loop, sink: InboxPipe.Sink(
            write: { buffer in try sink.write(&buffer) },
            isWritable: { !sink.full && stream.isOpen },
            pauseReading: { stream.pauseReading() },
            resumeReading: { stream.resumeReading() },
            close: { stream.close() }))
        stream.onData = { [weak pipe] bytes in pipe?.receive(bytes) }
        // Weak: the pipe holds the sink (its closures), the stream holds these callbacks.
        stream.onWritable = { [weak pipe, weak sink] in
            sink?.full = false
            pipe?.sinkWritable()
        }
        stream.onClosed = { [weak pipe] _ in pipe?.receiveClose() }
        return pipe
    }

    private func write(_ buffer: inout ByteBuffer) throws -> Bool {
        guard stream.isOpen else { throw TransportError(.closed, "relay stream closed") }
        guard !full else { return false }
        guard let chunk = buffer.readSlice(length: min(buffer.readableBytes, Self.writeChunk)) else { return false }
        full = !stream.write(chunk)
        return true
    }
}
