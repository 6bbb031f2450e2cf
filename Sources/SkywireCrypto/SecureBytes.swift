import CSodium

/// A fixed-size secret owned by this object and wiped with `sodium_memzero` when it is released.
/// Immutable after initialisation, so sharing it between threads needs no lock.
final class SecureBytes: @unchecked Sendable {
    /// Never null: at least one byte is allocated even for an empty secret.
    private let base: UnsafeMutableRawPointer
    let count: Int

    private var storage: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    /// Allocates `count` bytes and lets `fill` write them.
    init(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        base = .allocate(byteCount: max(count, 1), alignment: MemoryLayout<UInt64>.alignment)
        self.count = count
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        do {
            try fill(UnsafeMutableRawBufferPointer(start: base, count: count))
        } catch {
            sodium_memzero(base, count)
            base.deallocate()
            throw error
        }
    }

    convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(count: bytes.count) { out in _ = out.initializeMemory(as: UInt8.self, from: bytes) }
    }

    deinit {
        sodium_memzero(base, count)
        base.deallocate()
    }

    @inline(__always)
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }

    /// For libsodium's non-null pointer parameters: always a valid allocation.
    var nonNullBytes: UnsafePointer<UInt8> {
        UnsafePointer(base.assumingMemoryBound(to: UInt8.self))
    }

    /// The bytes as an array (for tests and for feeding HKDF; the caller wipes the copy).
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(storage)) }

    static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        sodium_memzero(base, buffer.count)
    }
}

/// Wipes an array holding secret material (sodium_memzero), then empties it.
@inline(__always)
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { SecureBytes.wipe($0) }
    bytes.removeAll()
}

extension UnsafeRawBufferPointer {
    /// The base address typed for libsodium's `const unsigned char *` parameters.
    @inline(__always)
    var uint8Pointer: UnsafePointer<UInt8>? { baseAddress?.assumingMemoryBound(to: UInt8.self) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always)
    var uint8Pointer: UnsafeMutablePointer<UInt8>? { baseAddress?.assumingMemoryBound(to: UInt8.self) }
}
