// SkywireWire: the pure protocol core of docs/PROTOCOL.md.
//
// Frame and packet codecs (§4.1, §4.4, §5), the sudph replay window (§4.2), the sudph reliability and
// congestion-control state machine (§4.4) and the stream multiplexer (§5). No I/O, no dependencies:
// bytes in, actions out; time is passed in as monotonic nanoseconds (`WireTime`).

/// Monotonic time in nanoseconds, as the driver reads it (e.g. `NIODeadline.now().uptimeNanoseconds`).
public typealias WireTime = UInt64

/// Named durations in nanoseconds.
public enum WireDuration {
    public static let nanosecondsPerMillisecond: UInt64 = 1_000_000
    public static let nanosecondsPerSecond: UInt64 = 1_000_000_000

    @inlinable public static func milliseconds(_ n: UInt64) -> UInt64 { n * nanosecondsPerMillisecond }
    @inlinable public static func seconds(_ n: UInt64) -> UInt64 { n * nanosecondsPerSecond }
}
