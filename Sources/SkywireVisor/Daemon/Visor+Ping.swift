import NIOConcurrencyHelpers
import NIOCore
import SkywireCrypto
import SkywireTransport

extension Visor {
    /// `visor.ping`: echoes a stream (or datagrams) through the remote visor's echo app.
    func ping(_ params: [String: ControlValue]) async throws -> ControlValue {
        let pk = try Self.publicKey(params.requiredString("pk"))
        let timeout = try params.optionalInt("timeout") ?? 30
        guard (1...3600).contains(timeout) else { throw ControlError(.badRequest, "timeout must be in 1...3600 s") }
        if try params.optionalBool("datagram") ?? false {
            let count = try params.optionalInt("count") ?? 10
            guard (1...100_000).contains(count) else { throw ControlError(.badRequest, "count must be in 1...100000") }
            return try await pingDatagrams(pk, count: Int(count), timeout: timeout)
        }
        let size = try params.optionalInt("size") ?? 65536
        guard (1...(1 << 34)).contains(size) else { throw ControlError(.badRequest, "size must be in 1...2^34") }
        return try await pingStream(pk, size: Int(size), timeout: timeout)
    }

    private func pingStream(_ pk: PublicKey, size: Int, timeout: Int64) async throws -> ControlValue {
        let started = ContinuousClock.now
        let stream = try await transports.openStream(to: pk, port: EchoApp.defaultPort, sourcePort: 0,
                                                     timeout: .seconds(timeout)).get()
        let checker = EchoChecker(stream: stream, total: size)
        let deadline = stream.eventLoop.scheduleTask(in: .seconds(timeout)) {
            checker.fail(ControlError(.timeout, "echo of \(size) bytes not complete after \(timeout) s (\(checker.progress) bytes back)"))
        }
        stream.eventLoop.execute { checker.begin() }
        defer { deadline.cancel() }
        let bytes = try await checker.promise.futureResult.get()
        let elapsed = ContinuousClock.now - started
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        return .object(["bytes": .int(Int64(bytes)), "elapsed_ms": .int(ms), "intact": .bool(true)])
    }

    private func pingDatagrams(_ pk: PublicKey, count: Int, timeout: Int64) async throws -> ControlValue {
        let received = NIOLockedValueBox<(count: Int, rttTotal: Double)>((0, 0))
        let clock = ContinuousClock()
        let origin = clock.now
        /// Nanoseconds since `origin`: the timestamp each datagram carries and is echoed with.
        let elapsedNanos: @Sendable () -> UInt64 = {
            let d = clock.now - origin
            return UInt64(d.components.seconds) * 1_000_000_000 + UInt64(d.components.attoseconds / 1_000_000_000)
        }
        guard let port = apps.reserveEphemeral({ buffer, from, _ in
            guard from == pk, buffer.readableBytes >= 8, let sentAt = buffer.getInteger(at: buffer.readerIndex, as: UInt64.self) else { return }
            let nowNanos = elapsedNanos()
            received.withLockedValue { $0.count += 1; $0.rttTotal += Double(nowNanos &- sentAt) / 1e6 }
        }) else { throw ControlError(.unavailable, "no free client port") }
        defer { apps.releaseEphemeral(port) }
        for _ in 0..<count {
            var buf = ByteBuffer()
            buf.writeInteger(elapsedNanos())
            buf.writeRepeatingByte(0x5a, count: 56)
            transports.sendDatagram(to: pk, destinationPort: EchoApp.defaultPort, sourcePort: port, payload: buf)
            try await Task.sleep(for: .milliseconds(20))
        }
        let deadline = clock.now + .seconds(timeout)
        while received.withLockedValue({ $0.count }) < count, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let (got, total) = received.withLockedValue { ($0.count, $0.rttTotal) }
        return .object(["sent": .int(Int64(count)), "received": .int(Int64(got)),
                        "rtt_ms": got > 0 ? .double((total / Double(got) * 100).rounded() / 100) : .null])
    }
}

/// Sends a deterministic byte pattern, half-closes, and checks the echo byte by byte.
private final class EchoChecker: AppStreamDelegate, @unchecked Sendable {
    // @unchecked Sendable: every field is touched only on `stream.eventLoop` (`fail` hops
    // there); `begin` and the delegate callbacks check it (preconditionInEventLoop).
    let stream: AppStream
    let total: Int
    let promise: EventLoopPromise<Int>
    private var sent = 0
    private var received = 0
    private var done = false
    private static let chunk = 16 * 1024

    var progress: Int { received }

    init(stream: AppStream, total: Int) {
        self.stream = stream
        self.total = total
        self.promise = stream.eventLoop.makePromise()
    }

    /// Byte `i` of the pattern: cheap to compute and not periodic at any power of two.
    @inline(__always) static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: (i &* 31) ^ (i >> 11)) }

    func begin() {
        stream.eventLoop.preconditionInEventLoop()
        stream.setDelegate(self)
        pump()
    }

    private func pump() {
        while !done, sent < total, stream.isWritable {
            let n = min(Self.chunk, total - sent)
            var buf = ByteBufferAllocator().buffer(capacity: n)
            let base = sent
            buf.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { p in
                for i in 0..<n { p[i] = Self.pattern(base + i) }
                return n
            }
            sent += n
            stream.write(buf)
        }
        if sent == total && !done { stream.finish() }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        stream.eventLoop.preconditionInEventLoop()
        guard !done else { return }
        let base = received
        let ok = data.withUnsafeReadableBytes { bytes -> Bool in
            for i in 0..<bytes.count where bytes[i] != Self.pattern(base + i) { return false }
            return true
        }
        if !ok {
            fail(ControlError(.failed, "echo corrupted near byte \(received)"))
            return
        }
        received += data.readableBytes
        if received > total { fail(ControlError(.failed, "echo returned more bytes than sent")) }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        stream.eventLoop.preconditionInEventLoop()
        guard !done else { return }
        if received == total {
            done = true
            promise.succeed(received)
        } else {
            fail(ControlError(.failed, "echo ended after \(received) of \(total) bytes"))
        }
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        stream.eventLoop.preconditionInEventLoop()
        fail(ControlError(.failed, "echo stream reset: \(code)"))
    }

    func appStreamWritabilityChanged(_ stream: AppStream) { pump() }

    func fail(_ error: Error) {
        stream.eventLoop.execute {
            guard !self.done else { return }
            self.done = true
            self.stream.reset(.appClosed)
            self.promise.fail(error)
        }
    }
}
