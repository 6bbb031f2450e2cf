import Logging
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireSystem

/// One dmsg session's TCP connection (PROTOCOL.md §7.1), client or relay side: a `RawStcprLink`
/// (the stcpr handshake and records, PROTOCOL.md §2–§3; the client is the initiator, the relay
/// the responder behind `StcprHandshakeGate`) with the relay-session limits (`limits`), carrying
/// one relay frame per record. Confined to its loop.
final class DmsgRecordLink: RecordLinkUpper {
    struct Hooks {
        /// The handshake is complete (relay: confirmed) and the peer is `remote`; false closes.
        var established: (_ remote: PublicKey) -> Bool
        var frame: (DmsgFrame) -> Void
        /// The unsent bytes fell below `writableWatermark` after having been above it.
        var writable: () -> Void = {}
        /// Called once when the link ends.
        var closed: (_ reason: String) -> Void
        /// Relay: a handshake refused before confirmation, with its `HandshakeRefusal` name.
        var refused: (_ reason: String) -> Void = { _ in }
        /// Relay: mac1, unconfirmed-handshake cap and replays (PROTOCOL.md §2.1).
        var gate: StcprHandshakeGate? = nil
    }

    /// The link stops reading a peer that leaves more than this unsent (it does not read what it
    /// asked for, or what other clients sent it), and reads again below `resumeReadingWatermark`.
    static let pauseReadingWatermark = 1 << 20
    static let resumeReadingWatermark = 256 * 1024
    /// Below this many unsent bytes writers may queue more (`DmsgStream.isWritable`).
    static let writableWatermark = 256 * 1024
    /// Bytes per read(2) of a relay session: its receive buffer is kept while the client is busy.
    static let readChunk = 16 * 1024

    /// A relay session's `RawStcprLink.Limits` (docs/dmsg.md, "Limits"): every unsent byte pauses
    /// reading, and an idle session keeps no buffers (the relay's memory per idle client).
    static func limits(maxOutbound: Int) -> RawStcprLink.Limits {
        RawStcprLink.Limits(highWatermark: writableWatermark, maxOutbound: maxOutbound,
                            readPause: .unsent(pause: pauseReadingWatermark, resume: resumeReadingWatermark),
                            releasesIdleBuffers: true, carriesDatagrams: false, readChunk: readChunk, name: "dmsg")
    }

    private let loop: EpollEventLoop
    private let hooks: Hooks
    /// Set once in `init` (nil only while the link is being made).
    private var link: RawStcprLink?
    private var flushScheduled = false
    /// One plaintext buffer reused for every frame sent (the link seals a copy); allocated on
    /// the first send (the relay's memory per idle client).
    private var scratch: ByteBuffer?
    /// When the last frame arrived (the relay's idle cap, the client's silence check).
    private(set) var lastReceived = NIODeadline.now()
    private(set) var established = false
    var remoteKey: PublicKey? { link?.remoteKey }
    var unsentBytes: Int { link?.unsentBytes ?? 0 }
    var isOpen: Bool { link?.isOpen ?? false }
    /// Record bytes read and queued (handshake included).
    var receivedBytes: UInt64 { link?.counters.received.load(ordering: .relaxed) ?? 0 }
    var sentBytes: UInt64 { link?.counters.sent.load(ordering: .relaxed) ?? 0 }

    /// Takes `socket` (connected, non-blocking) and starts the handshake: as initiator when
    /// `expectedRemote` is set (message 1 leaves now), else as responder. Call on `loop`.
    init(loop: EpollEventLoop, socket: OwnedDescriptor, identity: NoiseStaticIdentity, expectedRemote: PublicKey?,
         timestamp: TAI64N? = nil, handshakeTimeout: TimeAmount, maxOutbound: Int, logger: Logger, hooks: Hooks) throws {
        self.loop = loop
        self.hooks = hooks
        let refused = hooks.refused
        let linkHooks = RawStcprLink.Hooks(
            established: { [weak self] remote, _ in self?.establish(remote) },
            closed: hooks.closed, gate: hooks.gate, refused: { refused($0.rawValue) })
        link = try RawStcprLink(loop: loop, socket: socket, identity: identity, expectedRemote: expectedRemote,
                                timestamp: timestamp, handshakeTimeout: handshakeTimeout,
                                limits: Self.limits(maxOutbound: maxOutbound), logger: logger, hooks: linkHooks)
    }

    private func establish(_ remote: PublicKey) -> RecordLinkUpper? {
        established = true
        return hooks.established(remote) ? self : nil
    }

    // MARK: Sending

    /// Queues `frame` as one record; it leaves with the next flush (scheduled once per loop turn).
    func send(_ frame: DmsgFrame) {
        guard let link, link.isOpen else { return }
        var plain = scratch.take() ?? ByteBuffer()
        plain.clear(minimumCapacity: frame.encodedLength)
        frame.encode(into: &plain)
        link.send(frame: plain, reliable: true)
        scratch = plain
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.assumeIsolated().execute { [weak self] in
            guard let self else { return }
            flushScheduled = false
            link.flush()
        }
    }

    /// Writes what is queued now (before a close: the refusal frame must leave first).
    func flush() { link?.flush() }

    func close(reason: String) { link?.close(reason: reason) }

    // MARK: RecordLinkUpper

    func receive(frame plain: ByteBuffer) {
        lastReceived = .now()
        do {
            hooks.frame(try DmsgFrame.decode(plain))
        } catch {
            link?.close(reason: "malformed relay frame: \(error)")
        }
    }

    func linkWritabilityChanged() { hooks.writable() }

    func flushIfNeeded() { flush() }

    func linkClosed(reason: String) {}
}
