#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// What one read(2) from a non-blocking descriptor gave.
public enum DescriptorRead: Equatable, Sendable {
    case bytes(Int)
    case endOfFile
    case wouldBlock
}

extension ByteBuffer {
    /// read(2) from `fd` appended to the buffer (EINTR retried), after making room for `count`
    /// bytes: the read may fill all of the buffer's writable room, or with `atMost` takes at most
    /// `count` bytes (for a caller that tells a drained descriptor by a read shorter than
    /// `count`). `call` names the read in errors.
    public mutating func appendRead(from fd: Int32, count: Int, atMost: Bool = false, call: String) throws -> DescriptorRead {
        var outcome = DescriptorRead.wouldBlock
        try writeWithUnsafeMutableBytes(minimumWritableBytes: count) { space -> Int in
            let length = atMost ? min(count, space.count) : space.count
            switch try syscallNonBlocking(call, { Glibc.read(fd, space.baseAddress, length) }) {
            case .processed(0): outcome = .endOfFile; return 0
            case .processed(let n): outcome = .bytes(n); return n
            case .wouldBlock: return 0
            }
        }
        return outcome
    }

    /// send(2) of the readable bytes to `fd` with MSG_NOSIGNAL (a peer that reset gives EPIPE, not
    /// SIGPIPE), moving the reader index past what was taken (EINTR retried); false when the socket
    /// would block. `call` names the send in errors.
    public mutating func sendReadable(to fd: Int32, call: String) throws -> Bool {
        let result = try withUnsafeReadableBytes { bytes in
            try syscallNonBlocking(call) { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
        }
        guard case .processed(let count) = result else { return false }
        moveReaderIndex(forwardBy: count)
        return true
    }
}
