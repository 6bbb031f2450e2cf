import CSkywireShim
import SkywireSystem
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on a thread of its own inside a fresh network namespace (unshare(CLONE_NEWNET)),
/// so TUN devices, addresses, routes and nftables tables never touch the host. The namespace
/// disappears when the thread exits. Skips unless root.
public func inPrivateNetworkNamespace(_ body: @escaping @Sendable () throws -> Void) throws {
    try XCTSkipUnless(getuid() == 0, "needs root (network namespaces)")
    final class Outcome: @unchecked Sendable {
        // @unchecked Sendable: written by the worker thread before join(), read after it.
        var error: Error?
    }
    let outcome = Outcome()
    let thread = try SystemThread(name: "netns-test") {
        guard skw_unshare_netns() == 0 else {
            outcome.error = SystemError(call: "unshare(CLONE_NEWNET)", errno: errno)
            return
        }
        do { try body() } catch { outcome.error = error }
    }
    thread.join()
    if let e = outcome.error { throw e }
}
