#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor: closed exactly once, in `close()` or `deinit`.
public final class OwnedDescriptor: @unchecked Sendable {
    // @unchecked Sendable: `raw` is immutable after init except through `close()`,
    // which callers serialise (each descriptor has a single owning thread).
    public private(set) var raw: Int32

    public init(taking raw: Int32) {
        precondition(raw >= 0, "OwnedDescriptor needs a valid descriptor")
        self.raw = raw
    }

    public var isOpen: Bool { raw >= 0 }

    /// close(2). Not retried on EINTR: Linux has released the descriptor either way.
    public func close() {
        guard raw >= 0 else { return }
        _ = Glibc.close(raw)
        raw = -1
    }

    public func setNonBlocking() throws {
        let flags = try syscall("fcntl(F_GETFL)") { fcntl(raw, F_GETFL) }
        try syscall("fcntl(F_SETFL)") { fcntl(raw, F_SETFL, flags | O_NONBLOCK) }
    }

    deinit { close() }
}
