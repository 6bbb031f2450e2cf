import NIOCore
import SkywireCrypto
import SkywireDmsg

/// One stream through a dmsg relay (PROTOCOL.md §7.3–§7.4): a reliable, ordered byte pipe to
/// `remoteKey` with end-to-end credit. `remoteKey` is what the relay says: the relay
/// authenticated that client, but only a handshake inside the stream proves it to this side.
/// Confined to its session's loop; callbacks run there.
public final class DmsgStream {
    /// Bytes `write` queues beyond the credit before `isWritable` turns false.
    public static let sendBufferLimit = 256 * 1024

    public let remoteKey: PublicKey
    public var relayKey: PublicKey? { session?.relayKey }
    let id: DmsgStreamID
    /// In order; credit goes back to the sender once delivered unless reading is paused.
    public var onData: (ByteBuffer) -> Void = { _ in }
    /// `write` may take more again (after it returned false).
    public var onWritable: () -> Void = {}
    /// The stream ended (once): closed by either side, reset by the relay, or the session ended.
    public var onClosed: (_ reason: String) -> Void = { _ in }

    private enum State { case opening, open, closed }
    private weak var session: DmsgClientSession?
    private var state = State.opening
    private let receiveWindow: UInt32
    /// Bytes received and not yet credited back; bytes the peer may still send.
    private var unacknowledged: UInt32 = 0
    private var receiveCredit: UInt32
    private var sendCredit: UInt32 = 0
    private var queue = CircularBuffer<ByteBuffer>()
    private var queued = 0
    private var closeQueued = false
    private var waitingForWritable = false
    private var paused = false
    public private(set) var bytesReceived: UInt64 = 0
    public private(set) var bytesSent: UInt64 = 0

    init(session: DmsgClientSession, id: DmsgStreamID, remoteKey: PublicKey, receiveWindow: UInt32) {
        self.session = session
        self.id = id
        self.remoteKey = remoteKey
        self.receiveWindow = receiveWindow
        receiveCredit = receiveWindow
    }

    public var isOpen: Bool { state != .closed }
    /// Whether `write` takes more now.
    public var isWritable: Bool {
        state != .closed && queued < Self.sendBufferLimit && (session?.linkUnsent ?? 0) < DmsgRecordLink.writableWatermark
    }

    /// Queues `bytes`; they leave as the peer's credit allows. Returns `isWritable` (false: wait
    /// for `onWritable`). Bytes written after `close` or the end are dropped.
    @discardableResult
    public func write(_ bytes: ByteBuffer) -> Bool {
        guard state != .closed, !closeQueued, bytes.readableBytes > 0 else { return false }
        queue.append(bytes)
        queued += bytes.readableBytes
        pump()
        let writable = isWritable
        if !writable { waitingForWritable = true }
        return writable
    }

    /// Ends the stream after the queued bytes (CLOSE normal).
    public func close() {
        guard state != .closed, !closeQueued else { return }
        closeQueued = true
        pump()
    }

    /// Withholds credit: the peer stops once it has sent a window's worth.
    public func pauseReading() { paused = true }

    public func resumeReading() {
        paused = false
        returnCredit()
    }

    // MARK: From the session

    func grant(_ window: UInt32) { sendCredit = window }

    func accepted() {
        guard state == .opening else { return }
        state = .open
        pump()
    }

    func received(_ payload: ByteBuffer) {
        guard state == .open else { return }
        let count = UInt32(payload.readableBytes)
        guard count <= receiveCredit else {
            // The relay checks credit; a relay that does not is dropped from this stream.
            end(sending: .close(stream: id, code: .protocolError), reason: "peer sent beyond its window")
            return
        }
        receiveCredit -= count
        unacknowledged += count
        bytesReceived += UInt64(count)
        onData(payload)
        returnCredit()
    }

    func credited(_ increment: UInt32) {
        let (sum, overflow) = sendCredit.addingReportingOverflow(increment)
        sendCredit = overflow ? .max : sum
        pump()
    }

    func linkWritable() {
        pump()
        notifyWritable()
    }

    func remoteClosed(_ code: DmsgCloseCode) {
        let reason = switch code {
        case .normal: "closed by the peer"
        case .peerGone: "the peer's relay session ended"
        case .protocolError: "reset by the relay (protocol error)"
        default: "closed (code \(code.rawValue))"
        }
        end(sending: nil, reason: reason)
    }

    func sessionEnded(_ reason: String) { end(sending: nil, reason: "relay session closed: \(reason)", forget: false) }

    // MARK: Internals

    /// Batching as the mux (PROTOCOL.md §5): one WINDOW once half the window was consumed.
    private func returnCredit() {
        guard !paused, state == .open, unacknowledged >= receiveWindow / 2 else { return }
        let increment = unacknowledged
        unacknowledged = 0
        receiveCredit += increment
        session?.send(.window(stream: id, increment: increment))
    }

    private func pump() {
        guard state == .open, let session else { return }
        while sendCredit > 0, var first = queue.first, session.linkUnsent < DmsgRecordLink.writableWatermark {
            let count = min(first.readableBytes, Int(sendCredit), DmsgFrameLayout.maxDataPayload)
            guard let chunk = first.readSlice(length: count) else { break }
            if first.readableBytes == 0 { queue.removeFirst() } else { queue[queue.startIndex] = first }
            queued -= count
            sendCredit -= UInt32(count)
            bytesSent += UInt64(count)
            session.send(.data(stream: id, payload: chunk))
        }
        if closeQueued && queue.isEmpty {
            end(sending: .close(stream: id, code: .normal), reason: "closed")
            return
        }
        notifyWritable()
    }

    private func notifyWritable() {
        guard waitingForWritable, isWritable else { return }
        waitingForWritable = false
        onWritable()
    }

    private func end(sending frame: DmsgFrame?, reason: String, forget: Bool = true) {
        guard state != .closed else { return }
        state = .closed
        queue.removeAll()
        queued = 0
        if let frame { session?.send(frame) }
        if forget { session?.forget(id) }
        onClosed(reason)
    }
}
