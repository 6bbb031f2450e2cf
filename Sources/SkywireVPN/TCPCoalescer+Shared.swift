import NIOConcurrencyHelpers

/// A `TCPCoalescer` for a `DatagramSink` that several transport loops call at once (stcpr links
/// live on every datapath loop, the sudph endpoint on one): each call holds `lock`. A burst's
/// held-back segments are flushed by the loop that ends it or earlier by another; never lost.
final class SharedTCPCoalescer: @unchecked Sendable {
    // @unchecked Sendable: `coalescer` is used only while holding `lock`.
    private let lock = NIOLock()
    private let coalescer = TCPCoalescer()

    func add(_ packet: UnsafeRawBufferPointer, emit: TCPCoalescer.Emit) {
        lock.withLock { coalescer.add(packet, emit: emit) }
    }

    func flush(emit: TCPCoalescer.Emit) {
        lock.withLock { coalescer.flush(emit: emit) }
    }
}
