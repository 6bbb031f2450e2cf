import NIOCore
import SkywireCrypto

/// Where a transport hands incoming streams and datagrams: the visor's app table.
public protocol AppRouter: AnyObject, Sendable {
    /// Called on the stream's event loop. Return nil when an app took the stream,
    /// or the reason it was refused.
    func route(stream: AppStream, destinationPort: UInt16) -> AppStreamResetCode?
    func route(datagram: ByteBuffer, from: PublicKey, destinationPort: UInt16, sourcePort: UInt16)
}
