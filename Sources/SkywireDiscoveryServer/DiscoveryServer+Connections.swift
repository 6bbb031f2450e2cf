import NIOConcurrencyHelpers

/// Caps on open HTTP connections, in total and per client address (an IPv4 address or an IPv6
/// /64, as for the write limits), so that sockets held open by one host, or by many, cannot use
/// up the service's descriptors. A connection over a cap is closed at once, unanswered.
public struct DiscoveryConnectionLimits: Sendable, Equatable {
    public var total: Int
    public var perAddress: Int

    public init(total: Int, perAddress: Int) {
        self.total = total
        self.perAddress = perAddress
    }

    /// Below the usual 65536-descriptor limit with room for the store; a NAT with 64 visors
    /// registering at the same moment still fits per address.
    public static let standard = DiscoveryConnectionLimits(total: 4096, perAddress: 64)
}

/// The open connections counted against `DiscoveryConnectionLimits`. Thread-safe: the counts
/// only under their lock (`NIOLockedValueBox`).
final class DiscoveryConnectionCounter: Sendable {
    let limits: DiscoveryConnectionLimits
    private let counts = NIOLockedValueBox<(total: Int, byAddress: [[UInt8]: Int])>((0, [:]))

    init(limits: DiscoveryConnectionLimits) {
        self.limits = limits
    }

    /// Counts a new connection from `address` (a bucket key, nil when unknown); false when a cap is reached.
    func admit(_ address: [UInt8]?) -> Bool {
        counts.withLockedValue { c in
            guard c.total < limits.total else { return false }
            if let address {
                let n = c.byAddress[address, default: 0]
                guard n < limits.perAddress else { return false }
                c.byAddress[address] = n + 1
            }
            c.total += 1
            return true
        }
    }

    /// A counted connection closed.
    func release(_ address: [UInt8]?) {
        counts.withLockedValue { c in
            c.total -= 1
            if let address, let n = c.byAddress[address] { c.byAddress[address] = n > 1 ? n - 1 : nil }
        }
    }

    var open: Int { counts.withLockedValue { $0.total } }
}
