import NIOCore

/// How often a visor whose only path to a peer is a dmsg relay retries a direct transport in the
/// background (docs/dmsg.md, "Moving to a direct path"): the first attempt `initial` after the
/// relay path came into use, each later one twice as long after, at most `maximum` apart (30 s
/// doubling to 5 min by default, ±20 % jitter when scheduled).
public struct DirectRetrySchedule: Sendable, Equatable {
    public var initial: TimeAmount
    public var maximum: TimeAmount

    public init(initial: TimeAmount, maximum: TimeAmount) {
        self.initial = initial
        self.maximum = max(initial, maximum)
    }

    /// 30 s, doubling to 5 min.
    public static let standard = DirectRetrySchedule(initial: .seconds(30), maximum: .minutes(5))

    /// `maximum` as a multiple of `initial` when only the first is given (SKYWIRE_DIRECT_RETRY_SECONDS).
    static let maximumPerInitial: Int64 = 10

    /// The wait before attempt `attempt` (0: the first), without jitter.
    public func delay(beforeAttempt attempt: Int) -> TimeAmount {
        var delay = initial.nanoseconds
        for _ in 0..<max(0, attempt) {
            guard delay < maximum.nanoseconds else { break }
            delay = delay > Int64.max / 2 ? maximum.nanoseconds : delay * 2
        }
        return .nanoseconds(min(delay, maximum.nanoseconds))
    }

    /// `delay` ±20 % (a fleet that lost its direct paths together does not retry in lockstep).
    static func jittered(_ delay: TimeAmount) -> TimeAmount {
        let spread = delay.nanoseconds / 5
        return .nanoseconds(delay.nanoseconds + (spread > 0 ? Int64.random(in: -spread...spread) : 0))
    }
}

/// What the background retry sees of a peer at one look: its dmsg transports (live, open streams),
/// how many streams our apps opened over them so far, and whether a direct transport is up.
struct RelayOnlyPeer: Equatable {
    var relayUp: Bool
    var directUp: Bool
    /// Open mux streams over the peer's live dmsg transports.
    var relayStreams: Int
    /// Streams our apps opened over the relay so far (`TransportManager.openStream`). Bytes would
    /// not do: the mux keepalive moves some every 10 s.
    var relayOpens: UInt64
}

/// The background retry's decisions for one peer, pure (time is the caller's: it waits
/// `schedule.delay(beforeAttempt: attempts)` between looks). It stops when the relay path is gone,
/// when a direct transport is up (new streams then take it, `TransportManager.connection(to:)`),
/// or when the relay path is idle: no stream open and none opened since the previous look (the
/// next stream an app opens over the relay starts it again).
struct DirectRetryState {
    enum Step: Equatable {
        case attempt
        case stop(Reason)
    }

    enum Reason: String, Equatable {
        case relayClosed = "the dmsg transport closed"
        case directUp = "a direct transport is up"
        case idle = "the dmsg transport is idle"
    }

    let schedule: DirectRetrySchedule
    /// Direct attempts made so far.
    private(set) var attempts = 0
    /// `relayOpens` at the previous look.
    private var lastOpens: UInt64

    /// Starts with the relay path as it is now.
    init(schedule: DirectRetrySchedule, relayOpens: UInt64) {
        self.schedule = schedule
        lastOpens = relayOpens
    }

    /// How long to wait before the next look.
    var nextDelay: TimeAmount { schedule.delay(beforeAttempt: attempts) }

    /// One look at the peer: attempt a direct transport now, or stop.
    mutating func look(at peer: RelayOnlyPeer) -> Step {
        defer { lastOpens = peer.relayOpens }
        if peer.directUp { return .stop(.directUp) }
        if !peer.relayUp { return .stop(.relayClosed) }
        if peer.relayStreams == 0 && peer.relayOpens == lastOpens { return .stop(.idle) }
        attempts += 1
        return .attempt
    }
}
