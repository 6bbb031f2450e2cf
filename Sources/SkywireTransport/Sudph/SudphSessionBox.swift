import Atomics
import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto
import SkywireWire

/// The data-phase state of one sudph session (PROTOCOL.md §4.2–§4.3: keys, key phase, send
/// counter, replay window), shared by the peer's event loop and the datapath threads that send
/// datagrams around it (`SudphDatagramRoute`). Counters are reserved in blocks so that a batch
/// takes the lock once.
final class SudphSessionBox: @unchecked Sendable {
    // @unchecked Sendable: `session` and `address` are guarded by `lock`; `closed` is atomic.
    let lock = NIOLock()
    private var session: SudphPeer.Session
    /// Where the peer is now (it may roam); read by datapath threads per batch.
    private var address: SocketAddress
    let localIndex: UInt32
    /// Set once when the peer closes: datapath threads then drop and look up a new path.
    let closed = ManagedAtomic<Bool>(false)

    init(_ session: SudphPeer.Session, address: SocketAddress) {
        self.session = session
        self.localIndex = session.localIndex
        self.address = address
    }

    /// What one sender needs to seal `count` packets: counters `first ..< first + count`.
    struct Reservation {
        let first: UInt64
        let phase: UInt8
        let key: NoiseTransportKey
        let remoteIndex: UInt32
        let rotated: Bool
        let rotations: UInt64
    }

    enum SendFailure: Error, CustomStringConvertible {
        case counterExhausted
        case rotation(Error)
        var description: String {
            switch self {
            case .counterExhausted: "sudph send counter exhausted"
            case .rotation(let e): "sudph key rotation failed: \(e)"
            }
        }
    }

    /// Reserves `count` send counters under the current key, rotating it first when due (§4.3).
    /// Nil while the responder waits for the initiator's first packet (unless `allowUnconfirmed`).
    func reserve(count: Int, allowUnconfirmed: Bool, now: NIODeadline, rekeyInterval: TimeAmount) throws(SendFailure) -> Reservation? {
        lock.lock()
        defer { lock.unlock() }
        guard session.confirmed || allowUnconfirmed else { return nil }
        guard session.sendCounter < ReplayWindow.rejectAfterMessages - UInt64(count) else { throw .counterExhausted }
        let rotated: Bool
        do {
            rotated = try session.rotateSendKeyIfDue(now: now, interval: rekeyInterval)
        } catch {
            throw .rotation(error)
        }
        let r = Reservation(first: session.sendCounter, phase: session.sendPhase, key: session.sendKey,
                            remoteIndex: session.remoteIndex, rotated: rotated, rotations: session.rotations)
        session.sendCounter += UInt64(count)
        session.sendKeyMessages += UInt64(count)
        return r
    }

    /// Before decryption: nil when the counter is replayed or too old, else the key for it.
    func receiveKey(counter: UInt64, phase: UInt8) throws -> (NoiseTransportKey, isNext: Bool)? {
        try lock.withLock {
            guard session.replay.check(counter) else { return nil }
            return try session.receiveKey(phase: phase, counter: counter)
        }
    }

    /// After the tag verified: records the counter; adopts the peer's next key when it rotated.
    /// False when a duplicate raced in meanwhile.
    func commitReceived(counter: UInt64, phase: UInt8, key: NoiseTransportKey, isNext: Bool) -> Bool {
        lock.withLock {
            guard session.replay.commit(counter) else { return false }
            if isNext {
                // The peer rotated its key: keep the old one only for its late packets.
                session.previousReceiveKey = session.receiveKey
                session.receiveKey = key
                session.receivePhase = phase
                session.phaseStartCounter = counter
            }
            session.confirmed = true
            return true
        }
    }

    /// False while the responder waits for the initiator's first data packet (§4.3).
    var isConfirmed: Bool { lock.withLock { session.confirmed } }

    var currentAddress: SocketAddress {
        get { lock.withLock { address } }
        set { lock.withLock { address = newValue } }
    }
}
