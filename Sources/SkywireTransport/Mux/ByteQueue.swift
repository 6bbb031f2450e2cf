import NIOCore

/// A FIFO of byte chunks whose heap cost stays close to its byte count (a stream's unsent writes
/// and unread data, `MuxStream`). Each queued `ByteBuffer` keeps its whole storage alive, and a
/// received DATA frame's payload is a slice of that frame's own storage: queued as they come,
/// 1-byte frames cost ~100 bytes of heap per byte of window. Chunks of at most `coalesceLimit`
/// bytes that queue behind others are therefore copied into shared buffers of
/// `coalescedCapacity` (the first is kept as it is: it usually leaves at once).
struct ByteQueue {
    /// Chunks up to this size are copied (at most this many bytes of copying per chunk).
    static let coalesceLimit = 512
    /// Capacity of the buffers small chunks are copied into.
    static let coalescedCapacity = 4096

    /// Made on the first append and dropped when the queue is cleared: a stream whose bytes
    /// leave at once (most of a short request's) never allocates one (`CircularBuffer` allocates
    /// its storage when it is made, and again when cleared without keeping capacity).
    private var chunks: CircularBuffer<ByteBuffer>?
    /// The last chunk is a buffer of ours that small chunks are copied into.
    private var tailIsCoalescing = false
    /// Bytes queued.
    private(set) var bytes = 0

    var isEmpty: Bool { chunks?.isEmpty ?? true }
    /// Chunks queued (what the queue's heap cost is counted in, besides its bytes).
    var chunkCount: Int { chunks?.count ?? 0 }
    var first: ByteBuffer? { chunks?.first }

    mutating func append(_ data: ByteBuffer) {
        let n = data.readableBytes
        guard n > 0 else { return }
        bytes += n
        guard n <= Self.coalesceLimit, !isEmpty else {
            if chunks == nil { chunks = CircularBuffer() }
            chunks?.append(data)
            tailIsCoalescing = false
            return
        }
        if tailIsCoalescing, let last = chunks?.indices.last, let room = chunks?[last].writableBytes, room >= n {
            chunks?[last].writeImmutableBuffer(data)
            return
        }
        var buffer = ByteBufferAllocator().buffer(capacity: Self.coalescedCapacity)
        buffer.writeImmutableBuffer(data)
        chunks?.append(buffer)
        tailIsCoalescing = true
    }

    /// Removes and returns the first chunk.
    mutating func popFirst() -> ByteBuffer? {
        guard let first = chunks?.popFirst() else { return nil }
        bytes -= first.readableBytes
        if chunks?.isEmpty ?? true { tailIsCoalescing = false }
        return first
    }

    /// Drops the first `count` bytes of the first chunk (fewer than it has).
    mutating func consumeFirst(_ count: Int) {
        guard count > 0, let index = chunks?.indices.first else { return }
        chunks?[index].moveReaderIndex(forwardBy: count)
        bytes -= count
    }

    mutating func removeAll() {
        chunks = nil
        tailIsCoalescing = false
        bytes = 0
    }
}
