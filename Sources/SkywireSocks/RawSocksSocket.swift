import NIOCore
import SkywireSystem
import SkywireIO

/// The TCP connection under a SOCKS session (the application's connection in the client app, the
/// exit connection in the server app, the target's in skynet), as `SocksConnection` and
/// `SocksStreamPipe` drive it: a `RawStreamSocket` (connected, non-blocking, on an
/// `EpollEventLoop`, half-closure allowed, NIO's watermarks) whose events go to its
/// `SocksConnection`. Loop thread only.
final class RawSocksSocket: RawStreamSocket {
    let connection: SocksConnection

    /// Takes `socket` (connected, non-blocking) and starts reading. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, localFailureTimeout: TimeAmount) throws {
        connection = SocksConnection(localFailureTimeout: localFailureTimeout)
        try super.init(loop: loop, socket: socket)
        connection.socket = self
    }

    override func socketRead(_ buffer: ByteBuffer) { connection.socketRead(buffer) }
    override func socketInputClosed() { connection.socketInputClosed() }
    override func socketWritabilityChanged(_ writable: Bool) { connection.socketWritabilityChanged(writable) }
    override func socketErrorCaught() { connection.socketErrorCaught() }
    override func socketClosed() { connection.socketClosed() }
}
