import SkywireTestSupport
@testable import SkywireWire

/// One direction of a simulated UDP path: a drop-tail bottleneck of `bytesPerSecond` holding at most
/// `queueLimit` packets, then `delay` ± `jitter` propagation (jitter reorders), and random loss.
struct SimulatedLink {
    struct Packet {
        var arrival: UInt64
        var order: UInt64
        var bytes: [UInt8]
    }

    var delay: UInt64
    var jitter: UInt64
    var lossRate: Double
    var bytesPerSecond: UInt64
    var queueLimit: Int
    /// While true every packet is lost (a blackout).
    var blackout = false
    var rng: SeededGenerator

    private var heap: [Packet] = []
    private var sequence: UInt64 = 0
    private var bottleneckFree: UInt64 = 0
    private(set) var sent = 0
    private(set) var dropped = 0

    init(delay: UInt64, jitter: UInt64, lossRate: Double, bytesPerSecond: UInt64, queueLimit: Int, seed: UInt64) {
        self.delay = delay
        self.jitter = jitter
        self.lossRate = lossRate
        self.bytesPerSecond = bytesPerSecond
        self.queueLimit = queueLimit
        rng = SeededGenerator(seed: seed)
    }

    var nextArrival: UInt64? { heap.first?.arrival }

    mutating func send(_ bytes: UnsafeRawBufferPointer, now: UInt64) {
        sent += 1
        let serialisation = UInt64(bytes.count + 60) * WireDuration.nanosecondsPerSecond / bytesPerSecond
        let queued = bottleneckFree > now ? Int((bottleneckFree - now) / max(serialisation, 1)) : 0
        if blackout || queued >= queueLimit || Double.random(in: 0..<1, using: &rng) < lossRate {
            dropped += 1
            return
        }
        bottleneckFree = max(bottleneckFree, now) + serialisation
        let wobble = jitter > 0 ? UInt64.random(in: 0...jitter, using: &rng) : 0
        sequence += 1
        push(Packet(arrival: bottleneckFree + delay + wobble, order: sequence, bytes: Array(bytes)))
    }

    /// Removes and returns the next packet due at or before `now`.
    mutating func receive(now: UInt64) -> [UInt8]? {
        guard let first = heap.first, first.arrival <= now else { return nil }
        return pop().bytes
    }

    private static func before(_ a: Packet, _ b: Packet) -> Bool {
        (a.arrival, a.order) < (b.arrival, b.order)
    }

    private mutating func push(_ p: Packet) {
        heap.append(p)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.before(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func pop() -> Packet {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count, Self.before(heap[l], heap[m]) { m = l }
                if r < heap.count, Self.before(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
