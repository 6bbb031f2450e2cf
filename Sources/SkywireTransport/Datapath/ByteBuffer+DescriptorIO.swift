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
    /// read(2) of up to `count` bytes from `fd` appended to the buffer (EINTR retried); `call`
    /// names the read in errors.
    public mutating func appendRead(from fd: Int32, count: Int, call: String) throws -> DescriptorRead {
        var outcome = DescriptorRead.wouldBlock
        try writeWithUnsafeMutableBytes(minimumWritableBytes: count) { space -> Int in
            switch try syscallNonBlocking(call, { Glibc.read(fd, space.baseAddress, space.count) }) {
            case .processed(0): outcome = .endOfFile; return 0
            case .processed(let n): outcome = .bytes(n); return n
            case .wouldBlock: return 0
            }
        }
        return outcome
    }
}
