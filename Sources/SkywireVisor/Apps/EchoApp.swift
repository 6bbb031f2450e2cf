import NIOCore
import SkywireCrypto
import SkywireTransport

/// Port 7: echoes streams and datagrams back to the sender (RFC 862 in spirit).
/// `skywire cli visor ping` uses it to test a transport end to end.
public final class EchoApp: VisorApp {
    // Sendable without exceptions: `context` is immutable; all mutable state lives in
    // per-stream `EchoSession`s, each owned by its stream (callbacks on the stream's loop).
    public static let defaultPort: UInt16 = 7
    private let context: AppContext

    /// Takes no options (`AppOptions.echo`: its `args` must be empty).
    public init(context: AppContext) {
        self.context = context
    }

    public func start() async throws {}
    public func stop() async {}
    public func status() -> AppStatusReport { AppStatusReport() }

    public func accept(stream: AppStream) -> Bool {
        let session = EchoSession(stream: stream)
        stream.setDelegate(session)
        return true
    }

    public func receive(datagram: ByteBuffer, from: PublicKey, sourcePort: UInt16) {
        context.transports.sendDatagram(to: from, destinationPort: sourcePort, sourcePort: context.port, payload: datagram)
    }
}

/// Writes back what it reads; stops reading while the stream cannot take more.
private final class EchoSession: AppStreamDelegate {
    private var stream: AppStream?

    init(stream: AppStream) { self.stream = stream }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        stream.write(data)
        if !stream.isWritable { stream.setReadPaused(true) }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        stream.finish()
        self.stream = nil
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        self.stream = nil
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if stream.isWritable { stream.setReadPaused(false) }
    }
}
