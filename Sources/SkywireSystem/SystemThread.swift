#if canImport(Glibc)
import Glibc
#endif

/// A dedicated pthread for blocking work (a TUN reader), joined by its owner.
public final class SystemThread: @unchecked Sendable {
    // @unchecked Sendable: `handle` is written once in init before any other access and read
    // only by `join()`, which the owner calls once.
    private var handle = pthread_t()
    private var joined = false

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread; `name` appears in errors.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemError(call: "pthread_create(\(name))", errno: rc)
        }
    }

    /// Waits for the thread to finish (once).
    public func join() {
        guard !joined else { return }
        BlockingPool.assertMayBlock("pthread_join")
        joined = true
        pthread_join(handle, nil)
    }
}
