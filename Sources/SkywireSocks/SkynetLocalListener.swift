import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireSystem
import SkywireTransport

/// The local side of a SkyNet client forward and of the resolver: a raw TCP listener on an
/// `EpollEventLoop` whose accepted connections become `RawSocksSocket`s, each counted against a
/// cap (beyond it the connection is closed at once). Sendable: the listener is touched on `loop`
/// only, behind `listener`'s lock; counters and registry lock inside.
final class SkynetLocalListener: Sendable {
    let loop: EpollEventLoop
    let counters = SkysocksCounters()
    let registry = SkysocksSessionRegistry()
    private let cap: Int
    /// Given to accepted sockets: how long a connection closing with unsent bytes may linger.
    private let lingerTimeout: TimeAmount
    private let logger: Logger
    private let listener = NIOLockedValueBox<LoopTransfer<RawTCPListener>?>(nil)

    init(loop: EpollEventLoop, cap: Int, lingerTimeout: TimeAmount, logger: Logger) {
        self.loop = loop
        self.cap = cap
        self.lingerTimeout = lingerTimeout
        self.logger = logger
    }

    var status: SkysocksStatus {
        var status = counters.snapshot
        status.activeSessions = registry.count
        return status
    }

    /// Binds `host` (an IP literal) and `port`. `onAccept` gets each admitted connection with its
    /// registry id, `onRefused` the reason of one closed at once; both run on `loop`.
    func start(host: String, port: UInt16, onAccept: @escaping (RawSocksSocket, Int) -> Void,
               onRefused: @escaping (String) -> Void) -> EventLoopFuture<SocketAddress> {
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: host, port: Int(port))
        } catch {
            return loop.makeFailedFuture(error)
        }
        let this = self, loop = self.loop
        let accept = LoopTransfer(value: onAccept), refuse = LoopTransfer(value: onRefused)
        return loop.submit {
            let listener = try RawTCPListener(loop: loop, address: address, backlog: SkysocksClientApp.backlog) { fd in
                this.accepted(OwnedDescriptor(taking: fd), onAccept: accept.value, onRefused: refuse.value)
            }
            this.listener.withLockedValue { $0 = LoopTransfer(value: listener) }
            return address
        }
    }

    /// Closes the listener and aborts every admitted connection.
    func stop() -> EventLoopFuture<Void> {
        let listener = self.listener.withLockedValue { value in
            defer { value = nil }
            return value
        }
        registry.closeAll()
        return loop.submit { listener?.value.close() }
    }

    private func accepted(_ descriptor: OwnedDescriptor, onAccept: (RawSocksSocket, Int) -> Void, onRefused: (String) -> Void) {
        let socket: RawSocksSocket
        do {
            socket = try RawSocksSocket(loop: loop, socket: descriptor, localFailureTimeout: lingerTimeout)
        } catch {
            logger.notice("skynet: could not set up an accepted connection", metadata: ["error": "\(error)"])
            return
        }
        counters.update { $0.totalSessions += 1 }
        guard let id = registry.register(limit: cap) else {
            counters.update { $0.failedSessions += 1 }
            socket.connection.closeUnattached()
            onRefused("connection cap \(cap) reached")
            return
        }
        onAccept(socket, id)
    }
}
