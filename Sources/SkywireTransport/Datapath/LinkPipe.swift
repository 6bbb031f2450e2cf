import NIOCore
import SkywireSystem
import SkywireIO

/// The reliable, ordered byte stream under a `RawStcprLink`: a TCP descriptor on an
/// `EpollEventLoop` (stcpr, `DescriptorPipe`), or a stream through a dmsg relay server (the
/// transport `dmsg`, whose two visors run the stcpr handshake and records inside it, so the relay
/// sees only ciphertext). Level-triggered like epoll: while the pipe is readable (or writable,
/// with `.write` interest) and the interest asks for it, the handler keeps being called.
/// Confined to the link's loop.
protocol LinkPipe: AnyObject {
    /// False once `close()` ran.
    var isOpen: Bool { get }
    /// The local address of the socket the bytes leave by (getsockname(2)), nil when the pipe is
    /// not a socket of its own (a relay stream) or is closed: uplink changes redial links whose
    /// local address vanished.
    var localAddress: SocketAddress? { get }
    /// Starts calling `handler` on readiness; the pipe holds the handler until `close()`.
    func start(interest: EpollEventLoop.Interest, _ handler: @escaping (LinkPipeReadiness) -> Void) throws
    func setInterest(_ interest: EpollEventLoop.Interest) throws
    /// Appends up to `count` bytes to `buffer`, never more (like read(2): `.endOfFile` when the
    /// far end closed); a read shorter than `count` means the pipe is drained for now.
    func read(into buffer: inout ByteBuffer, count: Int) throws -> DescriptorRead
    /// Takes what it can of `buffer`'s readable bytes (moving its reader index); false when it
    /// took nothing (full: wait for `.write` readiness).
    func write(from buffer: inout ByteBuffer) throws -> Bool
    /// Stops the handler and closes the stream (the far end reads end of file).
    func close()
}

/// One readiness report of a `LinkPipe`.
struct LinkPipeReadiness {
    var readable: Bool
    var writable: Bool
    /// The far end closed or failed: read to learn end of file or the error.
    var hangup: Bool
}

/// A connected, non-blocking socket watched by an `EpollEventLoop` (stcpr over TCP; a socketpair
/// in tests). Owns the descriptor.
final class DescriptorPipe: LinkPipe {
    private let loop: EpollEventLoop
    private let descriptor: OwnedDescriptor
    /// The syscalls' names in errors, e.g. "read(stcpr)", built once (not per read or send).
    private let readCall: String
    private let sendCall: String

    init(loop: EpollEventLoop, descriptor: OwnedDescriptor, name: String = "stcpr") {
        self.loop = loop
        self.descriptor = descriptor
        readCall = "read(\(name))"
        sendCall = "send(\(name))"
    }

    var isOpen: Bool { descriptor.isOpen }

    var localAddress: SocketAddress? {
        descriptor.isOpen ? RawTCPSocket.localAddress(descriptor.raw) : nil
    }

    func start(interest: EpollEventLoop.Interest, _ handler: @escaping (LinkPipeReadiness) -> Void) throws {
        try loop.watch(descriptor.raw, interest: interest) { readiness in
            handler(LinkPipeReadiness(readable: readiness.readable, writable: readiness.writable, hangup: readiness.hangup))
        }
    }

    func setInterest(_ interest: EpollEventLoop.Interest) throws {
        try loop.setInterest(descriptor.raw, interest)
    }

    func read(into buffer: inout ByteBuffer, count: Int) throws -> DescriptorRead {
        try buffer.appendRead(from: descriptor.raw, count: count, atMost: true, call: readCall)
    }

    func write(from buffer: inout ByteBuffer) throws -> Bool {
        try buffer.sendReadable(to: descriptor.raw, call: sendCall)
    }

    func close() {
        guard descriptor.isOpen else { return }
        loop.unwatch(descriptor.raw)
        descriptor.close()
    }
}
