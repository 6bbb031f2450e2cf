import NIOCore

/// When a sudph initiator (re)sends its handshake initiation and when it gives up (pure).
///
/// - `normal(limitSeconds:)`: the usual dial (PROTOCOL.md §4.3): resend after 1 s, doubling, give up
///   after `limitSeconds` (`HANDSHAKE_TIMEOUT`, `TransportSettings.handshakeTimeout`, 10 s).
/// - `punched`: a dial right after a hole punch (docs/discovery.md "Hole punching"): resend every
///   250 ms, give up after 5 s, so that the stcpr fallback starts soon when the punch did not open a
///   path (e.g. a symmetric NAT).
public struct SudphHandshakeSchedule: Sendable, Equatable {
    /// Delay before the first resend.
    public let initialDelay: TimeAmount
    /// Whether each further delay doubles (else it stays `initialDelay`).
    public let doubling: Bool
    /// No initiation is sent at or after this time from the start; the dial then fails.
    public let limit: TimeAmount

    public init(initialDelay: TimeAmount, doubling: Bool, limit: TimeAmount) {
        precondition(initialDelay > .zero && limit > .zero, "a handshake schedule needs positive times")
        self.initialDelay = initialDelay
        self.doubling = doubling
        self.limit = limit
    }

    public static func normal(limitSeconds: Int64) -> SudphHandshakeSchedule {
        SudphHandshakeSchedule(initialDelay: .seconds(1), doubling: true, limit: .seconds(max(1, limitSeconds)))
    }

    /// After a punch: every 250 ms for 5 s.
    public static let punched = SudphHandshakeSchedule(initialDelay: .milliseconds(250), doubling: false, limit: .seconds(5))

    /// The delay after the send numbered `sent` (1 = the first initiation).
    public func delay(afterSend sent: Int) -> TimeAmount {
        guard doubling else { return initialDelay }
        let shift = min(max(sent - 1, 0), 30)
        return .nanoseconds(initialDelay.nanoseconds << Int64(shift))
    }

    /// Offsets from the start at which initiations go out (the first at zero), all before `limit`.
    public var sendOffsets: [TimeAmount] {
        var offsets: [TimeAmount] = [.zero]
        var at = TimeAmount.zero
        while offsets.count < 10_000 {
            at = at + delay(afterSend: offsets.count)
            guard at < limit else { break }
            offsets.append(at)
        }
        return offsets
    }

    /// "within 5 s, resent every 250 ms" / "within 10 s" for error messages.
    public var summary: String {
        let limitText = limit.nanoseconds % 1_000_000_000 == 0 ? "\(limit.nanoseconds / 1_000_000_000) s" : "\(limit.nanoseconds / 1_000_000) ms"
        return doubling ? "within \(limitText)" : "within \(limitText), resent every \(initialDelay.nanoseconds / 1_000_000) ms after a punch"
    }
}
