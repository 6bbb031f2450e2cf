import CSkywireShim
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireSystem

/// Reads a `UDPSocket` with recvmmsg(2) (`skw_udp_recv_batch`) into one buffer per batch,
/// reused while nothing holds on to the previous batch's messages. With UDP_GRO a message holds
/// up to 64 KiB of equal-sized datagrams (the last may be shorter), handed out one by one
/// without copying. Not thread-safe: one owning thread (the socket's event loop).
public final class UDPMessageReader {
    /// Messages per recvmmsg(2) and the room for one, without and with UDP GRO.
    public static let messageCount = 32
    public static let maxDatagram = 2048
    public static let groMessageCount = 8
    public static let maxGROMessage = 65536

    private let count: Int
    private let slotSize: Int
    private var buffer: ByteBuffer
    private var lengths: [UInt32]
    private var addresses: [sockaddr_storage]
    private var segmentSizes: [UInt16]
    /// Messages read by the last `read`.
    public private(set) var received = 0

    /// Sized for `socket`'s receive offload.
    public init(for socket: UDPSocket) {
        count = socket.receiveOffload ? Self.groMessageCount : Self.messageCount
        slotSize = socket.receiveOffload ? Self.maxGROMessage : Self.maxDatagram
        buffer = ByteBufferAllocator().buffer(capacity: count * slotSize)
        lengths = [UInt32](repeating: 0, count: count)
        addresses = [sockaddr_storage](repeating: sockaddr_storage(), count: count)
        segmentSizes = [UInt16](repeating: 0, count: count)
    }

    /// One recvmmsg(2): the number of messages read, 0 when none was waiting. Throws the
    /// socket's error (e.g. a pending ICMP error) or `UDPSocket.closedError`.
    public func read(from socket: UDPSocket) throws -> Int {
        received = 0
        // Reuses the storage unless a message of the last batch is still referenced.
        buffer.clear()
        let total = count * slotSize
        var n = 0
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { space in
            let result = try socket.withDescriptor { fd in
                try lengths.withUnsafeMutableBufferPointer { lens in
                    try addresses.withUnsafeMutableBufferPointer { addrs in
                        try segmentSizes.withUnsafeMutableBufferPointer { segs in
                            try syscallNonBlocking("recvmmsg") {
                                skw_udp_recv_batch(fd, space.baseAddress?.assumingMemoryBound(to: UInt8.self), slotSize,
                                                   lens.baseAddress, addrs.baseAddress, segs.baseAddress, UInt32(count))
                            }
                        }
                    }
                }
            }
            if case .processed(let got) = result { n = Int(got) }
            return n > 0 ? total : 0
        }
        received = n
        return n
    }

    /// Calls `body` for each datagram of the last `read` with its source address: a GRO
    /// message is split at its segment size. Truncated messages and unknown families are skipped.
    public func forEachDatagram(_ body: (ByteBuffer, SocketAddress) -> Void) {
        for i in 0..<received {
            let length = Int(lengths[i])
            guard length > 0,
                  let from = withUnsafePointer(to: &addresses[i], {
                      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) }
                  }) else { continue }
            let start = i * slotSize
            let size = Int(segmentSizes[i])
            let step = size > 0 && size < length ? size : length
            var offset = 0
            while offset < length {
                let piece = min(step, length - offset)
                if let slice = buffer.getSlice(at: start + offset, length: piece) { body(slice, from) }
                offset += piece
            }
        }
    }
}
