import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireSystem

/// Why `DmsgClientSession.open` failed.
public enum DmsgOpenError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The relay answered OPEN_REJECT (PROTOCOL.md §7.3).
    case rejected(DmsgRejectCode)
    /// No answer within `DmsgClientSession.openTimeout`.
    case timedOut
    /// The session is not established, or ended before the answer.
    case sessionClosed(String)

    public var description: String {
        switch self {
        case .rejected(.noSession): "the peer has no session with this relay"
        case .rejected(.refused): "the peer refused the stream"
        case .rejected(.limit): "the relay's stream limit is reached"
        case .rejected(let code): "the relay rejected the stream (\(code.name))"
        case .timedOut: "no answer from the relay in time"
        case .sessionClosed(let reason): "relay session closed: \(reason)"
        }
    }
}

/// One visor's session with one dmsg relay server (PROTOCOL.md §7, docs/dmsg.md): dials it,
/// authenticates as the stcpr initiator with the visor's key, keeps it alive with PINGs, opens
/// streams to other keys and accepts theirs. Confined to `loop`: create and use it there; every
/// hook runs there. Redialling after `closed` is the caller's job (a new session).
public final class DmsgClientSession {
    public struct Hooks {
        /// A stream from `stream.remoteKey` (as the relay says: authenticate inside). Set the
        /// stream's callbacks and return true to accept, false to refuse.
        public var incoming: (DmsgStream) -> Bool
        /// The relay confirmed the handshake.
        public var established: () -> Void
        /// The session ended (once); open streams got `onClosed` before.
        public var closed: (_ reason: String) -> Void

        public init(incoming: @escaping (DmsgStream) -> Bool, established: @escaping () -> Void = {},
                    closed: @escaping (_ reason: String) -> Void) {
            self.incoming = incoming
            self.established = established
            self.closed = closed
        }
    }

    /// A PING leaves this often (the relay closes sessions idle for 120 s).
    public static let pingInterval = TimeAmount.seconds(30)
    /// Nothing from the relay for this long (three PINGs unanswered) ends the session.
    public static let silenceTimeout = TimeAmount.seconds(95)
    public static let handshakeTimeout = TimeAmount.seconds(10)
    public static let openTimeout = TimeAmount.seconds(10)
    /// The window this client announces per stream (the relay clamps to its `maxWindow`).
    public static let streamWindow: UInt32 = 256 * 1024
    /// Unsent bytes toward the relay beyond which the relay is dropped as not reading.
    static let maxOutbound = 64 << 20

    public let loop: EpollEventLoop
    public let relayKey: PublicKey
    private let identity: NoiseStaticIdentity
    private let logger: Logger
    private let hooks: Hooks
    private var link: DmsgRecordLink?
    private var streams: [DmsgStreamID: DmsgStream] = [:]
    private var opening: [DmsgStreamID: (stream: DmsgStream, done: (Result<DmsgStream, DmsgOpenError>) -> Void,
                                         timer: Scheduled<Void>)] = [:]
    private var nextOpenID: DmsgStreamID = 1
    private var pinger: RepeatedTask?
    private var ended: String?
    public private(set) var isEstablished = false
    /// The TCP connection's local address (getsockname once connected): the uplink watcher
    /// closes sessions whose address left the uplink.
    public private(set) var localAddress: SocketAddress?

    /// The last TAI64N stamp any session of this process sent (stamps strictly increase, PROTOCOL.md §2).
    private static let lastStamp = NIOLockedValueBox<TAI64N?>(nil)

    /// Dials `host:port` and runs the handshake with `relay`; call on `loop`. `timestamp`: the
    /// handshake's TAI64N stamp (the visor passes its transport stamp sequence), else one from
    /// this process's own strictly increasing sequence.
    public init(loop: EpollEventLoop, identity: KeyPair, relay: PublicKey, host: String, port: Int,
                timestamp: TAI64N? = nil, logger: Logger, hooks: Hooks) throws {
        precondition(loop.inEventLoop)
        self.loop = loop
        self.identity = try NoiseStaticIdentity(identity: identity)
        relayKey = relay
        self.logger = logger
        self.hooks = hooks
        let stamp = timestamp ?? Self.lastStamp.withLockedValue { last in
            let next = TAI64N.stamp(now: .now(), after: last)
            last = next
            return next
        }
        RawTCPConnector.connect(on: loop, host: host, port: port, timeout: Self.handshakeTimeout) { [weak self] result in
            guard let self, ended == nil else {
                if case .success(let socket) = result { socket.close() }
                return
            }
            switch result {
            case .failure(let error):
                end("connect to \(host):\(port) failed: \(error)")
            case .success(let socket):
                attach(socket, stamp: stamp)
            }
        }
    }

    private func attach(_ socket: OwnedDescriptor, stamp: TAI64N) {
        localAddress = RawTCPSocket.localAddress(socket.raw)
        let hooks = DmsgRecordLink.Hooks(
            established: { [weak self] _ in self?.established() ?? false },
            frame: { [weak self] frame in self?.received(frame) },
            writable: { [weak self] in self?.linkWritable() },
            closed: { [weak self] reason in self?.end(reason) })
        do {
            link = try DmsgRecordLink(loop: loop, socket: socket, identity: identity, expectedRemote: relayKey, timestamp: stamp,
                                      handshakeTimeout: Self.handshakeTimeout, maxOutbound: Self.maxOutbound,
                                      logger: logger, hooks: hooks)
        } catch {
            socket.close()
            end("\(error)")
        }
    }

    private func established() -> Bool {
        isEstablished = true
        pinger = loop.scheduleRepeatedTask(initialDelay: Self.pingInterval, delay: Self.pingInterval) { [weak self] _ in
            self?.loop.assumeIsolated().execute { self?.keepAlive() }
        }
        hooks.established()
        return ended == nil
    }

    private func keepAlive() {
        guard let link, isEstablished else { return }
        if link.lastReceived < .now() - Self.silenceTimeout {
            link.close(reason: "relay silent for \(Self.silenceTimeout.nanoseconds / 1_000_000_000) s")
            return
        }
        link.send(.ping(UInt64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds)))
    }

    /// PINGs the relay now and ends the session unless a record arrives within `timeout` (the
    /// uplink changed: a connection through the old path is dead though its address remains).
    public func probe(timeout: TimeAmount) {
        guard let link, isEstablished else { return }
        let sent = NIODeadline.now()
        link.send(.ping(UInt64(truncatingIfNeeded: sent.uptimeNanoseconds)))
        loop.assumeIsolated().scheduleTask(in: timeout) { [weak self, weak link] in
            guard let self, let link, self.link === link, link.lastReceived < sent else { return }
            link.close(reason: "no answer from the relay within \(timeout.nanoseconds / 1_000_000) ms after an uplink change")
        }
    }

    /// Ends the session: every stream closes, pending opens fail.
    public func close(reason: String = "closed by the visor") {
        if let link { link.close(reason: reason) } else { end(reason) }
    }

    /// Streams open or waiting for the relay's answer.
    public var streamCount: Int { streams.count + opening.count }

    /// Bytes this session read from and wrote to the relay (records, handshake included).
    public var byteCounts: (received: UInt64, sent: UInt64) { (link?.receivedBytes ?? 0, link?.sentBytes ?? 0) }

    // MARK: Streams

    /// Opens a stream to `key` through the relay; `done` runs on the loop with the stream (its
    /// callbacks unset: set them before returning) or the reason.
    public func open(to key: PublicKey, _ done: @escaping (Result<DmsgStream, DmsgOpenError>) -> Void) {
        guard isEstablished, let link, ended == nil else {
            done(.failure(.sessionClosed(ended ?? "not established")))
            return
        }
        guard nextOpenID < DmsgStreamID.max - 1 else {
            done(.failure(.sessionClosed("stream ids exhausted")))
            link.close(reason: "stream ids exhausted")
            return
        }
        let id = nextOpenID
        nextOpenID += 2
        let stream = DmsgStream(session: self, id: id, remoteKey: key, receiveWindow: Self.streamWindow)
        let timer = loop.assumeIsolated().scheduleTask(in: Self.openTimeout) { [weak self] in
            guard let self, let pending = opening.removeValue(forKey: id) else { return }
            send(.close(stream: id, code: .normal))
            pending.done(.failure(.timedOut))
        }
        opening[id] = (stream, done, timer)
        link.send(.open(stream: id, peer: key, window: Self.streamWindow))
    }

    func send(_ frame: DmsgFrame) { link?.send(frame) }

    /// Unsent bytes toward the relay (stream writers stop above `DmsgRecordLink.writableWatermark`).
    var linkUnsent: Int { link?.unsentBytes ?? 0 }

    func forget(_ id: DmsgStreamID) { streams[id] = nil }

    private func received(_ frame: DmsgFrame) {
        switch frame {
        case .ping(let opaque):
            send(.pong(opaque))
        case .pong:
            break
        case .refused(let why):
            link?.close(reason: why.description)
        case .open(let id, let peer, let window):
            // Relay-opened ids are even; anything else is ignored (a relay bug, not ours to crash on).
            guard id & 1 == 0, streams[id] == nil else { return }
            let stream = DmsgStream(session: self, id: id, remoteKey: peer, receiveWindow: Self.streamWindow)
            stream.grant(window)
            streams[id] = stream
            if hooks.incoming(stream) {
                send(.openOK(stream: id, window: Self.streamWindow))
                stream.accepted()
            } else {
                streams[id] = nil
                send(.openReject(stream: id, code: .refused))
            }
        case .openOK(let id, let window):
            guard let pending = opening.removeValue(forKey: id) else { return }
            pending.timer.cancel()
            streams[id] = pending.stream
            pending.stream.grant(window)
            pending.done(.success(pending.stream))
            pending.stream.accepted()
        case .openReject(let id, let code):
            guard let pending = opening.removeValue(forKey: id) else { return }
            pending.timer.cancel()
            pending.done(.failure(.rejected(code)))
        case .data(let id, let payload):
            streams[id]?.received(payload)
        case .window(let id, let increment):
            streams[id]?.credited(increment)
        case .close(let id, let code):
            if let stream = streams.removeValue(forKey: id) { stream.remoteClosed(code) }
        }
    }

    private func linkWritable() {
        for stream in streams.values { stream.linkWritable() }
    }

    private func end(_ reason: String) {
        guard ended == nil else { return }
        ended = reason
        isEstablished = false
        pinger?.cancel()
        link = nil
        for (_, pending) in opening.sorted(by: { $0.key < $1.key }) {
            pending.timer.cancel()
            pending.done(.failure(.sessionClosed(reason)))
        }
        opening = [:]
        let open = streams
        streams = [:]
        for (_, stream) in open.sorted(by: { $0.key < $1.key }) { stream.sessionEnded(reason) }
        hooks.closed(reason)
    }
}
