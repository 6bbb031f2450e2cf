import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Counts what the transport layer refuses or cuts off to keep a peer's memory bounded
/// (docs/hardening.md, "Bounded memory per peer"), and logs it without letting a flood flood the
/// log: each refusal at debug, at most `debugLinesPerInterval` of them per `summaryInterval`, and
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
    }

    static let shared = RefusalLog()
    static let summaryInterval = TimeAmount.seconds(10)
    static let debugLinesPerInterval = 20

    private struct State {
        var total: [Reason: UInt64] = [:]
        var sinceSummary: [Reason: UInt64] = [:]
        var debugLines = 0
        var intervalStart = NIODeadline.now()
    }

    private let state = NIOLockedValueBox(State())

    /// Counts `count` refusals for `reason`; logs `detail` at debug (rate-limited) and, once per
    /// interval, a summary at info.
    func note(_ reason: Reason, count: UInt64 = 1, _ detail: @autoclosure () -> String, logger: Logger) {
        let now = NIODeadline.now()
        let (debug, summary): (Bool, [Reason: UInt64]?) = state.withLockedValue { s in
            s.total[reason, default: 0] += count
            s.sinceSummary[reason, default: 0] += count
            var summary: [Reason: UInt64]?
            if now - s.intervalStart >= Self.summaryInterval {
                summary = s.sinceSummary
                s.sinceSummary = [:]
                s.debugLines = 0
                s.intervalStart = now
            }
            s.debugLines += 1
            return (s.debugLines <= Self.debugLinesPerInterval, summary)
        }
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
