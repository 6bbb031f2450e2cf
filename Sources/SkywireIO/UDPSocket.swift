import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem

/// A bound, non-blocking UDP socket with exactly one owner, shared with threads that send on it
/// (the VPN datapath's `sendmmsg(2)` from its TUN reader). Every use of the descriptor goes
/// through `withDescriptor`, which refuses once `close` was called, and close(2) itself waits
/// for the last use in progress: a send that races a close fails with `UDPSocket.closedError`
/// and never reaches a descriptor number the kernel has meanwhile given to another file.
public final class UDPSocket: @unchecked Sendable {
    // @unchecked Sendable: `lock` guards `raw`, `users` and `closing`; the other stored
    // properties are immutable after init.
    private let lock = NIOLock()
    private var raw: Int32
    /// Calls inside `withDescriptor` now.
    private var users = 0
    private var closing = false
    /// The bound address (the chosen port when asked for port 0).
    public let localAddress: SocketAddress?
    /// UDP_GRO is on: a received message may hold several datagrams (`UDPMessageReader`).
    public let receiveOffload: Bool

    /// What a use of a closed socket fails with.
    public static let closedError = SystemError(call: "udp socket (closed)", errno: EBADF)

    /// socket(2) for `address`'s family (`skw_udp_socket`: non-blocking, close-on-exec,
    /// SO_REUSEADDR), bind(2) to it, SO_RCVBUF/SO_SNDBUF of `bufferBytes` when given (best
    /// effort), and UDP_GRO when `receiveOffload` and the kernel has it.
    public init(bindingTo address: SocketAddress, bufferBytes: Int32? = nil, receiveOffload: Bool = false) throws {
        let fd = try syscall("socket(udp)") { skw_udp_socket(address.protocol.rawValue) }
        do {
            try address.withSockAddr { sa, length in
                _ = try syscall("bind(\(address))") { Glibc.bind(fd, sa, socklen_t(length)) }
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        if let bufferBytes {
            for option in [SO_RCVBUF, SO_SNDBUF] {
                var value = bufferBytes
                _ = setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        self.receiveOffload = receiveOffload && skw_udp_set_gro(fd, 1) == 0
        localAddress = RawTCPSocket.localAddress(fd)
        raw = fd
    }

    deinit {
        if raw >= 0 { _ = Glibc.close(raw) }
    }

    /// False once `close` was called.
    public var isOpen: Bool { lock.withLock { !closing } }

    /// Runs `body` with the descriptor, which stays open until `body` returns even when another
    /// thread closes the socket meanwhile; throws `closedError` once it is closed. `body` must
    /// not keep the descriptor, nor block for long (`close` waits for it).
    public func withDescriptor<T>(_ body: (Int32) throws -> T) throws -> T {
        let fd = try lock.withLock { () throws -> Int32 in
            guard !closing else { throw Self.closedError }
            users += 1
            return raw
        }
        defer { release() }
        return try body(fd)
    }

    /// Stops every further use; the descriptor is closed now, or by the last use in progress
    /// when it returns. Idempotent. An event loop watching it must `unwatch` it first.
    public func close() {
        let fd = lock.withLock { () -> Int32 in
            closing = true
            return takeIfUnused()
        }
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    private func release() {
        let fd = lock.withLock { () -> Int32 in
            users -= 1
            return takeIfUnused()
        }
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// The descriptor to close when the socket is closing and unused (once); -1 otherwise. Under `lock`.
    private func takeIfUnused() -> Int32 {
        guard closing, users == 0, raw >= 0 else { return -1 }
        defer { raw = -1 }
        return raw
    }

    /// Sends the first `count` slots of `arena` (`UDPBatchSender.sendSlots`: sendmmsg(2), UDP
    /// GSO while `tally.segmentationOffload`); on a closed socket every one is dropped and
    /// `tally.lastError` is `closedError`.
    public func sendSlots(arena: UnsafeMutableRawBufferPointer, slotSize: Int, lengths: UnsafeBufferPointer<UInt16>,
                          addresses: UnsafeBufferPointer<sockaddr_storage>, addressLengths: UnsafeBufferPointer<socklen_t>,
                          count: Int, tally: inout UDPSendTally) {
        guard count > 0 else { return }
        do {
            try withDescriptor { fd in
                UDPBatchSender.sendSlots(fd: fd, arena: arena, slotSize: slotSize, lengths: lengths, addresses: addresses,
                                         addressLengths: addressLengths, count: count, tally: &tally)
            }
        } catch {
            tally.dropped += UInt64(count)
            tally.lastError = error
        }
    }
}
