#if canImport(Glibc)
import Glibc
#endif

/// Unbound UDP sockets that take a descriptor number just closed, to catch writes that still
/// go to that number: the kernel hands out the lowest free number, and Linux binds an unbound
/// UDP socket to an ephemeral port at its first send (`wasWritten`).
public final class ReusedDescriptor {
    /// Sockets opened to reach the number (lower free numbers are taken first).
    public let opened: [Int32]
    /// The number was reached.
    public let taken: Bool

    /// Waits until `number` is closed (at most `spins` sched_yield(2)s), then opens unbound UDP
    /// sockets until one gets it (at most `maxAttempts`).
    public init(_ number: Int32, spins: Int = 10_000_000, maxAttempts: Int = 256) {
        var spun = 0
        while spun < spins && fcntl(number, F_GETFD) != -1 {
            sched_yield()
            spun += 1
        }
        var opened: [Int32] = []
        while opened.count < maxAttempts && !opened.contains(number) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { break }
            opened.append(fd)
        }
        self.opened = opened
        taken = opened.contains(number)
    }

    deinit { for fd in opened { close(fd) } }

    /// The opened sockets that something sent on (they now have a local port).
    public var written: [Int32] {
        opened.filter { fd in
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let rc = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            return rc != 0 || address.sin_port != 0
        }
    }
}
