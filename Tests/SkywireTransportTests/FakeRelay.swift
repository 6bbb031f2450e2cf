#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireConfig
import SkywireCrypto
import SkywireIO
import SkywireSystem
@testable import SkywireTransport

/// A relay server double for `TransportManager.relaySessionFactory`: sessions by client key, and
/// each opened stream a socketpair between the opener's loop and the destination's loop (a
/// reliable byte stream, as a relay stream is). `misrouteTo`: streams go to that key's session
/// instead of the one asked for (a lying relay).
final class FakeRelay: @unchecked Sendable {
    // @unchecked Sendable: `sessions`, `misrouteTo` and `opened` are guarded by `lock`.
    let key = KeyPair.generate().publicKey
    private let lock = NIOLock()
    private var sessions: [PublicKey: FakeRelaySession] = [:]
    var misrouteTo: PublicKey? {
        get { lock.withLock { _misrouteTo } }
        set { lock.withLock { _misrouteTo = newValue } }
    }
    private var _misrouteTo: PublicKey?
    /// Streams opened through this relay.
    var opened: Int { lock.withLock { _opened } }
    private var _opened = 0

    var server: DmsgServerAddress {
        DmsgServerAddress(publicKey: key, address: HostPort(host: "192.0.2.1", port: 9100))
    }

    /// The factory a manager uses: its session registers under its own key.
    func factory(for client: PublicKey) -> RelaySessionFactory {
        { [self] server, loop, _, _, hooks in
            precondition(server.publicKey == key)
            let session = FakeRelaySession(relay: self, client: client, loop: loop, hooks: hooks)
            lock.withLock { sessions[client] = session }
            loop.execute { session.hooks.established() }
            return session
        }
    }

    /// A factory for a client of several relays: each session goes to the relay of its server's key.
    static func factory(for client: PublicKey, among relays: [FakeRelay]) -> RelaySessionFactory {
        { server, loop, identity, logger, hooks in
            guard let relay = relays.first(where: { $0.key == server.publicKey }) else {
                throw TransportError(.unreachable, "no fake relay \(server.publicKey.short)")
            }
            return try relay.factory(for: client)(server, loop, identity, logger, hooks)
        }
    }

    fileprivate func remove(_ client: PublicKey) {
        lock.withLock { _ = sessions.removeValue(forKey: client) }
    }

    /// Connects `from` to `to`'s session (or the misroute target); nil: no session for that key.
    fileprivate func connect(from: PublicKey, to: PublicKey) -> Int32? {
        guard let target = lock.withLock({ sessions[_misrouteTo ?? to] }) else { return nil }
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        lock.withLock { _opened += 1 }
        let far = fds[1]
        target.loop.execute {
            let pipe = DescriptorPipe(loop: target.loop, descriptor: OwnedDescriptor(taking: far), name: "dmsg")
            if !target.hooks.incoming(from, pipe) { pipe.close() }
        }
        return fds[0]
    }
}

/// One client's session with a `FakeRelay`. Loop-confined.
final class FakeRelaySession: RelaySession, @unchecked Sendable {
    // @unchecked Sendable: immutable but for `open`, which runs on `loop`.
    private let relay: FakeRelay
    private let client: PublicKey
    let loop: EpollEventLoop
    let hooks: RelaySessionHooks
    private(set) var isEstablished = true
    var relayKey: PublicKey { relay.key }
    /// Streams are socketpairs the fake does not track.
    var streamCount: Int { 0 }
    var localIP: IPAddress? { nil }
    func probe(timeout: TimeAmount) {}

    init(relay: FakeRelay, client: PublicKey, loop: EpollEventLoop, hooks: RelaySessionHooks) {
        self.relay = relay
        self.client = client
        self.loop = loop
        self.hooks = hooks
    }

    func open(to remote: PublicKey, _ done: @escaping (Result<LinkPipe, TransportError>) -> Void) {
        guard let fd = relay.connect(from: client, to: remote) else {
            done(.failure(TransportError(.unreachable, "relay: no session for \(remote.short)")))
            return
        }
        done(.success(DescriptorPipe(loop: loop, descriptor: OwnedDescriptor(taking: fd), name: "dmsg")))
    }

    func close(reason: String) {
        guard isEstablished else { return }
        isEstablished = false
        relay.remove(client)
        hooks.closed(reason)
    }
}
