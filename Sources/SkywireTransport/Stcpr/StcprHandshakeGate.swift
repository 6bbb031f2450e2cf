import Logging
import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto

/// What an stcpr listener admits before a handshake is confirmed (PROTOCOL.md §3), pure:
/// at most `maxUnconfirmed` handshakes that did their DH and wait for the initiator's
/// confirmation, and per key only initiations newer than the last accepted (replays refused).
struct StcprHandshakeAdmission {
    let maxUnconfirmed: Int
    private(set) var unconfirmed = 0
    private(set) var timestamps: HandshakeTimestamps<PublicKey>

    init(maxUnconfirmed: Int, timestampCapacity: Int = HandshakeTimestamps<PublicKey>.defaultCapacity) {
        precondition(maxUnconfirmed > 0, "room for one handshake at least")
        self.maxUnconfirmed = maxUnconfirmed
        timestamps = HandshakeTimestamps(capacity: timestampCapacity)
    }

    /// Takes a slot for a handshake about to do its DH; false when all are taken.
    mutating func reserve() -> Bool {
        guard unconfirmed < maxUnconfirmed else { return false }
        unconfirmed += 1
        return true
    }

    /// Gives a slot back (the handshake was confirmed, refused, or its connection closed).
    mutating func release() {
        precondition(unconfirmed > 0, "released more stcpr handshake slots than reserved")
        unconfirmed -= 1
    }

    /// Accepts `key`'s initiation stamped `timestamp` if it is newer than the last accepted.
    mutating func admit(_ key: PublicKey, timestamp: TAI64N) -> Bool {
        timestamps.accept(timestamp, from: key)
    }
}

/// The stcpr listener's `StcprHandshakeAdmission`, shared by the datapath loops.
final class StcprHandshakeGate: @unchecked Sendable {
    // @unchecked Sendable: `state` is guarded by `lock`; `logger` is immutable.
    /// Handshakes that did their DH and wait for confirmation, across all connections
    /// (PROTOCOL.md §3); further initiations are refused before their DH until one completes.
    static let maxUnconfirmed = 128

    private let lock = NIOLock()
    private var state: StcprHandshakeAdmission
    private let logger: Logger

    init(logger: Logger, maxUnconfirmed: Int = StcprHandshakeGate.maxUnconfirmed) {
        self.logger = logger
        state = StcprHandshakeAdmission(maxUnconfirmed: maxUnconfirmed)
    }

    func reserve() -> Bool { lock.withLock { state.reserve() } }
    func release() { lock.withLock { state.release() } }
    func admit(_ key: PublicKey, timestamp: TAI64N) -> Bool { lock.withLock { state.admit(key, timestamp: timestamp) } }

    /// Counts and logs a refusal (`RefusalLog`: debug lines rate-limited, a periodic info summary).
    func refuse(_ reason: HandshakeRefusal, _ detail: @autoclosure () -> String) {
        RefusalLog.shared.note(reason.logReason, "stcpr: \(detail())", logger: logger)
    }
}
