import NIOConcurrencyHelpers
import NIOCore
import SkywireIO
import SkywireTransport
import SkywireWire

/// One stream from another visor's skychat (docs/skychat.md "Wire"): `message` frames in, an
/// `ack` out for each. Confined to the stream's event loop. A malformed frame, or no frame for
/// `idleTimeout`, resets the stream; the decoder holds at most one frame.
final class ChatInboundSession: AppStreamDelegate {
    private let stream: AppStream
    private weak var app: ChatApp?
    private var decoder = ChatFrameDecoder()
    private var timer: Scheduled<Void>?
    private var done = false
    let sender: String

    static let idleTimeout: TimeAmount = .seconds(30)

    init(stream: AppStream, app: ChatApp) {
        self.stream = stream
        self.app = app
        sender = stream.remoteKeyHex
    }

    func start() {
        stream.setDelegate(self)
        armTimer()
    }

    private func armTimer() {
        timer?.cancel()
        timer = stream.eventLoop.assumeIsolated().scheduleTask(in: Self.idleTimeout) { [self] in
            end(reset: .appClosed)
        }
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard !done else { return }
        armTimer()
        decoder.feed(data.readableBytesView)
        var out: [UInt8] = []
        do {
            while let frame = try decoder.next() {
                guard case .message(let message) = frame else { throw ChatProtocolError("a sender's stream carries messages, got \(frame.type)") }
                let status = app?.receive(message, from: sender) ?? .retryLater
                out += try ChatFrame.ack(id: message.id, status: status).encoded()
            }
        } catch {
            app?.countMalformed(from: sender, error)
            flush(out)
            end(reset: .protocolError)
            return
        }
        flush(out)
        if !stream.isWritable { stream.setReadPaused(true) }
    }

    private func flush(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        stream.write(buffer)
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        guard !done else { return }
        stream.finish()
        end(reset: nil)
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) { end(reset: nil) }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if stream.isWritable { stream.setReadPaused(false) }
    }

    private func end(reset code: AppStreamResetCode?) {
        guard !done else { return }
        done = true
        timer?.cancel()
        timer = nil
        if let code { stream.reset(code) }
        stream.setDelegate(nil)
        app?.inboundClosed(sender)
    }
}

/// One delivery attempt to a peer: writes the queued messages' frames, collects the acks until
/// every message has one, the peer ends the stream, or `timeout` passes. Confined to the
/// stream's event loop; the result is what was acknowledged.
final class ChatOutboundSession: AppStreamDelegate {
    private let stream: AppStream
    private let expected: Set<UInt64>
    private var acks: [UInt64: ChatAckStatus] = [:]
    private var decoder = ChatFrameDecoder()
    private let promise: EventLoopPromise<ChatDeliveryResult>
    private var timer: Scheduled<Void>?
    private var error: String?
    private var finished = false

    private init(stream: AppStream, expected: Set<UInt64>, promise: EventLoopPromise<ChatDeliveryResult>) {
        self.stream = stream
        self.expected = expected
        self.promise = promise
    }

    /// Sends `frames` (message id, encoded frame) on `stream` and waits for their acks.
    static func run(stream: AppStream, frames: [(UInt64, [UInt8])], timeout: TimeAmount) async -> ChatDeliveryResult {
        let loop = stream.eventLoop
        let promise = loop.makePromise(of: ChatDeliveryResult.self)
        let transfer = LoopTransfer(value: stream)
        let ids = Set(frames.map(\.0))
        var bytes: [UInt8] = []
        for (_, frame) in frames { bytes += frame }
        let payload = bytes
        loop.execute {
            let session = ChatOutboundSession(stream: transfer.value, expected: ids, promise: promise)
            session.start(payload, timeout: timeout)
        }
        return (try? await promise.futureResult.get()) ?? ChatDeliveryResult(acks: [:], error: "delivery abandoned")
    }

    private func start(_ bytes: [UInt8], timeout: TimeAmount) {
        stream.setDelegate(self)
        timer = stream.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            error = "no acknowledgement within \(timeout.nanoseconds / 1_000_000_000) s"
            finish(reset: .appClosed)
        }
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        stream.write(buffer)
    }

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        decoder.feed(data.readableBytesView)
        do {
            while let frame = try decoder.next() {
                guard case .ack(let id, let status) = frame, expected.contains(id) else {
                    throw ChatProtocolError("the peer answered with something other than an ack of a message sent")
                }
                acks[id] = status
            }
        } catch {
            self.error = "peer: \(error)"
            finish(reset: .protocolError)
            return
        }
        if acks.count == expected.count {
            stream.finish()
            finish(reset: nil)
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        if acks.count < expected.count { error = "the peer closed the stream before acknowledging every message" }
        stream.finish()
        finish(reset: nil)
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        if acks.count < expected.count { error = "stream reset: \(code)" }
        finish(reset: nil)
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {}

    private func finish(reset code: AppStreamResetCode?) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        timer = nil
        if let code { stream.reset(code) }
        stream.setDelegate(nil)
        promise.succeed(ChatDeliveryResult(acks: acks, error: error))
    }
}

/// What one delivery attempt brought: the acks by message id, and why it ended early.
struct ChatDeliveryResult: Sendable {
    var acks: [UInt64: ChatAckStatus]
    var error: String?
}
