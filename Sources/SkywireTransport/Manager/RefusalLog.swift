import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Counts what the transport layer refuses or cuts off to keep a peer's memory bounded
/// (docs/hardening.md, "Bounded memory per peer") and the handshakes its responders refuse
/// (PROTOCOL.md §2.1, `HandshakeRefusal`), and logs it without letting a flood flood the log:
/// each refusal at debug, at most `debugLinesPerInterval` of them per `summaryInterval`, and
/// then one info summary of the counts since the last one (written by the first refusal after
/// the interval). Process-wide (`shared`): the counts are diagnostics, not per-visor state.
final class RefusalLog: Sendable {
    enum Reason: String, CaseIterable, Sendable {
        /// stcpr: more sockets from one source address than `StcprAdmission.Limits.perAddress`.
        case connectionsPerAddress = "connections per address"
        /// stcpr: more sockets than `StcprAdmission.Limits.total`.
        case connectionsTotal = "connections in total"
        /// stcpr: more sockets without a completed handshake from one address / in total.
        case halfOpenPerAddress = "half-open per address"
        case halfOpenTotal = "half-open in total"
        /// stcpr: a handshake record whose length prefix is not the handshake message's length.
        case badHandshakeLength = "bad handshake length"
        /// An OPEN beyond the connection's stream limit (`MuxSession.Configuration.maxStreams`).
        case streamsPerConnection = "streams per connection"
        /// stcpr: reading paused because the peer does not read its answers.
        case readPaused = "reads paused"
        /// A peer closed because its unsent queue passed the hard bound.
        case outboundOverflow = "outbound overflow"
        /// sudph: reliable records dropped (the peer resends) while it does not acknowledge its answers.
        case segmentsDropped = "segments dropped"
        /// A responder refused a handshake initiation (`HandshakeRefusal`, one case each).
        case handshakeMalformed = "handshake malformed"
        case handshakeMAC1 = "handshake mac1"
        case handshakeCookie = "handshake cookie"
        case handshakeRateLimited = "handshake rate-limited"
        case handshakePendingFull = "handshake pending-full"
        case handshakeInvalid = "handshake invalid"
        case handshakeReplay = "handshake replay"
        /// dmsg relay: an authenticated client whose key is not on `--clients` (PROTOCOL.md §7.1).
        case keyNotListed = "dmsg key not listed"
    }

    static let shared = RefusalLog()
    static let summaryInterval = TimeAmount.seconds(10)
    static let debugLinesPerInterval = 20

    /// The counts and the rate limit of the log lines (pure: the caller passes the time).
    struct Counter {
        private(set) var total: [Reason: UInt64] = [:]
        private(set) var sinceSummary: [Reason: UInt64] = [:]
        private var debugLines = 0
        private var intervalStart: NIODeadline

        init(start: NIODeadline) { intervalStart = start }

        /// Counts `count` refusals for `reason` at `now`: whether to log this one at debug, and
        /// the counts to summarise at info when an interval has passed since the last summary.
        mutating func record(_ reason: Reason, count: UInt64 = 1, now: NIODeadline) -> (debug: Bool, summary: [Reason: UInt64]?) {
            total[reason, default: 0] += count
            sinceSummary[reason, default: 0] += count
            var summary: [Reason: UInt64]?
            if now - intervalStart >= RefusalLog.summaryInterval {
                summary = sinceSummary
                sinceSummary = [:]
                debugLines = 0
                intervalStart = now
            }
            debugLines += 1
            return (debugLines <= RefusalLog.debugLinesPerInterval, summary)
        }
    }

    private let state = NIOLockedValueBox(Counter(start: .now()))

    /// Counts `count` refusals for `reason`; logs `detail` at debug (rate-limited) and, once per
    /// interval, a summary at info.
    func note(_ reason: Reason, count: UInt64 = 1, _ detail: @autoclosure () -> String, logger: Logger) {
        let now = NIODeadline.now()
        let (debug, summary) = state.withLockedValue { $0.record(reason, count: count, now: now) }
        if debug { logger.debug("refused (\(reason.rawValue)): \(detail())") }
        if let summary {
            logger.info("refusals in the last \(Self.summaryInterval.nanoseconds / 1_000_000_000) s: \(Self.describe(summary))")
        }
    }

    /// How many refusals for `reason` since the process started.
    func count(_ reason: Reason) -> UInt64 { state.withLockedValue { $0.total[reason] ?? 0 } }

    static func describe(_ counts: [Reason: UInt64]) -> String {
        Reason.allCases.compactMap { r in counts[r].map { "\(r.rawValue) \($0)" } }.joined(separator: ", ")
    }
}
