import Logging
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem

/// One session with a dmsg relay server as the visor uses it (docs/dmsg.md): it opens streams
/// to keys and hands over the streams others open to us. Confined to its `EpollEventLoop`; every
/// callback runs there. `DmsgClientSession` (the relay wire protocol) is the real one.
protocol RelaySession: AnyObject {
    var relayKey: PublicKey { get }
    var isEstablished: Bool { get }
    /// Streams open or opening through it (an on-demand session with none is closed when idle).
    var streamCount: Int { get }
    /// The session's local IP address (its TCP connection's), nil when unknown.
    var localIP: IPAddress? { get }
    /// Checks the session after an uplink change: ends it unless the relay answers within `timeout`.
    func probe(timeout: TimeAmount)
    /// Opens a stream to `remote`; `done` once, on the session's loop.
    func open(to remote: PublicKey, _ done: @escaping (Result<LinkPipe, TransportError>) -> Void)
    func close(reason: String)
}

/// What a relay session reports to its owner (on its loop).
struct RelaySessionHooks {
    /// The relay confirmed the session.
    var established: () -> Void
    /// Someone opened a stream to us: `claimed` is the key the relay says it comes from (not
    /// authenticated: the stcpr handshake inside the stream does that). False refuses it.
    var incoming: (_ claimed: PublicKey, _ pipe: LinkPipe) -> Bool
    /// The session ended (a redial is the owner's job).
    var closed: (_ reason: String) -> Void
}

/// Starts a session with `server` on `loop` (dialling at once); the pool calls it on `loop`.
typealias RelaySessionFactory = (_ server: DmsgServerAddress, _ loop: EpollEventLoop, _ identity: KeyPair,
                                 _ logger: Logger, _ hooks: RelaySessionHooks) throws -> RelaySession
