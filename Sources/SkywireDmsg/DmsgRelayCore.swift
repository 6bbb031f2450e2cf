import NIOCore
import SkywireCrypto

/// The relay server's routing state (PROTOCOL.md §7.3–§7.4) without I/O: authenticated client
/// sessions by key, the streams between them, and each stream direction's credit. Frames in,
/// `Action`s out. The I/O layer (`DmsgRelayServer`) calls `connect` only after a client's
/// handshake is confirmed, so nothing here exists for an unauthenticated socket.
///
/// Flow control is end to end: the relay passes OPEN/OPEN_OK windows (clamped to
/// `Limits.maxWindow`) and WINDOW increments through and checks that no side sends DATA beyond
/// what the other side credited, so what it queues toward a client on one stream never exceeds
/// `maxWindow`, and toward one client `maxStreamsPerClient × maxWindow`.
public struct DmsgRelayCore {
    /// The I/O layer's handle for one client session.
    public typealias ClientID = UInt64

    public struct Limits: Sendable, Equatable {
        /// Authenticated sessions at once; beyond it a newly confirmed client is closed.
        public var maxClients = 10_000
        /// Streams one client takes part in (opened by it or to it).
        public var maxStreamsPerClient = 64
        /// Largest credit one side may grant on one stream (bytes the relay may have to queue).
        public var maxWindow: UInt32 = 256 * 1024

        public init(maxClients: Int = 10_000, maxStreamsPerClient: Int = 64, maxWindow: UInt32 = 256 * 1024) {
            self.maxClients = maxClients
            self.maxStreamsPerClient = maxStreamsPerClient
            self.maxWindow = maxWindow
        }
    }

    public enum Action: Equatable, Sendable {
        case send(ClientID, DmsgFrame)
        /// End this session (the I/O layer closes its socket and then calls `disconnect`).
        case close(ClientID, reason: String)
    }

    /// What the relay counted (served as JSON by `/health`).
    public struct Counters: Sendable, Equatable {
        public var streamsOpened = 0
        /// DATA payload bytes forwarded from clients that opened the stream to those that accepted, and back.
        public var bytesOpenerToAcceptor: UInt64 = 0
        public var bytesAcceptorToOpener: UInt64 = 0
        /// OPENs the relay or the destination refused, by `DmsgRejectCode.name`.
        public var refusals: [String: Int] = [:]
        /// Streams the relay reset for breaking flow control or ordering.
        public var streamProtocolErrors = 0
        /// Sessions closed because the same key confirmed a newer one.
        public var replacedSessions = 0
        /// Confirmed clients closed because `maxClients` were connected.
        public var refusedClientsFull = 0

        public init() {}
    }

    /// One client's side of a stream.
    struct Leg {
        enum State { case opening, accepting, open }
        var state: State
        let peer: Client.End
        let opener: Bool
        /// DATA payload bytes this client may still send (the peer's credit to it).
        var credit: UInt32
    }

    struct Client {
        struct End: Hashable { let client: ClientID; let stream: DmsgStreamID }
        let key: PublicKey
        var legs: [DmsgStreamID: Leg] = [:]
        /// The largest odd id this client opened (ids increase).
        var lastOpened: DmsgStreamID = 0
        /// The next even id the relay gives a stream opened to this client.
        var nextRelayID: DmsgStreamID = 2
    }

    public let limits: Limits
    private var clients: [ClientID: Client] = [:]
    private var byKey: [PublicKey: ClientID] = [:]
    public private(set) var counters = Counters()

    public init(limits: Limits = Limits()) { self.limits = limits }

    public var clientCount: Int { clients.count }
    /// Streams between two clients (each counted once).
    public var streamCount: Int { clients.values.reduce(0) { $0 + $1.legs.count } / 2 }
    public func key(of client: ClientID) -> PublicKey? { clients[client]?.key }
    public func client(for key: PublicKey) -> ClientID? { byKey[key] }
    public func streams(of client: ClientID) -> Int { clients[client]?.legs.count ?? 0 }

    // MARK: Sessions

    /// A client confirmed its handshake as `key`. A session of the same key is replaced (its
    /// holder redialled); beyond `maxClients` the new one is closed.
    public mutating func connect(_ id: ClientID, key: PublicKey) -> [Action] {
        var actions: [Action] = []
        if let old = byKey[key] {
            counters.replacedSessions += 1
            actions += disconnect(old)
            actions.append(.close(old, reason: "replaced by a newer session of \(key.short)"))
        }
        guard clients.count < limits.maxClients else {
            counters.refusedClientsFull += 1
            return actions + [.close(id, reason: "relay full: \(limits.maxClients) clients")]
        }
        clients[id] = Client(key: key)
        byKey[key] = id
        return actions
    }

    /// A session ended: every stream it had ends, its peers are told (OPEN_REJECT for an OPEN
    /// still unanswered, CLOSE peer-gone otherwise). Idempotent.
    public mutating func disconnect(_ id: ClientID) -> [Action] {
        guard let client = clients.removeValue(forKey: id) else { return [] }
        if byKey[client.key] == id { byKey[client.key] = nil }
        var actions: [Action] = []
        for (_, leg) in client.legs.sorted(by: { $0.key < $1.key }) {
            guard let peerLeg = clients[leg.peer.client]?.legs.removeValue(forKey: leg.peer.stream) else { continue }
            if peerLeg.state == .opening {
                actions.append(.send(leg.peer.client, .openReject(stream: leg.peer.stream, code: .noSession)))
            } else {
                actions.append(.send(leg.peer.client, .close(stream: leg.peer.stream, code: .peerGone)))
            }
        }
        return actions
    }

    // MARK: Frames

    /// One frame from a connected client.
    public mutating func receive(from id: ClientID, _ frame: DmsgFrame) -> [Action] {
        guard clients[id] != nil else { return [] }
        switch frame {
        case .ping(let opaque):
            return [.send(id, .pong(opaque))]
        case .pong, .refused:
            return []
        case .open(let stream, let peer, let window):
            return open(from: id, stream: stream, to: peer, window: window)
        case .openOK(let stream, let window):
            return accept(from: id, stream: stream, window: window)
        case .openReject(let stream, _):
            return reject(from: id, stream: stream)
        case .data(let stream, let payload):
            return data(from: id, stream: stream, payload: payload)
        case .window(let stream, let increment):
            return credit(from: id, stream: stream, increment: increment)
        case .close(let stream, let code):
            return close(from: id, stream: stream, code: code)
        }
    }

    private mutating func refuse(_ id: ClientID, _ stream: DmsgStreamID, _ code: DmsgRejectCode) -> [Action] {
        counters.refusals[code.name, default: 0] += 1
        return [.send(id, .openReject(stream: stream, code: code))]
    }

    private mutating func open(from id: ClientID, stream: DmsgStreamID, to key: PublicKey, window: UInt32) -> [Action] {
        guard let source = clients[id] else { return [] }
        // Client ids are odd and increase (PROTOCOL.md §7.3).
        guard stream & 1 == 1, stream > source.lastOpened else { return refuse(id, stream, .protocolError) }
        clients[id]?.lastOpened = stream
        guard source.legs.count < limits.maxStreamsPerClient else { return refuse(id, stream, .limit) }
        guard let target = byKey[key], let destination = clients[target] else { return refuse(id, stream, .noSession) }
        // A stream to oneself would need two legs in one table entry: refused as absent.
        guard target != id else { return refuse(id, stream, .noSession) }
        guard destination.legs.count < limits.maxStreamsPerClient,
              destination.nextRelayID <= DmsgStreamID.max - 1 else { return refuse(id, stream, .limit) }
        let relayID = destination.nextRelayID
        clients[target]?.nextRelayID += 2
        let granted = min(window, limits.maxWindow)
        clients[id]?.legs[stream] = Leg(state: .opening, peer: .init(client: target, stream: relayID), opener: true, credit: 0)
        clients[target]?.legs[relayID] = Leg(state: .accepting, peer: .init(client: id, stream: stream), opener: false,
                                             credit: granted)
        return [.send(target, .open(stream: relayID, peer: source.key, window: granted))]
    }

    private mutating func accept(from id: ClientID, stream: DmsgStreamID, window: UInt32) -> [Action] {
        guard let leg = clients[id]?.legs[stream] else { return [] }
        guard leg.state == .accepting else { return violation(id, stream, leg) }
        let granted = min(window, limits.maxWindow)
        clients[id]?.legs[stream]?.state = .open
        clients[leg.peer.client]?.legs[leg.peer.stream]?.state = .open
        clients[leg.peer.client]?.legs[leg.peer.stream]?.credit = granted
        counters.streamsOpened += 1
        return [.send(leg.peer.client, .openOK(stream: leg.peer.stream, window: granted))]
    }

    private mutating func reject(from id: ClientID, stream: DmsgStreamID) -> [Action] {
        guard let leg = clients[id]?.legs[stream] else { return [] }
        guard leg.state == .accepting else { return violation(id, stream, leg) }
        removeStream(id, stream, leg)
        return refuse(leg.peer.client, leg.peer.stream, .refused)
    }

    private mutating func data(from id: ClientID, stream: DmsgStreamID, payload: ByteBuffer) -> [Action] {
        guard let leg = clients[id]?.legs[stream] else { return [] }
        let count = payload.readableBytes
        guard leg.state == .open, count <= Int(leg.credit) else { return violation(id, stream, leg) }
        clients[id]?.legs[stream]?.credit = leg.credit - UInt32(count)
        if leg.opener {
            counters.bytesOpenerToAcceptor += UInt64(count)
        } else {
            counters.bytesAcceptorToOpener += UInt64(count)
        }
        return [.send(leg.peer.client, .data(stream: leg.peer.stream, payload: payload))]
    }

    private mutating func credit(from id: ClientID, stream: DmsgStreamID, increment: UInt32) -> [Action] {
        guard let leg = clients[id]?.legs[stream] else { return [] }
        guard leg.state == .open, let peerLeg = clients[leg.peer.client]?.legs[leg.peer.stream] else {
            return violation(id, stream, leg)
        }
        // Credit above `maxWindow` would let the peer make the relay queue more than it allows.
        let (sum, overflow) = peerLeg.credit.addingReportingOverflow(increment)
        guard !overflow, sum <= limits.maxWindow else { return violation(id, stream, leg) }
        clients[leg.peer.client]?.legs[leg.peer.stream]?.credit = sum
        return [.send(leg.peer.client, .window(stream: leg.peer.stream, increment: increment))]
    }

    private mutating func close(from id: ClientID, stream: DmsgStreamID, code: DmsgCloseCode) -> [Action] {
        guard let leg = clients[id]?.legs[stream] else { return [] }
        removeStream(id, stream, leg)
        // The acceptor closing before it answered refuses the OPEN.
        if leg.state == .accepting { return refuse(leg.peer.client, leg.peer.stream, .refused) }
        return [.send(leg.peer.client, .close(stream: leg.peer.stream, code: code))]
    }

    /// A side broke flow control or ordering on a stream: both sides get CLOSE protocol-error
    /// (an OPEN still unanswered gets OPEN_REJECT).
    private mutating func violation(_ id: ClientID, _ stream: DmsgStreamID, _ leg: Leg) -> [Action] {
        counters.streamProtocolErrors += 1
        removeStream(id, stream, leg)
        let toPeer: DmsgFrame = leg.state == .accepting
            ? .openReject(stream: leg.peer.stream, code: .protocolError)
            : .close(stream: leg.peer.stream, code: .protocolError)
        let toSelf: DmsgFrame = leg.state == .opening
            ? .openReject(stream: stream, code: .protocolError)
            : .close(stream: stream, code: .protocolError)
        return [.send(id, toSelf), .send(leg.peer.client, toPeer)]
    }

    private mutating func removeStream(_ id: ClientID, _ stream: DmsgStreamID, _ leg: Leg) {
        clients[id]?.legs[stream] = nil
        clients[leg.peer.client]?.legs[leg.peer.stream] = nil
    }
}
