import Atomics
import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireSystem

/// One peer's datagram route for a thread outside the event loop (the VPN datapath), whatever
/// the transport, like wireguard-go's `conn.Bind` endpoint: packets are written into a
/// `DatagramBatch` and leave a batch at a time, as UDP over sudph (sealed on the caller's
/// thread, sendmmsg/GSO) or as records on an stcpr link (handed to its event loop once per
/// batch, one write). Immutable; safe to share. Get one from `TransportManager.datagramPath`.
public final class DatagramPath: Sendable {
    enum Route: Sendable {
        case sudph(SudphDatagramRoute)
        case stcpr(StcprDatagramQueue)
    }

    let route: Route
    public let destinationPort: UInt16
    public let sourcePort: UInt16

    init(route: Route, destinationPort: UInt16, sourcePort: UInt16) {
        self.route = route
        self.destinationPort = destinationPort
        self.sourcePort = sourcePort
    }

    /// False once the transport closed: get a new path (or fall back to `sendDatagram`).
    public var isOpen: Bool {
        switch route {
        case .sudph(let r): r.isOpen
        case .stcpr(let q): q.isOpen
        }
    }
}

/// sudph DATA packets carrying an UNRELIABLE record with one DATAGRAM frame (PROTOCOL.md §4.1,
/// §4.4, §5), sealed with counters reserved from the session the event loop also sends on, so
/// key rotation and counter uniqueness hold for both. Immutable; safe to share.
final class SudphDatagramRoute: Sendable {
    let box: SudphSessionBox
    /// The endpoint's socket (shared by every path of one visor); closed under us, sends fail.
    let socket: UDPSocket
    let counters: LinkCounters
    let allowUnconfirmed: Bool
    let rekeyInterval: TimeAmount

    init(box: SudphSessionBox, socket: UDPSocket, counters: LinkCounters, allowUnconfirmed: Bool, rekeyInterval: TimeAmount) {
        self.box = box
        self.socket = socket
        self.counters = counters
        self.allowUnconfirmed = allowUnconfirmed
        self.rekeyInterval = rekeyInterval
    }

    var isOpen: Bool { !box.closed.load(ordering: .relaxed) }
}

/// DATAGRAM frames from datapath threads to one stcpr link, handed to its event loop a batch at a
/// time: `enqueue` appends a batch's frames and queues one drain task (none while one is queued);
/// the loop seals them all as records and flushes once (`RawStcprLink.send(datagramFrames:)`:
/// one write). Back-pressure instead of loss: when `maxPendingBytes` are waiting (the loop is
/// behind) the datapath thread waits for the loop to take them, and the loop takes them only
/// while the link is below its high watermark (the TCP socket takes them), so a VPN flow over
/// stcpr is paced like one over sudph, whose TUN thread sends itself, instead of losing
/// packets and retransmitting; only for callers that send to this one peer (`mayWait`: the VPN
/// client's thread; the exit's thread serves every client and drops instead). The wait is
/// bounded (`fullWait`): once it times out (a peer that does not read), the queue is `congested`
/// and drops what does not fit, without waiting, until the loop takes a batch again. Two buffers
/// take turns, so the steady state allocates nothing.
final class StcprDatagramQueue: @unchecked Sendable {
    // @unchecked Sendable: `pending`, `spare`, `drainQueued`, `waitingForLink`, `congested` and
    // `fullWait` are guarded by `state`; `link` is set and read only on `loop` (`attach`,
    // `drain` and `linkWritable` check it: preconditionInEventLoop); `loop`, `open` and
    // `dropped` are immutable or atomic.
    /// Frames waiting for the loop, in bytes (length prefixes included): about 180 full-size
    /// packets, a few batches, so a stalled loop costs bounded memory.
    static let maxPendingBytes = 256 * 1024
    /// Each frame's length prefix in the pending buffer (host-internal, not on the wire).
    static let lengthPrefix = MemoryLayout<UInt16>.size
    /// How long a datapath thread waits, per batch, for room in a full queue before dropping:
    /// the socket takes the link's 1 MiB high watermark plus this queue in ~10 ms at 1 Gbit/s,
    /// and a busy 2-core machine delays the loop by tens of ms; a link that stays full this long
    /// (the peer does not read) costs the thread this once, then drops.
    static let defaultFullWait: TimeAmount = .milliseconds(50)

    let loop: EpollEventLoop
    private let state = MutexCondition()
    /// Frames as (UInt16 length, frame) pairs, appended by `enqueue`.
    private var pending: ByteBuffer
    /// The buffer the loop drained last, cleared, waiting to become `pending` again.
    private var spare: ByteBuffer?
    private var drainQueued = false
    /// The loop left `pending` waiting because the link was above its high watermark; the link
    /// calls `linkWritable` when it falls below.
    private var waitingForLink = false
    /// A wait for room timed out: until the loop takes a batch, frames that do not fit are
    /// dropped at once.
    private var congested = false
    private var fullWait = StcprDatagramQueue.defaultFullWait
    private weak var link: RawStcprLink?
    private let open = ManagedAtomic(true)
    /// Frames dropped because the queue stayed full, or the link was closed.
    let dropped = ManagedAtomic<UInt64>(0)
    /// `drain` as a task, made once (queued once per batch).
    private let drainTask: @Sendable () -> Void

    init(loop: EpollEventLoop) {
        self.loop = loop
        pending = ByteBufferAllocator().buffer(capacity: 0)
        let owner = LoopWeak<StcprDatagramQueue>()  // the link owns the queue
        drainTask = { owner.value?.drain() }
        owner.value = self
    }

    /// Called by the link once, on its loop.
    func attach(_ link: RawStcprLink) {
        loop.preconditionInEventLoop()
        self.link = link
    }

    var isOpen: Bool { open.load(ordering: .relaxed) }

    /// The link closed: later batches are dropped, paths report `isOpen` false, and a thread
    /// waiting for room stops waiting.
    func close() {
        open.store(false, ordering: .relaxed)
        state.withLock { state.broadcast() }
    }

    /// Sets the longest wait for room per batch (tests).
    func setFullWait(_ wait: TimeAmount) {
        state.withLock { fullWait = wait }
    }

    /// Appends `count` encoded DATAGRAM frames (`frame(i)`, valid during the call) for the loop,
    /// waiting (at most `fullWait`, and only if `mayWait`) while the queue is full; returns how
    /// many were dropped (the queue stayed full, or the link closed). Any thread; the link's own
    /// loop never waits (nothing could drain).
    func enqueue(count: Int, mayWait: Bool, frame: (Int) -> UnsafeRawBufferPointer) -> Int {
        guard isOpen else { return drop(count) }
        let mayWait = mayWait && !loop.inEventLoop
        var accepted = 0
        var deadline: UInt64?
        let schedule: Bool = state.withLock {
            var queueDrain = false
            while true {
                while accepted < count {
                    let f = frame(accepted)
                    guard pending.readableBytes + Self.lengthPrefix + f.count <= Self.maxPendingBytes else { break }
                    pending.writeInteger(UInt16(f.count), endianness: .host)
                    pending.writeBytes(f)
                    accepted += 1
                }
                if accepted > 0 && !drainQueued && !waitingForLink {
                    drainQueued = true
                    queueDrain = true
                }
                guard accepted < count, mayWait, !congested, isOpen else { return queueDrain }
                // Full: the loop must take `pending` first (a drain is queued, or the link's
                // writability will resume it).
                if queueDrain {
                    loop.execute(drainTask)
                    queueDrain = false
                }
                let until = deadline ?? MutexCondition.now + UInt64(max(0, fullWait.nanoseconds))
                deadline = until
                if !state.waitLocked(until: until) { congested = true }
            }
        }
        if schedule { loop.execute(drainTask) }
        return drop(count - accepted)
    }

    private func drop(_ n: Int) -> Int {
        if n > 0 { dropped.wrappingIncrement(by: UInt64(n), ordering: .relaxed) }
        return n
    }

    /// On the loop: takes everything pending and hands it to the link in one go, unless the link
    /// is above its high watermark (then `linkWritable` resumes).
    private func drain() {
        loop.preconditionInEventLoop()
        let linkFull = link.map { $0.isOpen && !$0.isWritable } ?? false
        let taken: ByteBuffer? = state.withLock {
            drainQueued = false
            guard !linkFull else {
                waitingForLink = true
                return nil
            }
            waitingForLink = false
            congested = false
            let taken = pending
            pending = spare ?? ByteBufferAllocator().buffer(capacity: taken.capacity)
            spare = nil
            state.broadcast()
            return taken
        }
        guard var frames = taken else { return }
        if let link {
            _ = drop(link.send(datagramFrames: frames))
        } else {
            _ = drop(Self.frameCount(frames))
        }
        frames.clear()
        state.withLock { spare = frames }
    }

    /// On the loop: the link fell below its high watermark; frames left waiting go now.
    func linkWritable() {
        loop.preconditionInEventLoop()
        if state.withLock({ waitingForLink }) { drain() }
    }

    /// Calls `body` with each frame of a pending buffer, in order.
    static func forEachFrame(_ frames: ByteBuffer, _ body: (UnsafeRawBufferPointer) -> Void) {
        frames.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset + lengthPrefix <= bytes.count {
                let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                let start = offset + lengthPrefix
                body(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]))
                offset = start + length
            }
        }
    }

    static func frameCount(_ frames: ByteBuffer) -> Int {
        var n = 0
        forEachFrame(frames) { _ in n += 1 }
        return n
    }
}
