import SkywireSystem

/// One client's addresses: a /30 block, the server's side (.1) and the client's (.2).
public struct VPNLease: Hashable, Sendable {
    public let block: IPPrefix
    public var server: IPAddress { IPAddress(v4: block.address.v4Value! + 1) }
    public var client: IPAddress { IPAddress(v4: block.address.v4Value! + 2) }
    public var serverPrefix: IPPrefix { IPPrefix(server, block.length)! }
    public var clientPrefix: IPPrefix { IPPrefix(client, block.length)! }
}

/// Hands out per-client /30 blocks from candidate IPv4 pools, skipping blocks that overlap
/// the server's own networks or the networks a client reported (so its LAN stays reachable).
public struct VPNAddressPool: Sendable {
    /// Tried in order: a /16 in 10/8, one in 172.16/12, a /24 in 192.168/16.
    public static let defaultPools: [IPPrefix] = ["10.77.0.0/16", "172.29.0.0/16", "192.168.229.0/24"].map { IPPrefix($0)! }
    public static let blockLength = 30
    static let blockSize: UInt32 = 4
    /// Reported networks shorter than this are ignored (they would rule out everything).
    public static let shortestAvoided = 8

    public let pools: [IPPrefix]
    public var reserved: [IPPrefix]
    private var used: Set<UInt32> = []

    public init(pools: [IPPrefix] = VPNAddressPool.defaultPools, reserved: [IPPrefix] = []) {
        self.pools = pools.filter { $0.family == .v4 && $0.length <= Self.blockLength }.map(\.network)
        self.reserved = reserved
    }

    public var leasedCount: Int { used.count }

    /// The first free block not overlapping `reserved` or `avoiding`; nil when none is left.
    public mutating func allocate(avoiding: [IPPrefix] = []) -> VPNLease? {
        let avoid = (reserved + avoiding).filter { $0.family == .v4 && $0.length >= Self.shortestAvoided }
        for pool in pools {
            if avoid.contains(where: { $0.length <= pool.length && $0.overlaps(pool) }) { continue }
            let inside = avoid.filter { $0.overlaps(pool) }
            let base = pool.address.v4Value!
            let count = UInt32(1) << UInt32(Self.blockLength - pool.length)
            for i in 0..<count {
                let start = base + i * Self.blockSize
                if used.contains(start) { continue }
                let block = IPPrefix(IPAddress(v4: start), Self.blockLength)!
                if inside.contains(where: { $0.overlaps(block) }) { continue }
                used.insert(start)
                return VPNLease(block: block)
            }
        }
        return nil
    }

    public mutating func release(_ lease: VPNLease) {
        if let v = lease.block.address.v4Value { used.remove(v) }
    }
}
