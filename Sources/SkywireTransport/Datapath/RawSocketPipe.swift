#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// Relays a connected, non-blocking TCP descriptor and an `AppStream` on the same
/// `EpollEventLoop`, without NIO channels: bytes both ways with back-pressure both ways
/// (a full stream stops reads from the socket; a socket that will not take more pauses the
/// stream), half-close passed through (EOF → FIN, FIN → `shutdown(SHUT_WR)` once queued bytes are
/// out), and a RESET or socket error aborting the other side. Owns the descriptor; the loop's
/// watch keeps the pipe alive until both directions are done.
final class RawSocketPipe: AppStreamDelegate {
    /// Bytes queued towards the socket above which the stream is paused.
    static let socketQueueLimit = 256 * 1024
    static let readChunk = 16 * 1024

    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    private let stream: AppStream
    private var toSocket: ByteBuffer
    private let allocator = ByteBufferAllocator()
    private var socketEOF = false       // read 0 from the socket: FIN sent on the stream
    private var streamFinished = false  // FIN from the stream: shut the socket's write side
    private var shutDownWrite = false
    private var readsPaused = false
    private var streamPaused = false
    /// Bytes from the stream wait for the socket to take them.
    private var writeWaiting: Bool { toSocket.readableBytes > 0 }
    private var closed: Bool { !descriptor.isOpen }
    /// Called once with nil when both directions completed, or with the reason it was aborted.
    var onClose: ((String?) -> Void)?

    /// Takes `fd` and starts relaying. Call on `loop`, which must be `stream.eventLoop`.
    init(loop: EpollEventLoop, fd: Int32, stream: AppStream) throws {
        precondition(loop.inEventLoop && stream.eventLoop === loop)
        self.loop = loop
        descriptor = OwnedDescriptor(taking: fd)
        self.stream = stream
        toSocket = allocator.buffer(capacity: 0)
        try loop.watch(fd, interest: .read) { readiness in self.ready(readiness) }
        stream.setDelegate(self)
    }

    // MARK: Socket side

    private func ready(_ readiness: EpollEventLoop.Readiness) {
        if readiness.writable { drainToSocket() }
        if (readiness.readable || readiness.hangup) && !readsPaused && !socketEOF { readFromSocket() }
    }

    private func readFromSocket() {
        while !closed && !socketEOF && !readsPaused {
            var buffer = allocator.buffer(capacity: Self.readChunk)
            let outcome: DescriptorRead
            do {
                outcome = try buffer.appendRead(from: descriptor.raw, count: Self.readChunk, call: "read")
            } catch {
                abort("\(error)", code: .appClosed)
                return
            }
            if buffer.readableBytes > 0 { stream.write(buffer) }
            if outcome == .endOfFile {
                socketEOF = true
                stream.finish()
                updateInterest()
                closeIfDone()
                return
            }
            if outcome == .wouldBlock || buffer.readableBytes < Self.readChunk { break }
            if !stream.isWritable {
                readsPaused = true
                updateInterest()
            }
        }
    }

    private func drainToSocket() {
        while toSocket.readableBytes > 0 && !closed {
            let result: IOResult<Int>
            do {
                result = try toSocket.withUnsafeReadableBytes { bytes in
                    try syscallNonBlocking("write") { Glibc.write(descriptor.raw, bytes.baseAddress, bytes.count) }
                }
            } catch {
                abort("\(error)", code: .appClosed)
                return
            }
            guard case .processed(let n) = result else { break }
            toSocket.moveReaderIndex(forwardBy: n)
        }
        if toSocket.readableBytes == 0 { toSocket.clear() }
        if streamPaused && toSocket.readableBytes < Self.socketQueueLimit / 2 {
            streamPaused = false
            stream.setReadPaused(false)
        }
        if streamFinished && !writeWaiting && !shutDownWrite {
            shutDownWrite = true
            _ = Glibc.shutdown(descriptor.raw, Int32(SHUT_WR))
        }
        updateInterest()
        closeIfDone()
    }

    private func updateInterest() {
        guard !closed else { return }
        var interest: EpollEventLoop.Interest = []
        if !readsPaused && !socketEOF { interest.insert(.read) }
        if writeWaiting { interest.insert(.write) }
        try? loop.setInterest(descriptor.raw, interest)
    }

    // MARK: AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        var data = data
        toSocket.writeBuffer(&data)
        drainToSocket()
        if toSocket.readableBytes >= Self.socketQueueLimit && !streamPaused {
            streamPaused = true
            stream.setReadPaused(true)
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        streamFinished = true
        drainToSocket()
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        // An abort, not an end: close with RST (SO_LINGER 0) so the application sees an error.
        var hard = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor.raw, SOL_SOCKET, SO_LINGER, &hard, socklen_t(MemoryLayout<linger>.size))
        finish(reason: "stream reset: \(code)")
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if readsPaused && stream.isWritable {
            readsPaused = false
            updateInterest()
            readFromSocket()
        }
    }

    // MARK: Ending

    private func closeIfDone() {
        if socketEOF && shutDownWrite { finish(reason: nil) }
    }

    private func abort(_ reason: String, code: AppStreamResetCode) {
        guard !closed else { return }
        stream.reset(code)
        finish(reason: reason)
    }

    private func finish(reason: String?) {
        guard !closed else { return }
        loop.unwatch(descriptor.raw)
        descriptor.close()
        stream.setDelegate(nil)
        onClose?(reason)
        onClose = nil
    }
}
